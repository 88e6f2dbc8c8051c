"""Shared fixtures: the test corpus and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
CORPUS = PROJECT.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "photos").is_dir():
        pytest.fail(f"the test corpus is missing: expected {CORPUS} (shared/corpus beside the project)")
    return CORPUS
