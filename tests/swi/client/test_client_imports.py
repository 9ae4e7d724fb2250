"""The client is the base install: `swi.client` loads only contracts, bundles and its HTTP libraries, and
works without the server extra (torch, SQLAlchemy, rich, typer, ...), which `swi` itself asks for."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from swi.cli import SERVER_EXTRA, SERVER_EXTRA_HINT

REPO_ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "sqlalchemy", "rich", "catalog", "api", "indexer")
#: makes every package of the server extra unimportable, as in an install without it
BLOCK_SERVER_EXTRA = f"""
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {sorted(SERVER_EXTRA)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)


def test_import_loads_no_server_module() -> None:
    # httpx imports rich itself where rich is installed (for its own command line): count what swi.client adds
    code = (
        "import sys, httpx; before = set(sys.modules); import swi.client; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules and m not in before))"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_client_works_without_the_server_extra() -> None:
    code = BLOCK_SERVER_EXTRA + (
        "import swi.client\n"
        "with swi.client._progress_display('job 0b9f7a51') as update:\n"
        "    update('detect', 0.0, message='attempt 1/3')\n"
        "    update('detect', 0.05)\n"
        "    update('detect', 0.4)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert done.stderr.splitlines() == [
        "[job 0b9f7a51] detect   0%: attempt 1/3",
        "[job 0b9f7a51] detect  40%",
    ]


def test_swi_without_the_server_extra_says_so() -> None:
    done = _python(BLOCK_SERVER_EXTRA + "from swi.cli import main\nmain()\n")
    assert done.returncode == 2
    assert done.stderr.strip() == SERVER_EXTRA_HINT


def test_base_dependencies_are_the_client_only() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=!~ ]", r, maxsplit=1)[0].lower() for r in requirements}

    base = names(project["dependencies"])
    assert not base & {"torch", "sqlalchemy", "rich", "typer", "fastapi", "celery", "transformers", "numpy"}
    assert {"pydantic", "httpx", "hishel", "stamina"} <= base
    assert {"torch", "sqlalchemy", "rich", "typer"} <= names(project["optional-dependencies"]["server"])
