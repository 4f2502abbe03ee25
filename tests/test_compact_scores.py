"""Scores held as one-byte codes give the very output of the dense float64 scores (issue 15.3).

A file whose confidences are all on the percent grid is read into
:class:`~modsab.contract.compact.CompactScores`; the foundation audit walks it a block of
rows at a time and never decodes it whole. The reference is the same reader with the grid
codes switched off (every confidence kept as float64, the dense ``scores`` of before), and
the comparison is the real CLI's ``diagnose --json`` stdout and ``--instances`` file, byte
for byte, on messy sets (invalid and repeated labels, abstentions, missing records, several
datasets), models' records under conditions, a synthetic set, and off-grid confidences.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ablation import LABELS as ABLATION_LABELS
from test_ablation import conditioned_records
from test_order_invariance import LABELS, prediction_files, write

from modsab.cli import main
from modsab.contract import compact, grid
from modsab.contract.predictions import load_predictions
from modsab.core.diagnosis import diagnose
from modsab.data import synth


def run_cli(*args) -> tuple[int, str]:
    """The real entry point in this process: (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(list(map(str, args)))
            code = 0
        except SystemExit as done:
            code = done.code or 0
    return code, out.getvalue()


def outputs(path: Path, folder: Path, labels: tuple[str, ...], *extra: str) -> tuple[int, str, bytes | None]:
    """``diagnose --json`` stdout and the ``--instances`` CSV of ``path``."""
    table = folder / "instances.csv"
    table.unlink(missing_ok=True)
    code, out = run_cli("diagnose", path, "--json", "--instances", table, "--labels", ",".join(labels), *extra)
    return code, out, table.read_bytes() if table.exists() else None


def dense_floats(values: np.ndarray, divisor: float) -> np.ndarray:
    """``grid.encode`` that never takes the codes: the float64 reader of before."""
    return np.asarray(values, dtype=np.float64)


def assert_compact_equals_dense(path: Path, labels: tuple[str, ...], *extra: str) -> None:
    folder = path.parent
    compact_out = outputs(path, folder, labels, *extra)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(grid, "encode", dense_floats)
        dense_out = outputs(path, folder, labels, *extra)
    assert compact_out == dense_out


def off_grid(records: list[dict], data) -> list[dict]:
    """Some confidences moved off the percent grid (12.5, 33.3)."""
    for r in records:
        for c in r["candidates"]:
            if data.draw(st.integers(0, 4), label="off") == 0:
                c["confidence"] = data.draw(st.sampled_from([12.5, 33.3, 99.9]), label="value")
    return records


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prediction_files(), st.sampled_from(["jsonl", "parquet"]), st.booleans(), st.data())
def test_messy_sets_give_the_bytes_of_the_dense_scores(records, fmt, move_off_grid, data):
    if move_off_grid:
        records = off_grid(records, data)
    with tempfile.TemporaryDirectory() as folder:
        path = write(records, Path(folder), fmt)
        assert_compact_equals_dense(path, LABELS, "--bootstrap", "20")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=conditioned_records)
def test_models_records_under_conditions_give_the_bytes_of_the_dense_scores(rows):
    if not any(r.get("gold") for r in rows):
        rows[0]["gold"] = "a"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        assert_compact_equals_dense(path, ABLATION_LABELS, "--bootstrap", "10", "--skip-invalid")


@pytest.mark.parametrize(
    "extra", [(), ("--all", "--bootstrap", "20"), ("--weights", "quality", "--fuse", "text,vision")]
)
def test_a_synthetic_set_in_several_datasets(tmp_path, extra):
    """Over 65,536 instances, so fusion and the top labels run over more than one block."""
    config = synth.SynthConfig(n_instances=70_000 if not extra else 3000, n_datasets=3, seed=4)
    pset, planted = synth.generate(config)
    synth.write(pset, planted, tmp_path, config)
    path = next(tmp_path.glob("predictions.*"))
    assert isinstance(load_predictions(path).score_store, compact.CompactScores)  # else self against self
    assert_compact_equals_dense(path, config.labels, *(extra or ("--bootstrap", "0")))


def test_the_foundation_audit_never_decodes_the_codes_whole(tmp_path):
    config = synth.SynthConfig(n_instances=500, seed=1)
    pset, planted = synth.generate(config)
    synth.write(pset, planted, tmp_path, config)
    path = next(tmp_path.glob("predictions.*"))
    result = diagnose(path, bootstrap=10)
    assert isinstance(result.pset.score_store, compact.CompactScores)
    dense = result.pset.scores  # read whole: decoded once, and kept
    assert dense.dtype == np.float64 and result.pset.score_store is dense
    reference = load_predictions(path, batch_rows=None)  # the whole-file reader keeps floats
    assert isinstance(reference.score_store, np.ndarray)
    assert dense.tobytes() == reference.scores.tobytes()


def test_off_grid_confidences_keep_the_floats(tmp_path):
    lines = [
        {"instance_id": "a", "agent": "text", "gold": "joy", "candidates": [{"label": "joy", "confidence": 33.3}]},
        {"instance_id": "b", "agent": "text", "gold": "anger", "candidates": [{"label": "joy", "confidence": 50}]},
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    pset = load_predictions(path, labels="joy,anger")
    assert isinstance(pset.score_store, np.ndarray)
    assert pset.scores[0, 0, 0] == 33.3 / 100 and pset.scores[1, 0, 0] == 0.5
