"""The HTML book, read by a browser: every page opened in headless Chromium, offline.

Builds the book with `jupyter-book build . -W` unless `_build/html` is newer than every source (the
chapters, pages, `_config.yml`, `_toc.yml`, `_vendor/`); jupyter-cache makes a rebuild fast. Then serves
`_build/html` on 127.0.0.1 (BOOK_TEST_NO_BUILD=1: test `_build/html` as it is, no build) and, for each page of `_toc.yml`, checks: no failed request, no request to
any host but this machine (they are blocked and reported), no page error, every image loaded, the math
typeset by the book's own MathJax, every ipywidget rendered by the book's own embedder on pages whose
notebook makes widgets, and no table wider than the text column. Full-page screenshots of each page at
1280 and 390 px go to `_build/screenshots/`. And on every page, every slider moves its figure, and every
figure has an alt text that describes it (not its file name).

Needs Debian's Chromium (/usr/bin/chromium) and Playwright for Python: `make browser-deps`, i.e.
`apt-get install chromium` and `pip install playwright` (never `playwright install`: it downloads a browser).
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from base64 import b64decode
from html.parser import HTMLParser
from io import BytesIO
from urllib.parse import urlsplit

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = Path(os.environ.get("BOOK_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
INSTALL_HINT = ("The browser test needs Debian's Chromium and Playwright for Python. Install them with "
                "`make browser-deps` (= `apt-get install chromium` and `.venv/bin/pip install playwright`; "
                "do NOT run `playwright install`, which downloads a browser of its own).")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def toc_pages() -> list[str]:
    """Every page of `_toc.yml` (root first), as paths without extension."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc.get("parts", toc.get("chapters", [])))
    return list(dict.fromkeys(pages))


def source_of(page: str) -> Path:
    """The source file of a toc page (.ipynb or .md)."""
    for ext in (".ipynb", ".md"):
        if (ROOT / f"{page}{ext}").exists():
            return ROOT / f"{page}{ext}"
    raise FileNotFoundError(f"no source for toc page {page!r}")


def colab_link(page: str) -> str:
    """The Open-in-Colab address of a notebook page, from `repository` and `launch_buttons` in _config.yml."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repository, colab = config["repository"], config["launch_buttons"]["colab_url"].rstrip("/")
    github = repository["url"].removeprefix("https://github.com/").strip("/")
    book = repository.get("path_to_book", "").strip("/")
    return f"{colab}/github/{github}/blob/{repository['branch']}/{book + '/' if book else ''}{page}.ipynb"


def notebook_code(page: str) -> str:
    """The code cells of a page's notebook, joined ('' for a Markdown page)."""
    path = source_of(page)
    if path.suffix != ".ipynb":
        return ""
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def makes_widgets(page: str) -> bool:
    """Whether the page's notebook builds ipywidgets itself (its sliders are lib.widgets' HTML, not widgets)."""
    return "import ipywidgets" in notebook_code(page)


def slider_calls(page: str) -> int:
    """How many `lib.widgets.slider(` calls the page's notebook makes."""
    return notebook_code(page).count("widgets.slider(")


def newest_source_mtime() -> float:
    """The newest modification time among the book's sources."""
    paths = [ROOT / "_config.yml", ROOT / "_toc.yml", *(source_of(p) for p in toc_pages()),
             *(p for p in (ROOT / "_vendor").rglob("*") if p.is_file())]
    return max(p.stat().st_mtime for p in paths)


def vendor_changed() -> bool:
    """Whether a file of `_vendor/` differs from its copy in `_build/html/_static/` (or has none)."""
    for path in (ROOT / "_vendor").rglob("*"):
        if path.is_file():
            copy = HTML / "_static" / path.relative_to(ROOT / "_vendor")
            if not copy.exists() or copy.read_bytes() != path.read_bytes():
                return True
    return False


