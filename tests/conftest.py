"""Shared test fixtures: the path to ../shared/data (tests that need it skip cleanly without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    # Tests never read or write the user's ~/.cache/edgetrain.
    monkeypatch.setenv("EDGETRAIN_CACHE", str(tmp_path_factory.getbasetemp() / "edgetrain-cache"))
