"""Results do not depend on the order the lines arrive in (issue 13).

Network agents finish in any order, so ``predictions.jsonl`` lists records in completion
order. Agents (and pairs of agents) get one order (``agents_order``, else the order a run
recorded, else sorted names) and instances come sorted by id, so ``diagnose`` gives
byte-identical JSON for every permutation of the lines, in every format, with intervals
and every diagnostic on.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modsab.cli import main
from modsab.contract.errors import InputError
from modsab.contract.predictions import PredictionSet, load_predictions
from modsab.core.diagnosis import diagnose

LABELS = ("joy", "anger", "sadness", "neutral")
AGENTS = ("text", "audio", "vision", "tav")
EVERYTHING = dict(
    labels=",".join(LABELS), bootstrap=25, seed=3, n_folds=2,
    causal=True, shapley=True, calibration=True, fusion_compare=True, tau_sweep=True,
)  # fmt: skip
DEMO = Path(__file__).resolve().parents[1] / "src" / "modsab" / "data" / "demo_predictions.jsonl"

_CANDIDATE = st.tuples(st.sampled_from([*LABELS, "confusion", "Joy"]), st.sampled_from([0, 10, 35, 50, 70, 90, 100]))


@st.composite
def prediction_files(draw):
    """Records of several agents and two datasets: invalid and repeated labels, abstentions,
    missing records, instances without gold, and ties. Every record carries a quality (the
    fusion comparison names the file:line of an answer without one, and lines move)."""
    agents = draw(st.lists(st.sampled_from(AGENTS), min_size=2, max_size=4, unique=True))
    n = draw(st.integers(4, 14))
    records = []
    for i in range(n):
        gold = draw(st.sampled_from([*LABELS, None])) if i else "joy"
        dataset = draw(st.sampled_from(["ds-a", "ds-b"]))
        for agent in agents:
            if i and draw(st.integers(0, 9)) == 0:
                continue  # a missing record
            candidates = draw(st.lists(_CANDIDATE, max_size=4))
            carries_gold = gold is not None and (agent == agents[0] or draw(st.booleans()))
            quality = draw(st.sampled_from([0, 40, 85, 100]))
            records.append(
                record(f"u{i}", agent, candidates, gold=gold if carries_gold else None, quality=quality, dataset=dataset)
            )
    return records


def write(records, folder: Path, fmt: str) -> Path:
    """``records`` as ``p.<fmt>`` in ``folder`` (the same path for every order, so the
    ``source`` key is the same too)."""
    path = folder / f"p.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif fmt == "csv":
        import pandas as pd

        frame = pd.DataFrame(
            {
                "instance_id": [r["instance_id"] for r in records],
                "agent": [r["agent"] for r in records],
                "gold": [r.get("gold") for r in records],
                "candidates": [json.dumps(r["candidates"]) for r in records],
                "quality": [r["quality"] for r in records],
                "dataset": [r["dataset"] for r in records],
            }
        )
        frame.to_csv(path, index=False)
    else:
        candidates = pa.list_(pa.struct([("label", pa.string()), ("confidence", pa.float64())]))
        schema = pa.schema(
            [
                ("instance_id", pa.string()),
                ("agent", pa.string()),
                ("gold", pa.string()),
                ("candidates", candidates),
                ("quality", pa.float64()),
                ("dataset", pa.string()),
            ]
        )
        rows = [{name: r.get(name) for name in schema.names} for r in records]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=7)
    return path


def diagnosis_json(path: Path, **options) -> str:
    try:
        return json.dumps(diagnose(path, **{**EVERYTHING, **options}).to_dict(), sort_keys=False)
    except InputError as error:  # e.g. no instance with gold: the same error for every order
        return f"InputError: {error}"


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prediction_files(), st.data())
def test_diagnose_json_is_byte_identical_for_any_order_of_the_lines(records, data):
    shuffled = data.draw(st.permutations(records), label="shuffled")
    outputs = {}
    with tempfile.TemporaryDirectory() as folder:
        for fmt in ("jsonl", "csv", "parquet"):
            original = diagnosis_json(write(records, Path(folder), fmt))
            again = diagnosis_json(write(shuffled, Path(folder), fmt))
            assert again == original, fmt
            outputs[fmt] = original
    # the formats agree too, but for the file they name
    for fmt in ("csv", "parquet"):
        assert outputs[fmt].replace(f"p.{fmt}", "p.jsonl") == outputs["jsonl"]


def test_demo_predictions_in_any_order(tmp_path):
    """The bundled demo: reordering its lines changed 37 of 37 intervals before."""
    lines = DEMO.read_text(encoding="utf-8").splitlines()
    path = tmp_path / "predictions.jsonl"
    outputs = set()
    for seed in (None, 0, 1):
        order = lines if seed is None else [lines[i] for i in np.random.default_rng(seed).permutation(len(lines))]
        path.write_text("\n".join(order) + "\n", encoding="utf-8")
        outputs.add(diagnosis_json(path, labels="meld", bootstrap=200, n_folds=5))
    assert len(outputs) == 1
    result = json.loads(outputs.pop())
    assert list(result["agents"]) == ["audio", "tav", "text", "vision"]  # sorted names
    assert list(result["causal"]["pairs"])[:3] == ["audio+tav", "audio+text", "audio+vision"]


def test_instances_come_sorted_by_id_and_agents_by_name(write_jsonl):
    records = [
        record("b", "vision", [("joy", 40)], gold="joy"),
        record("a", "text", [("anger", 50)], gold="anger"),
        record("c", "audio", [("joy", 60)], gold="joy"),
        record("a", "audio", [("joy", 70)]),
    ]
    pset = load_predictions(write_jsonl(records), labels=",".join(LABELS))
    assert pset.instance_ids.tolist() == ["a", "b", "c"]
    assert pset.agents == ("audio", "text", "vision")
    assert pset.scores[0, 0, 0] == 0.7 and pset.scores[0, 1, 1] == 0.5


# -- an explicit order -----------------------------------------------------------------------------


@pytest.fixture
def two_agents(write_jsonl):
    return write_jsonl(
        [
            record("i1", "text", [("joy", 80)], gold="joy", quality=50),
            record("i1", "audio", [("anger", 90)], quality=50),
            record("i2", "audio", [("joy", 60)], gold="joy", quality=50),
            record("i2", "text", [("sadness", 75)], quality=50),
        ]
    )


@pytest.mark.parametrize("order", [["text", "audio"], ("text", "audio"), "text,audio", " text , audio "])
def test_agents_order_as_list_or_comma_string(two_agents, order):
    pset = load_predictions(two_agents, labels=",".join(LABELS), agents_order=order)
    assert pset.agents == ("text", "audio")
    result = diagnose(two_agents, labels=",".join(LABELS), agents_order=order, bootstrap=0, causal=True).to_dict()
    assert list(result["agents"]) == ["text", "audio"] and result["fused_agents"] == ["text", "audio"]
    assert list(result["causal"]["pairs"]) == ["text+audio"]
    assert list(result["invalid_labels"]) == ["text", "audio"]


def test_agents_order_gives_the_same_figures_in_another_order(two_agents):
    sorted_ = diagnose(two_agents, labels=",".join(LABELS), bootstrap=0).to_dict()
    given = diagnose(two_agents, labels=",".join(LABELS), bootstrap=0, agents_order="text,audio").to_dict()
    assert given["agents"] == sorted_["agents"] and given["fusion_topk"] == sorted_["fusion_topk"]


def test_agents_order_on_a_prediction_set(two_agents):
    pset = load_predictions(two_agents, labels=",".join(LABELS))
    moved = pset.with_agent_order(["text", "audio"])
    assert moved.agents == ("text", "audio")
    assert np.array_equal(moved.scores, pset.scores[:, ::-1]) and np.array_equal(moved.invalid, pset.invalid[:, ::-1])
    result = diagnose(pset, agents_order=["text", "audio"], bootstrap=0).to_dict()
    assert list(result["agents"]) == ["text", "audio"]
    arrays = PredictionSet.from_arrays(pset.scores, pset.gold, labels=LABELS, agents=pset.agents)
    assert diagnose(arrays, agents_order="text,audio", bootstrap=0).to_dict()["fused_agents"] == ["text", "audio"]


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ("text", "leaves out 'audio'"),
        ("text,audio,vision", "names 'vision', not an agent"),
        ("text,video", "names 'video', not an agent of the predictions and leaves out 'audio'"),
        ("text,audio,text", "names 'text' twice"),
    ],
)
def test_agents_order_must_name_each_agent_once(two_agents, order, message):
    with pytest.raises(InputError, match=message) as info:
        load_predictions(two_agents, labels=",".join(LABELS), agents_order=order)
    if "twice" not in message:
        assert "the agents are audio, text" in str(info.value)
    with pytest.raises(InputError, match=message):
        load_predictions(two_agents, labels=",".join(LABELS)).with_agent_order(order)


@pytest.mark.parametrize("command", ["diagnose", "report"])
def test_cli_agents_order(two_agents, tmp_path, capsys, command):
    out = ["--out", str(tmp_path / "r.html")] if command == "report" else ["--json"]
    base = [command, str(two_agents), "--labels", ",".join(LABELS), "--bootstrap", "0", *out]
    main([*base, "--agents-order", "text,audio"])
    if command == "diagnose":
        assert list(json.loads(capsys.readouterr().out)["agents"]) == ["text", "audio"]
    else:
        assert (tmp_path / "r.html").is_file()
    with pytest.raises(SystemExit) as info:
        main([*base, "--agents-order", "text,vision"])
    err = " ".join(capsys.readouterr().err.split())
    assert info.value.code == 2 and "Traceback" not in err and "names 'vision'" in err


def test_run_directory_order_is_read_from_run_json(tmp_path, two_agents):
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").write_bytes(two_agents.read_bytes())
    assert load_predictions(run, labels=",".join(LABELS)).agents == ("audio", "text")
    (run / "run.json").write_text(json.dumps({"agents": ["text", "audio", "vision"], "labels": list(LABELS)}))
    pset = load_predictions(run)
    assert pset.agents == ("text", "audio")  # the recorded order; an agent without records is not invented
    assert tuple(pset.labels) == LABELS
    (run / "run.json").write_text(json.dumps({"agents": ["text"]}))
    assert load_predictions(run, labels=",".join(LABELS)).agents == ("text", "audio")  # unlisted ones follow, sorted
    assert load_predictions(run, labels=",".join(LABELS), agents_order="audio,text").agents == ("audio", "text")


def test_skipped_records_are_listed_in_file_order(write_jsonl):
    records = [
        record("i2", "text", [("joy", 80)], gold="joy"),
        record("i1", "text", [("joy", 80)], gold="fear"),  # unknown gold
        "not json",
        record("i2", "text", [("joy", 10)]),  # duplicate
        record("i0", "audio", [("joy", 10)], gold="joy"),
        {"instance_id": "i3"},
    ]
    pset = load_predictions(write_jsonl(records), labels=",".join(LABELS), skip_invalid=True)
    assert [s.line for s in pset.skipped] == [2, 3, 4, 6]
