"""Reading in batches gives the same set, the same JSON and the same errors as reading whole (issue 15.3).

``load_predictions`` reads ``batch_rows`` records at a time and merges the batches' compact
columns; ``batch_rows=None`` is the plain in-memory reference. Batch sizes 1 to 7 split the
records of one instance over batches, and instances come in any order, so these tests compare
every array of the set, the whole ``diagnose --all`` JSON and the instances file, byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ablation import LABELS as ABLATION_LABELS
from test_ablation import conditioned_records
from test_order_invariance import LABELS, prediction_files, write

from modsab.contract import batches, grid, predictions
from modsab.contract.errors import InputError
from modsab.contract.predictions import load_predictions, merge_partials, reduce_file
from modsab.core.diagnosis import diagnose
from modsab.data import synth

SMALL_BATCHES = (1, 2, 3, 5, 7)
EVERYTHING = dict(bootstrap=30, seed=2, n_folds=3, diagnostics="all")
DEMO = Path(__file__).resolve().parents[1] / "src" / "modsab" / "data" / "demo_predictions.jsonl"


def assert_same_sets(batched, whole, name: str = "set") -> None:
    """Every field equal (of a set, and of its ablation set), arrays of the same dtype and bit
    for bit (NaN where NaN)."""
    for f in dataclasses.fields(whole):
        a, b, where = getattr(batched, f.name), getattr(whole, f.name), f"{name}.{f.name}"
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, where
            assert a.tolist() == b.tolist() if b.dtype == object else a.tobytes() == b.tobytes(), where
        elif dataclasses.is_dataclass(b) and not isinstance(b, type) and f.name == "ablation":
            assert_same_sets(a, b, where)
        else:
            assert a == b, where


def outcome(path: Path, batch_rows: int | None, **options):
    """The set read with ``batch_rows``, or the error's text."""
    try:
        return load_predictions(path, batch_rows=batch_rows, **options)
    except InputError as error:
        return f"InputError: {error}"


def diagnosis(path: Path, batch_rows: int | None, **options) -> str:
    return json.dumps(diagnose(path, batch_rows=batch_rows, **{**EVERYTHING, **options}).to_dict())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prediction_files(), st.sampled_from(["jsonl", "csv", "parquet"]), st.sampled_from(SMALL_BATCHES), st.data())
def test_any_batch_size_gives_the_set_read_whole(records, fmt, batch_rows, data):
    records = data.draw(st.permutations(records), label="order")  # one instance's records far apart
    with tempfile.TemporaryDirectory() as folder:
        path = write(records, Path(folder), fmt)
        assert_batched_reader_vouches_as_the_whole_one(path, fmt, batch_rows)
        for options in ({"labels": ",".join(LABELS)}, {}, {"skip_invalid": True, "labels": "joy,anger"}):
            whole, batched = outcome(path, None, **options), outcome(path, batch_rows, **options)
            if isinstance(whole, str):
                assert batched == whole
            else:
                assert_same_sets(batched, whole)


def assert_batched_reader_vouches_as_the_whole_one(path: Path, fmt: str, batch_rows: int) -> None:
    """The batched reader did the reading (it did not hand the file to the whole-file reader)
    wherever the whole-file fast reader can: else the comparisons would compare it with itself."""
    try:
        predictions._fast(path, fmt, "percent", None)
    except predictions._GiveUp:
        return
    predictions._batched(path, fmt, "percent", batch_rows)


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory) -> Path:
    """A ``modsab synth`` set with two datasets, shuffled so each batch holds parts of many instances."""
    folder = tmp_path_factory.mktemp("synth")
    config = synth.SynthConfig(n_instances=300, n_datasets=2, scenario="mixed", seed=4)
    pset, planted = synth.generate(config)
    synth.write(pset, planted, folder, config)
    lines = (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    order = np.random.default_rng(0).permutation(len(lines))
    path = folder / "shuffled.jsonl"
    path.write_text("".join(lines[i] + "\n" for i in order), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "parquet-directory"])
def test_diagnose_all_json_and_instances_are_byte_identical(synth_file, fmt, tmp_path):
    records = [json.loads(line) for line in synth_file.read_text(encoding="utf-8").splitlines()]
    path = _as(records, tmp_path, fmt)
    assert_batched_reader_vouches_as_the_whole_one(path, "parquet" if fmt.startswith("parquet") else fmt, 7)
    reference = diagnosis(path, None)
    whole_instances = tmp_path / "whole.parquet"
    diagnose(path, batch_rows=None, bootstrap=0, diagnostics="all").write_instances(whole_instances)
    for batch_rows in (1, 7, 256, batches.DEFAULT_BATCH_ROWS):
        assert diagnosis(path, batch_rows) == reference, batch_rows
    batched_instances = tmp_path / "batched.parquet"
    diagnose(path, batch_rows=3, bootstrap=0, diagnostics="all").write_instances(batched_instances)
    assert batched_instances.read_bytes() == whole_instances.read_bytes()


def _as(records: list[dict], folder: Path, fmt: str) -> Path:
    """The records in one format; ``parquet-directory``: as five part files and a ``_SUCCESS``
    marker, as a Spark job writes them."""
    if fmt != "parquet-directory":
        return write(records, folder, fmt)
    single = write(records, folder, "parquet")
    table = pq.read_table(single)
    out = folder / "parts"
    out.mkdir()
    bounds = np.linspace(0, table.num_rows, 6).astype(int)
    for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        pq.write_table(table.slice(start, stop - start), out / f"part-{i:05d}.parquet")
    (out / "_SUCCESS").write_text("")
    single.unlink()
    return out


