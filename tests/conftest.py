"""Shared helpers: write prediction records to files, find the shared data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

MELD = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")


def record(instance, agent, candidates, *, gold=None, quality=None, dataset=None, **extra):
    """One contract record; ``candidates`` is a list of (label, confidence)."""
    out = {
        "instance_id": instance,
        "agent": agent,
        "candidates": [{"label": label, "confidence": conf} for label, conf in candidates],
    }
    if gold is not None:
        out["gold"] = gold
    if quality is not None:
        out["quality"] = quality
    if dataset is not None:
        out["dataset"] = dataset
    out.update(extra)
    return out


@pytest.fixture
def write_jsonl(tmp_path):
    def write(records, name="predictions.jsonl"):
        path = tmp_path / name
        with path.open("w", encoding="utf-8") as handle:
            for rec in records:
                handle.write((rec if isinstance(rec, str) else json.dumps(rec, ensure_ascii=False)) + "\n")
        return path

    return write


def shared_data() -> Path | None:
    """``$MODSAB_DATA`` or ``../shared/data`` beside the checkout, when present."""
    env = os.environ.get("MODSAB_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture
def data_dir() -> Path:
    path = shared_data()
    if path is None:
        pytest.skip("shared data not found: set MODSAB_DATA or place ../shared/data beside the checkout")
    return path
