"""Per-dataset figures are the figures of that dataset alone (issue 18).

``by_dataset.<ds>`` and every other section with per-dataset groups (found by walking the
JSON for dataset names, so a section added later is covered too) must equal what
``diagnose`` reports for the records of that dataset alone, with the same labels and
options. Before, ``by_dataset.<ds>.agents.<agent>.invalid_labels`` was the whole file's
count, the same in every dataset.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from conftest import record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modsab.contract.labels import LabelSet
from modsab.core.diagnosis import diagnose

LABELS = ("joy", "anger", "sadness", "neutral")
DATASETS = ("ds-a", "ds-b", "ds-c")
AGENTS = ("text", "audio", "vision")
OPTIONS = dict(
    labels=",".join(LABELS), bootstrap=0, n_folds=2,
    causal=True, shapley=True, calibration=True, fusion_compare=True, tau_sweep=True,
)  # fmt: skip
DEMO = Path(__file__).resolve().parents[1] / "src" / "modsab" / "data" / "demo_predictions.jsonl"

#: Keys whose values may differ between a dataset's group and the run on that dataset alone,
#: with why. With ``bootstrap=0`` there are no intervals to differ, so there are none.
EXCLUDED: frozenset[str] = frozenset()

_CANDIDATE = st.tuples(st.sampled_from([*LABELS, "confusion", "Joy", "happy"]), st.sampled_from([0, 20, 50, 70, 95]))


@st.composite
def multi_dataset_records(draw):
    """Records of 2-3 datasets: invalid and repeated labels, abstentions, missing records and
    instances without gold. The first instance of each dataset has every agent (so a run on
    that dataset alone knows the same agents) and a gold label."""
    datasets = DATASETS[: draw(st.integers(2, 3))]
    records = []
    for d, dataset in enumerate(datasets):
        for i in range(draw(st.integers(1, 6))):
            first = i == 0
            gold = "joy" if first else draw(st.sampled_from([*LABELS, None]))
            for agent in AGENTS:
                if not first and draw(st.integers(0, 5)) == 0:
                    continue  # a missing record
                candidates = draw(st.lists(_CANDIDATE, max_size=4))
                records.append(
                    record(
                        f"{d}-{i}",
                        agent,
                        candidates,
                        gold=gold if agent == "text" or draw(st.booleans()) else None,
                        quality=draw(st.sampled_from([0, 55, 100])),
                        dataset=dataset,
                    )
                )
    return records


def leaves(node, path=()):
    """``{path: value}`` of every leaf of a JSON tree (lists by index)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(leaves(value, (*path, key)))
        return out
    if isinstance(node, list):
        out = {}
        for index, value in enumerate(node):
            out.update(leaves(value, (*path, index)))
        return out if node else {path: []}
    return {path: node}


def group_paths(tree, names) -> set[tuple]:
    """Paths of the subtrees keyed by a dataset name, wherever they are."""
    found = set()

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in names:
                    found.add((*path, key))
                walk(value, (*path, key))

    walk(tree, ())
    return found


def diagnose_records(records, folder: Path, name: str, **options) -> dict:
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return diagnose(path, **{**OPTIONS, **options}).to_dict()


def assert_groups_are_their_datasets(records, **options):
    datasets = sorted({r["dataset"] for r in records})
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        full = diagnose_records(records, folder, "all", **options)
        paths = group_paths(full, set(datasets))
        sections = {path[:-1] for path in paths}
        assert {("by_dataset",), ("calibration", "groups"), ("shapley", "groups")} <= sections, sections
        for dataset in datasets:
            alone = diagnose_records([r for r in records if r["dataset"] == dataset], folder, dataset, **options)
            alone_leaves = leaves(alone)
            for path in sorted((p for p in paths if p[-1] == dataset), key=str):
                group = leaves(_get(full, path))
                assert group, path
                for sub, value in group.items():
                    if set(sub) & EXCLUDED:
                        continue
                    where = (*path, *sub)
                    assert where in alone_leaves, f"{where} is missing from the run on {dataset} alone"
                    assert alone_leaves[where] == value, (where, value, alone_leaves[where])
                if path[0] == "by_dataset":  # the group is also the top level of the run on its records
                    for sub, value in group.items():
                        if not set(sub) & EXCLUDED:
                            assert alone_leaves[sub] == value, (sub, value, alone_leaves[sub])


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(multi_dataset_records())
def test_every_per_dataset_figure_is_the_figure_of_that_dataset_alone(records):
    assert_groups_are_their_datasets(records)


