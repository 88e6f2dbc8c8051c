"""regen installs one namespace: every module imports its siblings as
``regen.<folder>``, never by a bare top-level name that would only resolve
from a checkout (and would load a second copy of the module beside it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
INSTALLED = ("streams", "agents", "schemas", "projections", "imaging", "cli", "kinds")
BARE_IMPORT = re.compile(rf"^\s*(from|import)\s+({'|'.join(INSTALLED)})(\.|\s|$)", re.MULTILINE)


def tracked_python_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=PROJECT, capture_output=True, text=True, check=True)
    return [PROJECT / line for line in listed.stdout.splitlines()]


def test_no_module_imports_a_bare_top_level_name():
    offenders = []
    for path in tracked_python_files():
        for match in BARE_IMPORT.finditer(path.read_text(encoding="utf-8")):
            line = path.read_text(encoding="utf-8")[:match.start()].count("\n") + 1
            offenders.append(f"{path.relative_to(PROJECT)}:{line}: {match.group(0).strip()}")
    assert offenders == [], "import these as regen.<name>:\n" + "\n".join(offenders)


def test_the_installed_regen_package_maps_every_folder():
    code = ("import importlib.util, json; "
            f"print(json.dumps({{n: importlib.util.find_spec(n) is not None for n in {INSTALLED!r}}}))")
    outside = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    importable = [name for name, found in json.loads(outside.stdout).items() if found]
    assert importable == [], f"importable outside the checkout as bare names: {importable}"
    for name in INSTALLED:
        module = __import__(f"regen.{name}", fromlist=["__file__"])
        assert Path(module.__file__).parent == PROJECT / name