def test_the_demo_in_batches(tmp_path):
    reference = diagnosis(DEMO, None, labels="meld")
    assert diagnosis(DEMO, 5, labels="meld") == reference


def test_a_directory_of_parquet_files_reads_as_the_one_file(synth_file, tmp_path):
    records = [json.loads(line) for line in synth_file.read_text(encoding="utf-8").splitlines()]
    single = write(records, tmp_path, "parquet")
    (tmp_path / "d").mkdir()
    parts = _as(records, tmp_path / "d", "parquet-directory")
    for batch_rows in (None, 4, batches.DEFAULT_BATCH_ROWS):
        from_parts = load_predictions(parts, batch_rows=batch_rows)
        assert_same_sets(dataclasses.replace(from_parts, source=str(single)), load_predictions(single, batch_rows=None))


def test_a_file_reduced_on_its_own_merges_into_the_same_set(synth_file, tmp_path):
    """What a cluster task would do: one partial result per file, merged on the driver."""
    records = [json.loads(line) for line in synth_file.read_text(encoding="utf-8").splitlines()]
    parts = _as(records, tmp_path, "parquet-directory")
    files = batches.parquet_files(parts)
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(5)]
    partials, first = [], 1
    for file in files:
        partials.append(reduce_file(file, fmt="parquet", scale="percent", batch_rows=50, first_line=first))
        first += pq.read_metadata(file).num_rows
    merged = merge_partials(partials)
    assert isinstance(merged.cand_confidence, grid.GridArray)  # whole percents: one byte each
    assert np.array_equal(merged.line, np.arange(1, len(records) + 1))


def _bad_late(tmp_path: Path, fmt: str, kind: str) -> Path:
    records = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines()[:60]]
    if kind == "duplicate":
        records.append(dict(records[3]))
    elif kind == "gold conflict":
        records.append({**records[0], "agent": "extra", "gold": "fear" if records[0].get("gold") != "fear" else "joy"})
    else:
        records.append({**records[5], "instance_id": "late", "candidates": [{"label": "joy", "confidence": 140}]})
    for r in records:
        r.setdefault("quality", 50)
        r.setdefault("dataset", "d")
    return write(records, tmp_path, fmt)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("kind", ["duplicate", "gold conflict", "out of range"])
def test_errors_in_a_late_batch_are_the_errors_of_the_whole_file(tmp_path, fmt, kind):
    path = _bad_late(tmp_path, fmt, kind)
    whole = outcome(path, None, labels="meld")
    assert isinstance(whole, str) and whole.startswith("InputError")
    for batch_rows in (1, 7, 16):
        assert outcome(path, batch_rows, labels="meld") == whole
    skipped = outcome(path, None, labels="meld", skip_invalid=True)
    assert_same_sets(outcome(path, 7, labels="meld", skip_invalid=True), skipped)


@settings(max_examples=25, deadline=None)
@given(rows=conditioned_records, batch_rows=st.sampled_from(SMALL_BATCHES))
def test_models_records_under_conditions_in_batches(rows, batch_rows, tmp_path_factory):
    """Records with conditions (an end-to-end model's ablations) split over batches, some of
    them with no condition at all."""
    if not any(r.get("gold") for r in rows):
        rows[0]["gold"] = "a"
    path = tmp_path_factory.mktemp("conditions") / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    whole = outcome(path, None, labels=ABLATION_LABELS, skip_invalid=True)
    batched = outcome(path, batch_rows, labels=ABLATION_LABELS, skip_invalid=True)
    if isinstance(whole, str):
        assert batched == whole
        return
    assert_same_sets(batched, whole)


def test_batch_rows_must_be_positive(tmp_path):
    with pytest.raises(InputError, match="batch_rows"):
        load_predictions(DEMO, batch_rows=0)


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.text("ab\n", max_size=6), max_size=12),
    per_block=st.integers(1, 7),
    skip=st.integers(0, 1),
    chunk=st.integers(1, 9),
)
def test_line_blocks_cut_whole_lines(tmp_path_factory, lines, per_block, skip, chunk):
    text = "\n".join(lines).encode()
    path = tmp_path_factory.mktemp("blocks") / "f.txt"
    path.write_bytes(text)
    original, batches._CHUNK_BYTES = batches._CHUNK_BYTES, chunk
    try:
        blocks = list(batches.line_blocks(path, per_block, skip=skip))
    finally:
        batches._CHUNK_BYTES = original
    expected = text.split(b"\n", skip)[-1] if skip and b"\n" in text else (b"" if skip else text)
    assert b"".join(blocks) == expected
    assert all(block.count(b"\n") == per_block for block in blocks[:-1]) and all(blocks)


@pytest.mark.parametrize(
    ("values", "divisor", "on_grid"),
    [
        ([0.0, 85.0, 100.0, np.nan], 1.0, True),
        ([0.85, 0.07, 1.0], 100.0, True),
        ([0.333], 100.0, False),
        ([-0.0, 10.0], 1.0, False),  # -0.0 would come back as 0.0
        ([85.5], 1.0, False),
        ([300.0], 1.0, False),
    ],
)
def test_grid_codes_only_what_they_give_back_bit_for_bit(values, divisor, on_grid):
    values = np.asarray(values, dtype=np.float64)
    held = grid.encode(values, divisor)
    assert isinstance(held, grid.GridArray) == on_grid
    assert grid.decode(held).tobytes() == values.tobytes()
    assert grid.decode(grid.concatenate([held, held])).tobytes() == np.concatenate([values, values]).tobytes()


def test_parquet_directory_without_files_is_an_input_error(tmp_path):
    (tmp_path / "_SUCCESS").write_text("")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "notes.txt")
    with pytest.raises(InputError, match="Parquet files"):
        load_predictions(tmp_path)
