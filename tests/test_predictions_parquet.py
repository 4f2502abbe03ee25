"""The Parquet fast path of load_predictions: the same sets as the exact reader, and as
the contract computed by hand, on files with duplicates, whitespace, null or blank gold,
invalid labels, several row groups and dictionary (categorical) columns."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modsab.contract import predictions
from modsab.contract.errors import InputError
from modsab.contract.labels import LabelSet
from modsab.contract.predictions import load_predictions

LABELS = "joy,anger,sadness,neutral"
CANDIDATES = pa.list_(pa.struct([("label", pa.string()), ("confidence", pa.float64())]))
ARRAYS = ("instance_ids", "scores", "candidate", "quality", "gold", "present", "dataset", "line")


def rec(instance, agent, candidates, *, gold=None, dataset=None, quality=None):
    candidates = [{"label": label, "confidence": float(conf)} for label, conf in candidates]
    return {
        "instance_id": instance,
        "agent": agent,
        "gold": gold,
        "dataset": dataset,
        "quality": quality,
        "candidates": candidates,
    }


def as_dictionary(values: list, extra: list[str], order: list[int] | None, index_type=pa.int32()) -> pa.Array:
    """A dictionary column whose dictionary holds ``extra`` unused values and comes in ``order``."""
    distinct = list(dict.fromkeys([v for v in values if v is not None] + extra))
    if order is not None:
        distinct = [distinct[i] for i in sorted(range(len(distinct)), key=lambda i: (order[i % len(order)], i))]
    position = {v: i for i, v in enumerate(distinct)}
    indices = pa.array([None if v is None else position[v] for v in values], index_type)
    return pa.DictionaryArray.from_arrays(indices, pa.array(distinct, pa.string()))


def write_parquet(
    records,
    path,
    *,
    row_group_size=1000,
    use_dictionary=True,
    categorical=(),
    extra=(),
    order=None,
    compliant=True,
    drop=(),
):
    columns = {}
    for name in ("instance_id", "agent", "gold", "dataset"):
        values = [r[name] for r in records]
        if name in categorical:
            columns[name] = as_dictionary(values, list(extra), order, pa.int8() if name == "agent" else pa.int32())
        else:
            columns[name] = pa.array(values, pa.string())
    columns["quality"] = pa.array([r["quality"] for r in records], pa.float64())
    columns["candidates"] = pa.array([r["candidates"] for r in records], CANDIDATES)
    table = pa.table({k: v for k, v in columns.items() if k not in drop})
    pq.write_table(
        table,
        path,
        row_group_size=row_group_size,
        use_dictionary=use_dictionary,
        use_compliant_nested_type=compliant,
    )
    return path


def outcome(path, **options):
    try:
        return load_predictions(path, **options)
    except InputError as error:
        return f"InputError: {error}"


def exact(path, **options):
    """What the record-by-record reader makes of the file."""

    def give_up(*args, **kwargs):
        raise predictions._GiveUp

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predictions, "_fast", give_up)
        return outcome(path, **options)


def fast(path, **options):
    """What the fast reader makes of the file; fails if it handed the file to the exact one."""
    used = []
    real = predictions._fast

    def spy(*args, **kwargs):
        flat = real(*args, **kwargs)
        used.append(flat)
        return flat

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predictions, "_fast", spy)
        result = outcome(path, **options)
    assert used, "the fast reader gave up"
    return result


def assert_same(a, b):
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
        return
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is None:
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype == object:
            assert x.tolist() == y.tolist(), name
        else:
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
    assert a.agents == b.agents
    assert tuple(a.labels) == tuple(b.labels)
    assert a.invalid_labels == b.invalid_labels
    assert a.invalid_examples == b.invalid_examples
    assert [s.to_dict() for s in a.skipped] == [s.to_dict() for s in b.skipped]
    assert (a.n_without_gold, a.source, a.scale) == (b.n_without_gold, b.source, b.scale)


# -- generated files: fast == exact ---------------------------------------------------------

records_strategy = st.lists(
    st.builds(
        rec,
        st.sampled_from(["i0", "i1", " i1", "i2\t", "10", "i3"]),
        st.sampled_from(["text", "audio", " audio", "vision"]),
        st.lists(
            st.tuples(
                st.sampled_from(["joy", "anger", "sadness", "neutral", "Joy", " joy", "confusion", "fear"]),
                st.sampled_from([0, 12.5, 50, 99, 100]),
            ),
            max_size=5,
        ),
        gold=st.one_of(st.none(), st.sampled_from(["joy", "anger", " joy ", "", "  ", "disgust", "sadness"])),
        dataset=st.one_of(st.none(), st.sampled_from(["meld", " meld", "iemocap", ""])),
        quality=st.one_of(st.none(), st.sampled_from([0.0, 37.5, 100.0])),
    ),
    min_size=1,
    max_size=30,
)

layout_strategy = st.fixed_dictionaries(
    {
        "row_group_size": st.sampled_from([2, 5, 1000]),
        "use_dictionary": st.booleans(),
        "categorical": st.sets(st.sampled_from(["instance_id", "agent", "gold", "dataset"])),
        "extra": st.lists(st.sampled_from(["unused", " i1", "zz ", "joy"]), max_size=3, unique=True),
        "order": st.one_of(st.none(), st.permutations(range(6))),
        "compliant": st.booleans(),
        "drop": st.sampled_from([(), ("dataset",), ("gold", "quality")]),
    }
)

options_strategy = st.fixed_dictionaries(
    {"labels": st.sampled_from([None, LABELS]), "skip_invalid": st.booleans(), "strict": st.booleans()}
)


@settings(max_examples=150, deadline=None)
@given(records_strategy, layout_strategy, options_strategy)
def test_fast_parquet_reader_equals_exact_reader(records, layout, options):
    with tempfile.TemporaryDirectory() as folder:
        path = write_parquet(records, Path(folder) / "p.parquet", **layout)
        assert_same(fast(path, **options), exact(path, **options))


@settings(max_examples=40, deadline=None)
@given(records_strategy, options_strategy)
def test_jsonl_and_csv_equal_parquet(records, options):
    import json

    import pandas as pd

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        parquet = write_parquet(records, folder / "p.parquet")
        jsonl = folder / "p.jsonl"
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        frame = pd.DataFrame(records)
        frame["candidates"] = [json.dumps(c) for c in frame["candidates"]]
        csv = folder / "p.csv"
        frame.to_csv(csv, index=False)
        reference = fast(parquet, **options)
        for other in (jsonl, csv):
            result = outcome(other, **options)
            if isinstance(reference, str):
                assert isinstance(result, str)
                continue
            for name in ARRAYS[:-1]:  # lines differ: rows of Parquet, lines of text
                x, y = getattr(reference, name), getattr(result, name)
                assert (x is None) == (y is None), name
                if x is not None and x.dtype == object:
                    assert x.tolist() == y.tolist(), name
                elif x is not None:
                    assert np.array_equal(x, y, equal_nan=True), name
            assert (reference.agents, reference.invalid_labels) == (result.agents, result.invalid_labels)


# -- generated files: the contract computed by hand ---------------------------------------


def by_hand(records, labels: LabelSet):
    """Scores, candidates, gold, order... as the contract defines them (one record per
    (instance, agent) and one gold per instance assumed): instances and agents sorted, an
    instance's dataset the last of its names, a label repeated within an answer counted as
    invalid (its first mention kept)."""
    instances = sorted({r["instance_id"].strip() for r in records})
    agents = sorted({r["agent"].strip() for r in records})
    datasets = sorted({d.strip() for r in records if (d := r["dataset"]) and d.strip()})
    n, m, k = len(instances), len(agents), len(labels)
    scores, candidate = np.zeros((n, m, k)), np.zeros((n, m, k), dtype=bool)
    quality, present = np.full((n, m), np.nan), np.zeros((n, m), dtype=bool)
    gold, dataset = np.full(n, -1), np.full(n, -1)
    invalid = dict.fromkeys(agents, 0)
    for r in records:
        i, a = instances.index(r["instance_id"].strip()), agents.index(r["agent"].strip())
        present[i, a] = True
        quality[i, a] = math.nan if r["quality"] is None else r["quality"] / 100
        if r["gold"] and r["gold"].strip():
            gold[i] = labels.code(r["gold"].strip())
        if r["dataset"] and r["dataset"].strip():
            dataset[i] = max(dataset[i], datasets.index(r["dataset"].strip()))
        named = set()
        for c in r["candidates"]:
            code = labels.code(c["label"])
            if code < 0 or code in named:
                invalid[agents[a]] += 1
                continue
            named.add(code)
            scores[i, a, code] = c["confidence"] / 100
            candidate[i, a, code] = True
    keep = gold >= 0
    names = np.asarray([*datasets, "(none)"], dtype=object)
    return {
        "instance_ids": np.asarray(instances, dtype=object)[keep],
        "agents": tuple(agents),
        "scores": scores[keep],
        "candidate": candidate[keep],
        "quality": quality[keep],
        "present": present[keep],
        "gold": gold[keep],
        "dataset": names[dataset][keep] if datasets else None,
        "invalid_labels": invalid,
        "n_without_gold": int((~keep).sum()),
    }


def one_per_pair(records):
    """Keep the first record of each (instance, agent) and the first gold of each instance
    (the first instance has one)."""
    seen, out, golds = set(), [], {}
    for r in records:
        key = (r["instance_id"].strip(), r["agent"].strip())
        if key not in seen:
            seen.add(key)
            out.append(dict(r))
    for r in out:
        if r["gold"] and r["gold"].strip():
            r["gold"] = golds.setdefault(r["instance_id"].strip(), r["gold"])
    if out[0]["instance_id"].strip() not in golds:
        out[0]["gold"] = "joy"
    return out


@settings(max_examples=80, deadline=None)
@given(records_strategy, layout_strategy, st.sampled_from([1, 3, predictions._BLOCK]))
def test_fast_parquet_reader_gives_the_contract(records, layout, block):
    records = one_per_pair(records)
    labels = LabelSet.parse(LABELS + ",disgust")
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(predictions, "_BLOCK", block)  # records per block of candidates
        path = write_parquet(records, Path(folder) / "p.parquet", **{**layout, "drop": ()})
        result = fast(path, labels=labels)
    expected = by_hand(records, labels)
    assert result.instance_ids.tolist() == expected["instance_ids"].tolist()
    assert result.agents == expected["agents"]
    for name in ("scores", "candidate", "quality", "present", "gold"):
        assert np.array_equal(getattr(result, name), expected[name], equal_nan=name == "quality"), name
    if expected["dataset"] is None:
        assert result.dataset is None
    else:
        assert result.dataset.tolist() == expected["dataset"].tolist()
    assert result.invalid_labels == expected["invalid_labels"]
    assert result.n_without_gold == expected["n_without_gold"]
    assert not result.line.any()  # Parquet rows are not lines


# -- particular cases -------------------------------------------------------------------------


def test_duplicate_pair_names_first_and_second_row(tmp_path):
    records = [
        rec("i0", "text", [("joy", 90)], gold="joy"),
        rec("i1", "text", [("anger", 80)], gold="anger"),
        rec(" i0", "text", [("anger", 70)]),
        rec("i0", "audio", [("joy", 60)]),
        rec("i1", "text ", [("joy", 10)]),
        rec("i0", "text", [("sadness", 5)]),
    ]
    path = write_parquet(records, tmp_path / "p.parquet", row_group_size=2)
    error = fast(path, labels=LABELS)
    assert error.startswith("InputError: ") and "instance 'i0' has two records for agent 'text'" in error
    assert f"{path} row 1 and {path} row 3" in error and error == exact(path, labels=LABELS)
    result = fast(path, labels=LABELS, skip_invalid=True)
    assert [s.where for s in result.skipped] == [f"{path} row {r}" for r in (3, 5, 6)]  # in file order
    assert result.scores[0, result.agents.index("text")].tolist() == [0.9, 0, 0, 0]  # the first (i0, text) is kept
    assert_same(result, exact(path, labels=LABELS, skip_invalid=True))


def test_categorical_columns_come_out_sorted(tmp_path):
    """Whatever the order of a dictionary column's values (and unused values in it),
    instances and agents come out sorted, as from plain strings."""
    records = [
        rec("b", "vision", [("joy", 40)], gold="joy", dataset="y"),
        rec("a", "text", [("anger", 50)], gold=" anger", dataset="x"),
        rec(" b", "text", [("joy", 60), ("joy", 70), ("fear", 1)], dataset="x"),
        rec("c", "audio", [], gold="sadness"),
    ]
    path = write_parquet(
        records,
        tmp_path / "p.parquet",
        categorical=("instance_id", "agent", "gold", "dataset"),
        extra=["zz", "unused", "a "],
        order=[5, 4, 3, 2, 1, 0],
    )
    assert pa.types.is_dictionary(pq.read_schema(path).field("instance_id").type)
    result = fast(path, labels=LABELS)
    assert result.instance_ids.tolist() == ["a", "b", "c"]
    assert result.agents == ("audio", "text", "vision")
    assert result.dataset.tolist() == ["x", "y", "(none)"]  # b is in x and y: the last name in sorted order
    assert result.scores[1, 1].tolist() == [0.6, 0, 0, 0]  # the first mention of joy; the repeat is invalid
    assert result.invalid_labels == {"audio": 0, "text": 2, "vision": 0}
    assert_same(result, exact(path, labels=LABELS))


def test_blank_gold_and_dataset_are_absent(tmp_path):
    records = [
        rec("i0", "text", [("joy", 90)], gold="  ", dataset=""),
        rec("i0", "audio", [("joy", 90)], gold="joy", dataset=" "),
        rec("i1", "text", [("joy", 90)], gold=""),
    ]
    path = write_parquet(records, tmp_path / "p.parquet")
    result = fast(path, labels=LABELS)
    assert result.instance_ids.tolist() == ["i0"] and result.n_without_gold == 1
    assert result.dataset is None
    assert_same(result, exact(path, labels=LABELS))


def test_blank_instance_id_goes_to_the_exact_reader(tmp_path):
    path = write_parquet([rec("i0", "text", [("joy", 9)], gold="joy"), rec("  ", "text", [])], tmp_path / "p.parquet")
    with pytest.raises(InputError, match="row 2"):
        load_predictions(path, labels=LABELS)
    result = load_predictions(path, labels=LABELS, skip_invalid=True)
    assert result.instance_ids.tolist() == ["i0"] and len(result.skipped) == 1


@pytest.mark.parametrize("block", [100, 1 << 16])
def test_many_records_with_repeated_labels(tmp_path, monkeypatch, block):
    """Thousands of records, grouped by instance then shuffled, labels repeated within
    records (the first mention wins, repeats count as invalid), ~2% invalid labels, gold
    on one agent."""
    monkeypatch.setattr(predictions, "_BLOCK", block)
    rng = np.random.default_rng(3)
    names = np.array(["joy", "anger", "sadness", "neutral", "confusion"])
    records = []
    for i in range(1500):
        for j, agent in enumerate(("text", "audio", "vision")):
            size = int(rng.integers(0, 6))
            labels = names[np.where(rng.random(size) < 0.02, 4, rng.integers(0, 4, size))]
            records.append(
                rec(
                    f"i{i}",
                    agent,
                    list(zip(labels.tolist(), rng.integers(0, 101, size).tolist(), strict=True)),
                    gold=str(names[i % 4]) if j == 0 else None,
                    quality=float(rng.integers(0, 101)),
                )
            )
    for layout in ({}, {"row_group_size": 64, "use_dictionary": False}):
        path = write_parquet(records, tmp_path / "grouped.parquet", **layout)
        assert_same(fast(path, labels=LABELS), exact(path, labels=LABELS))
    order = rng.permutation(len(records))
    path = write_parquet([records[i] for i in order], tmp_path / "shuffled.parquet", row_group_size=700)
    result = fast(path, labels=LABELS)
    assert_same(result, exact(path, labels=LABELS))
    expected = by_hand([records[i] for i in order], LabelSet.parse(LABELS))
    for name in ("scores", "candidate", "gold"):
        assert np.array_equal(getattr(result, name), expected[name]), name
    assert result.invalid_labels == expected["invalid_labels"]
    assert sorted(result.invalid_examples) == ["audio", "text", "vision"]
    for examples in result.invalid_examples.values():  # the repeats are the most frequent, then confusion
        assert "confusion" in examples
        assert all(e == "confusion" or e.endswith(" (repeated)") for e in examples)
