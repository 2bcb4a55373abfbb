"""The shared first cell of every notebook (scripts/setup_cell.py): the same everywhere, and it works in Colab.

Colab is simulated offline: a fresh virtualenv without the project on its path, whose preinstalled packages
are this environment's (a .pth file), a stub `google.colab` package, and a local git repository standing in
for the published one. pip runs with --no-index (PIP_NO_INDEX), so it can only find everything installed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "scripts" / "setup_cell.py"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
ERROR = "RuntimeError: run this notebook inside the book's repository"

# Runs the cell the way a notebook kernel does (in __main__, with google.colab imported by the kernel
# before any cell in Colab), then reports where `lib` came from and where the cell left the kernel.
DRIVER = """
import os, sys
if os.environ.get("FAKE_COLAB"):
    import google.colab
source = open(sys.argv[1]).read()
for _ in range(int(sys.argv[2])):
    exec(compile(source, "setup_cell", "exec"))
print("LIB", lib.__file__)
print("CWD", os.getcwd())
"""


def notebooks() -> list[Path]:
    """Every notebook of the repository (at its root and in chapters/), found without the sync script's toc walk."""
    return sorted([*ROOT.glob("*.ipynb"), *(ROOT / "chapters").glob("*.ipynb")])


def test_template_carries_the_repository_of_config():
    text = TEMPLATE.read_text()
    repo = CONFIG["repository"]
    assert f'os.environ.get("BOOK_REPOSITORY_URL", "{repo["url"]}")' in text
    assert f'os.environ.get("BOOK_REPOSITORY_BRANCH", "{repo["branch"]}")' in text
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_first_code_cell_starts_with_the_template(path):
    cell = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    source = "".join(cell["source"])
    template = TEMPLATE.read_text().rstrip("\n")
    assert source == template or source.startswith(template + "\n"), (
        f"{path.name}: first code cell differs from scripts/setup_cell.py; run `make setup-cells`")


def test_every_chapter_is_checked():
    assert len(notebooks()) >= 7  # six chapters and paper_vs_book


def test_sync_script_finds_nothing_to_do():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_setup_cell.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_colab_requirements_leave_torch_to_colab():
    names = [line.split("#")[0].strip() for line in (ROOT / "requirements-colab.txt").read_text().splitlines()]
    names = [n for n in names if n]
    assert names and not {"torch", "torchvision"} & {n.split("=")[0].split(">")[0].split("<")[0] for n in names}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> dict:
    """A fresh virtualenv with this environment's packages as 'preinstalled', a stub google.colab, a local repo."""
    tmp = tmp_path_factory.mktemp("colab")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    ours = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})  # this interpreter's sys.prefix
    Path(site, "preinstalled.pth").write_text("\n".join(ours) + "\n")

    stub = tmp / "stub" / "google" / "colab"
    stub.mkdir(parents=True)
    (stub.parent / "__init__.py").write_text("")
    (stub / "__init__.py").write_text("")

    # The repository as it would be published: the files git tracks or would track (data/ and _vendor/
    # left out: large, and nothing the first cell touches), committed on the branch _config.yml names.
    repo = tmp / "published"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for name in listed:
        if name and not name.startswith(("data/", "_vendor/")) and (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
    branch = CONFIG["repository"]["branch"]
    for args in (["init", "-q", "-b", branch], ["add", "-A"], ["commit", "-q", "-m", "published"]):
        subprocess.run(git + args, cwd=repo, check=True, capture_output=True, timeout=60)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(tmp / "stub"), PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_INPUT="1", BOOK_REPOSITORY_URL=repo.as_uri(), BOOK_CLONE_DIR=str(tmp / "content" / "book"))
    return {"tmp": tmp, "python": python, "env": env, "clone": tmp / "content" / "book"}


def run_cell(sandbox: dict, cwd: Path, colab: bool, times: int = 1) -> subprocess.CompletedProcess:
    """Run the template `times` in one fresh interpreter of the sandbox's virtualenv, in `cwd`."""
    env = dict(sandbox["env"], **({"FAKE_COLAB": "1"} if colab else {}))
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sandbox["python"], "-c", DRIVER, str(TEMPLATE), str(times)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def reported(run: subprocess.CompletedProcess, key: str) -> Path:
    """The path the driver printed after `key`."""
    assert run.returncode == 0, run.stdout + run.stderr
    return Path(next(line for line in run.stdout.splitlines() if line.startswith(key + " "))[len(key) + 1:])


def test_the_sandbox_lacks_the_project(sandbox):
    empty = sandbox["tmp"] / "empty"
    empty.mkdir(exist_ok=True)
    run = subprocess.run([sandbox["python"], "-c", "import numpy, torch; import lib"], cwd=empty,
                         env=sandbox["env"], capture_output=True, text=True, timeout=120)
    assert "No module named 'lib'" in run.stderr  # numpy and torch (the 'preinstalled' stack) did import


def test_in_colab_it_clones_installs_and_imports_lib(sandbox):
    clone = sandbox["clone"]
    first = run_cell(sandbox, sandbox["tmp"] / "colab1", colab=True)
    assert reported(first, "LIB").resolve() == (clone / "lib" / "__init__.py").resolve()
    assert reported(first, "CWD").resolve() == (clone / "chapters").resolve()
    shallow = subprocess.run(["git", "-C", str(clone), "rev-parse", "--is-shallow-repository"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
    assert shallow == "true"

    # Idempotent: a restarted runtime (fresh process, cwd back outside) reuses the clone, and running the
    # cell twice in one kernel works too; the clone is neither replaced nor touched.
    (clone / "untracked-marker").write_text("kept")
    head = (clone / ".git" / "HEAD").read_text()
    again = run_cell(sandbox, sandbox["tmp"] / "colab2", colab=True, times=2)
    assert reported(again, "LIB").resolve() == (clone / "lib" / "__init__.py").resolve()
    assert "Cloning" not in again.stderr
    assert (clone / "untracked-marker").read_text() == "kept" and (clone / ".git" / "HEAD").read_text() == head


def test_outside_colab_it_finds_the_root_from_a_subfolder(sandbox):
    run = run_cell(sandbox, ROOT / "chapters", colab=False)
    assert reported(run, "LIB").resolve() == (ROOT / "lib" / "__init__.py").resolve()
    assert reported(run, "CWD").resolve() == (ROOT / "chapters").resolve()  # no chdir outside Colab


def test_outside_colab_and_any_repository_it_raises_a_clear_error(sandbox):
    clone = sandbox["tmp"] / "content" / "not-cloned"
    sandbox = dict(sandbox, env=dict(sandbox["env"], BOOK_CLONE_DIR=str(clone)))
    run = run_cell(sandbox, sandbox["tmp"] / "elsewhere", colab=False)
    assert run.returncode != 0 and ERROR in run.stderr, run.stderr
    assert not clone.exists()  # nothing cloned outside Colab
