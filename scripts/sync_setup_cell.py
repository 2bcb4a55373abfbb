"""Write the shared setup cell (scripts/setup_cell.py) at the top of every notebook's first code cell.

    python scripts/sync_setup_cell.py            # update setup_cell.py's URL/branch and every notebook
    python scripts/sync_setup_cell.py --check    # change nothing; exit 1 if anything is out of date
    python scripts/sync_setup_cell.py SRC.py ... # also percent-format sources (# %% cells) of notebooks

First, the repository URL and branch in setup_cell.py are set from `repository:` in _config.yml (the one
place they are written by hand). Then, in each notebook of _toc.yml and chapters/, the first code cell is
rewritten as the template followed by the lines that are the chapter's own, and its outputs are cleared.
The chapter's own lines are those after `sys.path.insert(0, str(root))`, less `import lib` (the template
imports it), so the template must end with exactly those two lines (checked here).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "scripts" / "setup_cell.py"
PATH_LINE = "sys.path.insert(0, str(root))"
IMPORT_LINE = "import lib"
DEFAULT = r'(os\.environ\.get\("{var}", )"[^"]*"'


def repository() -> tuple[str, str]:
    """The repository URL and branch from _config.yml."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config.get("repository") or {}
    if not repo.get("url") or not repo.get("branch"):
        raise ValueError("_config.yml needs repository: {url: ..., branch: ...}")
    return repo["url"], repo["branch"]


def template_text(url: str, branch: str) -> str:
    """setup_cell.py with the given URL and branch as the defaults (no trailing newline)."""
    text = TEMPLATE.read_text()
    for var, value in (("BOOK_REPOSITORY_URL", url), ("BOOK_REPOSITORY_BRANCH", branch)):
        text, n = re.subn(DEFAULT.format(var=var), lambda m: f'{m.group(1)}"{value}"', text)
        if n != 1:
            raise ValueError(f"{TEMPLATE.name}: expected one os.environ.get({var!r}, ...) line, found {n}")
    lines = text.rstrip("\n").split("\n")
    if lines[-2:] != [PATH_LINE, IMPORT_LINE] or lines.count(PATH_LINE) != 1:
        raise ValueError(f"{TEMPLATE.name} must end with the lines {PATH_LINE!r} and {IMPORT_LINE!r}")
    return "\n".join(lines)


def with_template(source: str, template: str, where: str) -> str:
    """The cell `source` with its shared setup replaced by `template`, its own lines kept below."""
    lines = source.split("\n")
    if PATH_LINE not in lines:
        raise ValueError(f"{where}: the first code cell has no {PATH_LINE!r} line (where the setup ends)")
    own = [line for line in lines[lines.index(PATH_LINE) + 1:] if line != IMPORT_LINE]
    while own and not own[0].strip():
        own.pop(0)
    while own and not own[-1].strip():
        own.pop()
    if not own:
        return template
    gap = "\n" if own[0].startswith("lib.") else "\n\n"  # `lib.setup_torch(...)` right below `import lib`
    return template + gap + "\n".join(own)


def sync_notebook(path: Path, template: str, write: bool) -> bool:
    """Rewrite the first code cell of the notebook at `path`; whether it changed."""
    nb = nbformat.read(path, as_version=4)
    cell = next((c for c in nb.cells if c.cell_type == "code"), None)
    if cell is None:
        raise ValueError(f"{path}: no code cell")
    source = with_template(cell.source, template, str(path))
    changed = source != cell.source or cell.outputs or cell.execution_count is not None
    if changed and write:
        cell.source, cell.outputs, cell.execution_count = source, [], None
        nbformat.write(nb, path)
    return bool(changed)


def sync_percent(path: Path, template: str, write: bool) -> bool:
    """Rewrite the first code cell (`# %%`) of the percent-format script at `path`; whether it changed."""
    lines = path.read_text().split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("# %%")]
    first = next((i for i in starts if not lines[i].startswith("# %% [")), None)
    if first is None:
        raise ValueError(f"{path}: no `# %%` code cell")
    end = next((i for i in starts if i > first), len(lines))
    body = "\n".join(lines[first + 1:end])
    tail = body[len(body.rstrip("\n")):]  # the blank lines before the next cell
    new = with_template(body.rstrip("\n"), template, str(path)) + tail
    if new == body:
        return False
    if write:
        path.write_text("\n".join(lines[:first + 1] + new.split("\n") + lines[end:]))
    return True


def notebooks() -> list[Path]:
    """Every notebook the book builds (from _toc.yml) and every notebook in chapters/."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    found = {ROOT / f"{f}.ipynb" for f in files} | set((ROOT / "chapters").glob("*.ipynb"))
    return sorted(p for p in found if p.exists())


def main(argv: list[str] | None = None) -> int:
    """Sync the template's URL, then every notebook (and any percent-format sources given)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="*", type=Path, help="percent-format sources to update as well")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if out of date")
    args = parser.parse_args(argv)
    write = not args.check
    url, branch = repository()
    template = template_text(url, branch)
    stale = []
    if TEMPLATE.read_text() != template + "\n":
        stale.append(TEMPLATE)
        if write:
            TEMPLATE.write_text(template + "\n")
    stale += [p for p in notebooks() if sync_notebook(p, template, write)]
    stale += [p for p in args.sources if sync_percent(p, template, write)]
    for path in stale:
        print(("out of date: " if args.check else "updated: ") + str(path))
    if not stale:
        print(f"setup cells up to date ({url}, branch {branch})")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
