"""Publishing: the GitHub Pages workflow, the online address in the README, and the pages around the book.

The repository URL lives in one place, `repository.url` in `_config.yml`; the README's online address is the
GitHub Pages address derived from it, and the workflow builds the book with the README's command.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
README = (ROOT / "README.md").read_text()
PAGES = ("glossary", "references", "what_came_after")


def pages_address(repository_url: str) -> str:
    """The GitHub Pages address of a repository: https://github.com/OWNER/NAME -> https://owner.github.io/NAME/."""
    parts = urlsplit(repository_url.strip())
    path = [p for p in parts.path.strip("/").removesuffix(".git").split("/") if p]
    if parts.scheme != "https" or parts.hostname != "github.com" or len(path) != 2:
        raise ValueError(f"not a GitHub repository URL: {repository_url!r}")
    owner, name = path
    host = f"{owner.lower()}.github.io"
    return f"https://{host}/" if name.lower() == host else f"https://{host}/{name}/"


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps() -> list[dict]:
    return [step for job in workflow()["jobs"].values() for step in job.get("steps", [])]


def run_lines() -> list[str]:
    return [line.strip() for step in steps() for line in str(step.get("run", "")).splitlines() if line.strip()]


def uses(action: str) -> list[dict]:
    return [step for step in steps() if str(step.get("uses", "")).split("@")[0] == action]


def test_pages_address_is_derived_from_the_repository_url():
    assert pages_address("https://github.com/Owner/book") == "https://owner.github.io/book/"
    assert pages_address("https://github.com/owner/book.git") == "https://owner.github.io/book/"
    assert pages_address("https://github.com/owner/owner.github.io") == "https://owner.github.io/"
    with pytest.raises(ValueError):
        pages_address("https://gitlab.com/owner/book")


def test_the_workflow_builds_with_the_readme_command():
    assert "make book" in README, "the README's build command changed: update the workflow and this test"
    assert "make book" in run_lines(), f"the workflow does not run `make book`: {run_lines()}"
    assert not any("jupyter-book build" in line for line in run_lines()), "build through `make book`, not around it"


def test_the_workflow_uploads_the_html_and_deploys_it():
    uploads = uses("actions/upload-pages-artifact")
    assert [str(s.get("with", {}).get("path", "")).strip("./") for s in uploads] == ["_build/html"]
    assert uses("actions/checkout") and uses("actions/setup-python") and uses("actions/deploy-pages")
    order = [str(s.get("uses", s.get("run", ""))) for s in steps()]
    build = next(i for i, s in enumerate(order) if "make book" in s)
    upload = next(i for i, s in enumerate(order) if s.startswith("actions/upload-pages-artifact"))
    deploy = next(i for i, s in enumerate(order) if s.startswith("actions/deploy-pages"))
    assert build < upload < deploy


def test_the_workflow_runs_on_push_to_main_and_by_hand_with_pages_permissions():
    wf = workflow()
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["branches"] == [CONFIG["repository"]["branch"]] == ["main"]
    assert "workflow_dispatch" in triggers
    for job in wf["jobs"].values():
        if any(str(s.get("uses", "")).startswith("actions/deploy-pages") for s in job.get("steps", [])):
            permissions = {**wf.get("permissions", {}), **job.get("permissions", {})}
            assert permissions.get("pages") == "write" and permissions.get("id-token") == "write"


def test_the_workflow_installs_no_browser():
    text = WORKFLOW.read_text()
    assert "chromium" not in "\n".join(run_lines()).lower() and "apt-get" not in text, \
        "building the book needs no Debian package (Chromium is for the browser test only)"


def test_the_readme_gives_the_online_address_derived_from_the_config():
    address = pages_address(CONFIG["repository"]["url"])
    assert address in README, f"the README should say the book is read online at {address}"
    others = set(re.findall(r"https://[\w.-]+\.github\.io/[\w./-]*", README)) - {address}
    assert not others, f"the README names other Pages addresses: {sorted(others)}"
    assert ".github/workflows/book.yml" in README


def test_the_repository_url_is_written_once():
    url = CONFIG["repository"]["url"].rstrip("/")
    for path in (ROOT / "README.md", WORKFLOW):
        assert url not in path.read_text(), f"{path.name} repeats repository.url: derive it from _config.yml"


def test_the_pages_around_the_book_are_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    around = next(part for part in toc["parts"] if part["caption"] == "Around the book")
    files = [chapter["file"] for chapter in around["chapters"]]
    assert files[-len(PAGES):] == list(PAGES), files
    for page in PAGES:
        assert (ROOT / f"{page}.md").exists()


def test_citations_are_wired_up():
    extensions = CONFIG["sphinx"]["config"]["extensions"]
    assert "sphinxcontrib.bibtex" in extensions, "the explicit extensions list must load sphinxcontrib.bibtex"
    assert CONFIG["bibtex_bibfiles"] == ["references.bib"] and (ROOT / "references.bib").exists()
    assert "```{bibliography}" in (ROOT / "references.md").read_text()
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^sphinxcontrib-bibtex\b", requirements, re.M)
    assert "https://arxiv.org/abs/1312.6199" in (ROOT / "what_came_after.md").read_text()
