"""`pytest -m "not integration"` runs without a broker only if every test
under tests/integration carries the `integration` marker; `-m integration`
must select those tests and nothing else. Checked by collecting in a
separate pytest process, as a user's command line would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def collect(*args: str) -> tuple[list[str], str]:
    """Node ids ``pytest --collect-only`` selects with ``args``, and its summary line."""
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                            cwd=PROJECT, capture_output=True, text=True, timeout=180)
    # 0: tests selected; 5: none selected (everything deselected). Not 2: a module failed to import.
    assert result.returncode in (0, 5), result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    return [line for line in lines if "::" in line], lines[-1] if lines else ""


def test_no_integration_test_escapes_the_integration_marker():
    selected, summary = collect("-m", "not integration", "tests/integration")
    assert selected == [], f"integration tests without the integration marker: {selected}"
    deselected = re.search(r"\((\d+) deselected\)", summary)
    assert deselected and int(deselected.group(1)) > 20, summary


def test_the_integration_marker_selects_the_integration_tests_and_nothing_else():
    everything, _ = collect("tests")
    selected, _ = collect("-m", "integration", "tests")
    assert selected == [node for node in everything if node.startswith("tests/integration/")]
    assert len(selected) < len(everything), "unit tests exist, and are not selected"
