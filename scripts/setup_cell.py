# Setup: import the book's `lib` package from the repository around this notebook. In Colab (the launch
# button), first clone the repository and install what Colab lacks (Colab brings its own torch).
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = os.environ.get("BOOK_REPOSITORY_URL", "https://github.com/intriguing-properties-executed/book")
BRANCH = os.environ.get("BOOK_REPOSITORY_BRANCH", "main")

root = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "lib" / "__init__.py").exists()), None)
if root is None and "google.colab" in sys.modules:
    root = Path(os.environ.get("BOOK_CLONE_DIR", "/content/" + REPOSITORY.rstrip("/").split("/")[-1]))
    if not (root / "lib" / "__init__.py").exists():
        subprocess.run(["git", "clone", "-q", "--depth", "1", "-b", BRANCH, REPOSITORY, str(root)], check=True)
    requirements = root / "requirements-colab.txt"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
    os.chdir(root / "chapters")
if root is None:
    raise RuntimeError("run this notebook inside the book's repository (the folder that holds lib/) or in Colab")
sys.path.insert(0, str(root))
import lib