def build_book() -> None:
    """Build `_build/html` unless it is newer than every source; fail with the build's tail on error."""
    index = HTML / "index.html"
    if os.environ.get("BOOK_TEST_NO_BUILD") == "1":  # test the HTML as it is (e.g. right after `make book`)
        if not index.exists():
            pytest.fail(f"BOOK_TEST_NO_BUILD=1 but {index} does not exist: run `make book` first", pytrace=False)
        return
    if index.exists() and index.stat().st_mtime >= newest_source_mtime() and not vendor_changed():
        return
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(ROOT), "-W", "--keep-going"]
    if vendor_changed():  # Sphinx copies static files only when some page is rebuilt: rebuild them all
        cmd.append("--all")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}")
    index.touch()  # an unchanged rebuild does not rewrite index.html


@pytest.fixture(scope="module")
def server():
    """`_build/html` (built if stale) served on 127.0.0.1; yields the base URL."""
    build_book()
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright; fails (does not skip) when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"Playwright for Python is not installed. {INSTALL_HINT}", pytrace=False)
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found. {INSTALL_HINT}", pytrace=False)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def is_local(url: str) -> bool:
    """Whether a request stays on this machine (or inside the page: data:, blob:, about:)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in LOCAL_HOSTS


@pytest.mark.parametrize("page", toc_pages())
def test_page_renders_offline(page: str, server: str, browser) -> None:
    """The page loads from this machine alone, with images, math and widgets rendered and no errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    problems: list[str] = []

    def route(r) -> None:
        if is_local(r.request.url):
            r.continue_()
        else:
            problems.append(f"request to a non-local host (blocked): {r.request.url}")
            r.abort("blockedbyclient")

    context.route("**/*", route)
    tab = context.new_page()
    tab.on("requestfailed", lambda req: problems.append(
        f"failed request: {req.url} ({req.failure})") if is_local(req.url) else None)
    tab.on("response", lambda resp: problems.append(
        f"HTTP {resp.status}: {resp.url}") if resp.status >= 400 else None)
    tab.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    tab.on("console", lambda msg: problems.append(
        f"console error: {msg.text}") if msg.type == "error" else None)
    try:
        tab.goto(server + f"{page}.html", wait_until="load", timeout=60_000)
        tab.wait_for_load_state("networkidle", timeout=60_000)

        # math: the book's MathJax typesets every formula
        n_math = tab.locator(".math").count()
        if n_math:
            tab.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
            tab.evaluate("() => MathJax.startup.promise")
            assert tab.evaluate("() => document.querySelectorAll('.math mjx-container').length") == n_math, \
                f"{page}: not every formula was typeset by MathJax"
            assert not tab.locator("mjx-merror").count(), f"{page}: MathJax reports a TeX error"

        # widgets: one rendered widget per saved widget view, and views wherever the notebook makes widgets
        n_views = tab.locator(f'script[type="{WIDGET_VIEW}"]').count()
        if makes_widgets(page):
            assert n_views > 0, f"{page}: the notebook makes widgets but the page has no saved widget view"
        if n_views:
            tab.wait_for_function(f"""() => Array.from(document.querySelectorAll('script[type="{WIDGET_VIEW}"]'))
                .every(s => s.previousElementSibling && s.previousElementSibling.querySelector('.jupyter-widgets'))""",
                                  timeout=30_000)
            assert tab.locator(".widget-slider, .widget-hslider, .jupyter-widget-hslider, "
                               ".widget-selection-slider").count() > 0 or tab.locator(".jupyter-widgets").count() >= n_views

        # images: every one loaded and decoded
        tab.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=30_000)
        broken = tab.evaluate("() => Array.from(document.images).filter(i => i.naturalWidth === 0).map(i => i.src)")
        assert not broken, f"{page}: images that did not load: {broken}"

        # Colab: every notebook page links to its notebook in Colab (the launch button; a link, not a request)
        if source_of(page).suffix == ".ipynb":
            colab = colab_link(page)
            assert tab.locator(f'a[href="{colab}"]').count() > 0, f"{page}: no Open-in-Colab link to {colab}"

        # tables: none wider than the text column (a reader at 1280 px never scrolls sideways in a table)
        too_wide = tab.evaluate("""() => { const main = document.querySelector('article.bd-article') || document.querySelector('article') || document.querySelector('main');
            const width = main.getBoundingClientRect().width;
            return Array.from(main.querySelectorAll('table')).filter(t => t.getBoundingClientRect().width > width + 1)
                .map(t => (t.querySelector('th, td') || t).textContent.trim().slice(0, 40) + ` (${Math.round(t.getBoundingClientRect().width)} px)`); }""")
        assert not too_wide, f"{page}: tables wider than the text column at 1280 px: {too_wide}"

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / f"{page.replace('/', '__')}.png"), full_page=True)
        tab.set_viewport_size({"width": PHONE_WIDTH, "height": 844})  # a phone: the second screenshot of the review
        tab.screenshot(path=str(SCREENSHOTS / f"{page.replace('/', '__')}-390px.png"), full_page=True)
        tab.wait_for_load_state("networkidle", timeout=30_000)

        # a phone: the page is no wider than the screen, and a table wider than the text scrolls in its box
        phone = tab.evaluate(PHONE_CHECK)
        assert phone["width"] <= PHONE_WIDTH + 1, \
            f"{page}: {phone['width']} px wide at {PHONE_WIDTH} px; wider than the screen: {phone['wide']}"
        assert not phone["clipped"], f"{page}: tables cut off at {PHONE_WIDTH} px (no scrolling box): {phone['clipped']}"
    finally:
        context.close()
    assert not problems, f"{page}:\n" + "\n".join(problems)


