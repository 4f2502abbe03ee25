"""Shared fixtures: where the shared data lives, skipping with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TREE = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    env = os.environ.get("MODSAB_DATA")
    if env:
        return Path(env)
    for candidate in (TREE.parent / "shared" / "data", TREE.parent.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return TREE.parent / "shared" / "data"


@pytest.fixture(scope="session")
def meld_descriptions() -> Path:
    path = data_root() / "meld_descriptions" / "meld_annotation.json"
    if not path.exists():
        pytest.skip(
            f"MELD descriptions not found at {path} (set MODSAB_DATA to the shared data folder)"
        )
    return path