def test_demo_per_dataset_figures():
    records = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines()]
    assert_groups_are_their_datasets(records, labels="meld", baseline="tav", n_folds=5)


def hand_count(records, labels: LabelSet) -> dict[tuple[str, str], int]:
    """Invalid candidate labels per (dataset, agent), counted record by record: outside the
    label set, or a label the same answer named before."""
    counts: dict[tuple[str, str], int] = {}
    for r in records:
        named, bad = set(), 0
        for candidate in r.get("candidates") or []:
            code = labels.code(candidate["label"])
            bad += code < 0 or code in named
            named.add(code)
        key = (r["dataset"], r["agent"])
        counts[key] = counts.get(key, 0) + bad
    return counts


def test_demo_invalid_labels_split_by_dataset():
    records = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines()]
    by_hand = hand_count(records, LabelSet.parse("meld"))
    result = diagnose(DEMO, labels="meld", bootstrap=0).to_dict()
    assert result["n_without_gold"] == 0  # so every record's invalid labels are in the tables
    for dataset, summary in result["by_dataset"].items():
        for agent, entry in summary["agents"].items():
            assert entry["invalid_labels"] == by_hand[(dataset, agent)], (dataset, agent)
    text = {dataset: summary["agents"]["text"]["invalid_labels"] for dataset, summary in result["by_dataset"].items()}
    assert text == {"meld-like": 9, "iemocap-like": 4}  # the split; 13 in all
    assert result["agents"]["text"]["invalid_labels"] == result["invalid_labels"]["text"] == 13
    for agent in result["agents"]:
        split = sum(summary["agents"][agent]["invalid_labels"] for summary in result["by_dataset"].values())
        assert split == result["agents"][agent]["invalid_labels"] == result["invalid_labels"][agent]


def test_invalid_label_in_one_dataset_is_not_reported_for_the_other(write_jsonl):
    records = [
        record("a1", "text", [("joy", 80), ("confusion", 30)], gold="joy", dataset="a"),
        record("b1", "text", [("anger", 80)], gold="anger", dataset="b"),
    ]
    result = diagnose(write_jsonl(records), labels=",".join(LABELS), bootstrap=0).to_dict()
    assert result["by_dataset"]["a"]["agents"]["text"]["invalid_labels"] == 1
    assert result["by_dataset"]["b"]["agents"]["text"]["invalid_labels"] == 0
    assert result["agents"]["text"]["invalid_labels"] == 1


def test_invalid_labels_of_instances_without_gold(write_jsonl):
    """The agents' tables count the instances they hold; the top-level ``invalid_labels``
    counts every record read, the instances left out for want of gold included."""
    records = [
        record("a1", "text", [("joy", 80), ("confusion", 30)], gold="joy", dataset="a"),
        record("a2", "text", [("worry", 80), ("joy", 10)], dataset="a"),  # no gold: left out
    ]
    result = diagnose(write_jsonl(records), labels=",".join(LABELS), bootstrap=0).to_dict()
    assert result["n_without_gold"] == 1
    assert result["agents"]["text"]["invalid_labels"] == result["by_dataset"]["a"]["agents"]["text"]["invalid_labels"]
    assert result["agents"]["text"]["invalid_labels"] == 1
    assert result["invalid_labels"] == {"text": 2}
    assert result["invalid_label_examples"] == {"text": ["confusion", "worry"]}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_per_dataset_invalid_labels_in_other_formats(tmp_path, fmt):
    import pandas as pd

    records = [
        record("a1", "text", [("joy", 80), ("confusion", 30), ("joy", 5)], gold="joy", dataset="a"),
        record("b1", "text", [("anger", 80), ("worry", 3)], gold="anger", dataset="b"),
        record("b2", "text", [("fear", 80)], gold="anger", dataset="b"),
    ]
    frame = pd.DataFrame(records)
    path = tmp_path / f"p.{fmt}"
    if fmt == "csv":
        frame["candidates"] = [json.dumps(c) for c in frame["candidates"]]
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    result = diagnose(path, labels=",".join(LABELS), bootstrap=0).to_dict()
    assert {d: s["agents"]["text"]["invalid_labels"] for d, s in result["by_dataset"].items()} == {"a": 2, "b": 2}