PHONE_WIDTH = 390  # px
# The page's width; the elements that reach past the screen outside any scrolling box; and the tables wider
# than the text column with no scrolling box around them (their right part would be cut off, unreadable).
PHONE_CHECK = """() => { const vw = document.documentElement.clientWidth;
    const main = document.querySelector('article.bd-article') || document.querySelector('article') || document.querySelector('main');
    const text = main.getBoundingClientRect().width;
    const scrolls = (e, stop) => { for (let a = e.parentElement; a && a !== stop; a = a.parentElement) {
        const o = getComputedStyle(a).overflowX; if (o === 'auto' || o === 'scroll') return true; } return false; };
    const boxed = e => { for (let a = e.parentElement; a; a = a.parentElement) {
        const o = getComputedStyle(a).overflowX; if (o !== 'visible') return true; } return false; };
    const wide = Array.from(document.body.querySelectorAll('*')).filter(e => e.getBoundingClientRect().right > vw + 1
        && getComputedStyle(e).position !== 'fixed' && !boxed(e)).slice(0, 5)
        .map(e => `${e.tagName.toLowerCase()} "${(e.textContent || '').trim().slice(0, 40)}" (${Math.round(e.getBoundingClientRect().right)} px)`);
    const clipped = Array.from(main.querySelectorAll('table')).filter(t => t.getBoundingClientRect().width > text + 1
        && !scrolls(t, main.parentElement)).slice(0, 5)
        .map(t => `"${(t.querySelector('th, td') || t).textContent.trim().slice(0, 30)}" (${Math.round(t.getBoundingClientRect().width)} px)`);
    return {width: document.documentElement.scrollWidth, wide, clipped}; }"""


def _pixels(src: str) -> np.ndarray:
    """The pixels of a data:image/png frame."""
    return np.asarray(Image.open(BytesIO(b64decode(src.removeprefix("data:image/png;base64,")))).convert("RGB"))


@pytest.mark.parametrize("page", [p for p in toc_pages() if slider_calls(p)])
def test_sliders_move_their_figures(page: str, server: str, browser) -> None:
    """Every slider on the page, moved to three values (or all it has), shows that value's frame, and only it."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    context.route("**/*", lambda r: r.continue_() if is_local(r.request.url) else r.abort("blockedbyclient"))
    tab = context.new_page()
    try:
        tab.goto(server + f"{page}.html", wait_until="load", timeout=60_000)
        boxes = tab.locator(".ipe-slider")
        assert boxes.count() == slider_calls(page), f"{page}: {boxes.count()} sliders for {slider_calls(page)} calls"
        for b in range(boxes.count()):
            box = boxes.nth(b)
            inputs = box.locator("input[type=range]")
            names = [inputs.nth(j).get_attribute("data-name") for j in range(inputs.count())]
            labels = [json.loads(inputs.nth(j).get_attribute("data-values")) for j in range(inputs.count())]
            for j, name in enumerate(names):
                last = len(labels[j]) - 1
                assert last >= 1, f"{page}: slider {name!r} has one position: a plain figure, not a slider"
                previous = None
                for position in sorted({0, last // 2, last}, key=lambda p: p == int(inputs.nth(j).input_value())):
                    inputs.nth(j).fill(str(position))
                    shown = box.locator("img.ipe-frame:visible")
                    assert shown.count() == 1, f"{page}: {shown.count()} frames shown after moving {name!r}"
                    values = [labels[i][int(inputs.nth(i).input_value())] for i in range(len(names))]
                    expected = ", ".join(f"{n} = {v}" for n, v in zip(names, values))
                    alt = shown.get_attribute("alt")  # "<what the figure shows>; name = value, ..."
                    description = alt.removesuffix(f"; {expected}")
                    assert description != alt and description.strip(), \
                        f"{page}: {name!r} at {labels[j][position]!r}: alt {alt!r} is not '<description>; {expected}'"
                    readout = inputs.nth(j).locator("xpath=following-sibling::output")
                    assert readout.text_content() == labels[j][position]
                    pixels = _pixels(shown.get_attribute("src"))
                    if previous is not None:
                        assert previous.shape != pixels.shape or (previous != pixels).any(), \
                            f"{page}: moving {name!r} to {labels[j][position]!r} left the figure's pixels unchanged"
                    previous = pixels
    finally:
        context.close()


# Alt text. Every <img> of a built page is a figure (a notebook output in _images/, a slider's frame as a
# data: URI, an image a page embeds) and needs an alt text that says what it shows. Sphinx and myst-nb fall
# back to the image's path ("../_images/<hash>.png"), so a path or file name as alt means none was given.
# The one exception, kept narrow: the theme's launch-button logos (sphinx-book-theme's
# _static/images/logo_*.png|svg, e.g. the Colab button's logo). They are not figures, they sit inside a
# labelled button, and the theme writes their alt ("Colab logo"); they need only an alt attribute.
THEME_LOGO = re.compile(r"(^|/)_static/images/logo_[\w-]+\.(png|svg)$")
IMAGE_FILE = re.compile(r"\.(png|svg|jpe?g|gif|webp)$", re.IGNORECASE)


class _Images(HTMLParser):
    """Every <img> of a page, as (line, attributes), read by the standard library's parser."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[int, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append((self.getpos()[0], dict(attrs)))


def alt_problem(attrs: dict[str, str | None]) -> str | None:
    """What is wrong with an <img>'s alt text as a description of its figure (None: nothing)."""
    alt, src = attrs.get("alt"), attrs.get("src") or ""
    if alt is None:
        return "no alt attribute"
    if THEME_LOGO.search(src):
        return None  # the theme's button logo: not a figure (see above)
    text = alt.strip()
    if not text:
        return "empty alt"
    if "_images/" in text or IMAGE_FILE.search(text) or text == src:
        return "alt is a path or file name, not a description"
    if "ipe-frame" in (attrs.get("class") or "").split():  # lib.widgets: "<description>; name = value, ..."
        description, _, settings = text.partition("; ")
        if not settings or not description.strip():
            return "slider frame's alt gives its slider values but no description of the figure"
    return None


@pytest.mark.parametrize("page", toc_pages())
def test_every_figure_has_alt_text_that_is_not_a_path(page: str, server: str) -> None:
    """Every image on the built page has an alt text that describes it: not missing, empty, or a file path.

    Notebook figures get theirs from their cell's metadata (`mystnb: image: alt:`), sliders' frames from
    `lib.widgets.slider(..., alt=...)`; the theme's launch-button logos are exempt (`THEME_LOGO`).
    """
    parsed = _Images()
    parsed.feed((HTML / f"{page}.html").read_text(errors="replace"))
    problems = []
    for line, attrs in parsed.images:
        problem = alt_problem(attrs)
        if problem:
            src = attrs.get("src") or "(no src)"
            src = src[:30] + "..." if src.startswith("data:") else src
            problems.append(f"line {line}: <img src={src!r} alt={attrs.get('alt')!r}>: {problem}")
    assert not problems, (f"{page}.html: {len(problems)} of {len(parsed.images)} images lack a descriptive alt text "
                          "(a figure cell's metadata needs mystnb: image: alt:, a slider alt=...):\n"
                          + "\n".join(problems))


# Internal text: what the book's bookkeeping, not its argument, would leave on a page. Issue numbers, Python
# object reprs ("<matplotlib.legend.Legend at 0x7f...>", "<Figure size 640x480 with 1 Axes>"), and the
# boolean Table 5 column that once said "verified: False" in every cell.
INTERNAL_TEXT = {
    "an issue number": re.compile(r"\b(?:issue|task) #\d+", re.IGNORECASE),
    "an object repr": re.compile(r"<[\w.]+(?: object)? at 0x[0-9a-f]+>"),
    "a figure repr": re.compile(r"<Figure size \d+x\d+ with \d+ Axes>"),
    "a memory address": re.compile(r"\bat 0x[0-9a-f]{6,}\b"),
    "a bookkeeping column": re.compile(r"\bverified\s*(?:True|False)\b|\bpaper verified\b"),
}


class _Text(HTMLParser):
    """A page's text as a reader sees it: what is outside <script> and <style>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def internal_text(page_html: str) -> list[str]:
    """Each piece of internal text (INTERNAL_TEXT) in a page's readable text, with what it is."""
    parser = _Text()
    parser.feed(page_html)
    text = " ".join(" ".join(parser.parts).split())
    return [f"{what}: ...{text[max(0, m.start() - 40):m.end() + 20]}..."
            for what, pattern in INTERNAL_TEXT.items() for m in pattern.finditer(text)]


def test_internal_text_is_recognised():
    page = ("<p>the target of issue #16</p><pre>&lt;matplotlib.legend.Legend at 0x7f3a2b1c0d90&gt;</pre>"
            "<td>verified</td><td>False</td><script>var x = 'issue #3';</script>")
    found = internal_text(page)
    assert [f.split(":")[0] for f in found] == ["an issue number", "an object repr", "a memory address",
                                                "a bookkeeping column"]
    assert internal_text("<p>Table 5, read from the ICLR version (arXiv v4)</p>") == []


@pytest.mark.parametrize("page", toc_pages())
def test_no_internal_text_on_a_page(page: str, server: str) -> None:
    """No issue numbers, object reprs or bookkeeping columns in what a reader sees (`INTERNAL_TEXT`)."""
    found = internal_text((HTML / f"{page}.html").read_text(errors="replace"))
    assert not found, f"{page}.html shows internal text:\n" + "\n".join(found)


PAGE_LIMIT = 6 * 2**20  # bytes: a chapter page with its images, sliders' frames included


def page_weight(page: str) -> int:
    """Bytes of a built page's HTML plus the image files it shows (its own, not the theme's scripts)."""
    path = HTML / f"{page}.html"
    text = path.read_text(errors="replace")
    images = {(path.parent / src).resolve() for src in re.findall(r'<img[^>]+src="([^"#?:]+)"', text)}
    return path.stat().st_size + sum(p.stat().st_size for p in images if p.is_file())


@pytest.mark.parametrize("page", toc_pages())
def test_page_weight(page: str, server: str) -> None:
    """Every page, its figures and its sliders' frames included, stays within PAGE_LIMIT."""
    weight = page_weight(page)
    assert weight <= PAGE_LIMIT, f"{page}: {weight / 2**20:.1f} MB, more than {PAGE_LIMIT / 2**20:.0f} MB"


def test_no_two_pages_state_different_verdicts_for_one_claim(server: str) -> None:
    """Every verdict a page states comes with its claim's key (`findings.table`); each key has one verdict book-wide."""
    sys.path.insert(0, str(ROOT))
    from lib import claims

    pages = {page: claims.from_html((HTML / f"{page}.html").read_text(errors="replace")) for page in toc_pages()}
    judged = {page: pairs for page, pairs in pages.items() if pairs}
    assert len(judged) >= 8, f"only {sorted(judged)} carry verdicts: every chapter ends with its findings table"
    problems = claims.disagreements(pages)
    assert not problems, "verdicts that disagree or are not registered:\n" + "\n".join(problems)
