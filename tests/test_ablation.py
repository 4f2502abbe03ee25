"""The ablation audit (issue 14, part 2): the ``condition`` contract, the loader's split of
model records from agent records, and the ``ablation`` section, each figure computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import record
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from modsab.cli import app, main
from modsab.contract import predictions
from modsab.contract.ablation import AblationSet, parse_condition
from modsab.contract.errors import InputError
from modsab.contract.predictions import PredictionSet, load_predictions
from modsab.core.diagnosis import diagnose
from modsab.registry import diagnostics

LABELS = "a,b,c"


def cli_error(args, capsys) -> str:
    """``modsab <args>`` as the console script runs it: exit code 2 and the message, no traceback."""
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    return err


def answer(instance, agent, top, *, condition=None, gold=None, confidence=80, **extra):
    """A record whose top label is ``top`` (None: no candidate, an abstention)."""
    candidates = [] if top is None else [(top, confidence)]
    if condition is not None:
        extra["condition"] = condition
    return record(instance, agent, candidates, gold=gold, **extra)


# -- the contract -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("full", "full"),
        (" FULL ", "full"),
        ("without:audio", "without:audio"),
        ("Without: audio ", "without:audio"),
        ("only:text", "only:text"),
        ("shuffled:Vision", "shuffled:Vision"),  # the stream keeps its case, as agent names do
    ],
)
def test_conditions_are_canonical(raw, canonical):
    assert parse_condition(raw) == canonical


@pytest.mark.parametrize("raw", ["without", "without:", "removed:audio", "audio", ":audio", 3, True])
def test_a_bad_condition_names_file_line_and_field(raw, write_jsonl, capsys):
    path = write_jsonl(
        [answer("1", "m", "a", gold="a"), answer("1", "m", "b", condition=raw), answer("2", "t", "a", gold="a")]
    )
    with pytest.raises(InputError) as error:
        load_predictions(path, labels=LABELS)
    assert error.value.path == str(path) and error.value.line == 2
    assert "condition" in error.value.message
    assert "condition" in cli_error(["diagnose", str(path), "--labels", LABELS], capsys)


def test_records_without_conditions_load_as_before(write_jsonl):
    """An explicit "full" everywhere is the same as no condition: plain agents, no ablation set."""
    plain = [answer("1", "t", "a", gold="a"), answer("2", "t", "b", gold="b"), answer("1", "v", "b")]
    explicit = [dict(r, condition="full") for r in plain]
    one = diagnose(write_jsonl(plain, "plain.jsonl"), labels=LABELS, bootstrap=20)
    two = diagnose(write_jsonl(explicit, "explicit.jsonl"), labels=LABELS, bootstrap=20)
    assert one.pset.ablation is None and two.pset.ablation is None
    first, second = one.to_dict(), two.to_dict()
    first.pop("source"), second.pop("source")
    assert first == second and "ablation" not in first


STUDY = [
    # agents (fused as today) ...
    answer("1", "text", "a", gold="a"),
    answer("2", "text", "b", gold="b"),
    answer("1", "audio", "b"),
    answer("2", "audio", "b"),
    # ... and one model under conditions: "full" absent means full
    answer("1", "e2e", "b"),
    answer("1", "e2e", "a", condition="without:audio"),
    answer("2", "e2e", "b", condition="full"),
    answer("2", "e2e", "b", condition="without:audio"),
    answer("3", "e2e", "c", gold="c"),  # an instance only the model has
    answer("3", "e2e", "c", condition="without:audio"),
]


def test_model_records_are_split_off_and_not_fused(write_jsonl):
    pset = load_predictions(write_jsonl(STUDY), labels=LABELS)
    assert pset.agents == ("audio", "text")  # sorted: the canonical order without a recorded one
    assert pset.instance_ids.tolist() == ["1", "2"]  # the agents' instances
    ab = pset.ablation
    assert ab.columns == (("e2e", "full"), ("e2e", "without:audio"))
    assert ab.instance_ids.tolist() == ["1", "2", "3"]
    assert ab.gold.tolist() == [0, 1, 2]  # gold from any record of the instance, agents' included
    assert ab.present.all()
    d = diagnose(pset, bootstrap=0)
    assert d.fused_agents == ("audio", "text")
    with pytest.raises(InputError, match="'e2e' is a model"):
        diagnose(pset, fuse=["text", "e2e"])


def test_model_records_are_checked_per_condition(write_jsonl):
    """One record per (instance, model, condition): the same condition twice is a duplicate
    (both lines named), different conditions are not; gold must agree across all of them."""
    twice = [*STUDY, answer("1", "e2e", "a", condition=" without:audio")]
    with pytest.raises(InputError) as error:
        load_predictions(write_jsonl(twice), labels=LABELS)
    assert "two records" in error.value.message and "e2e [without:audio]" in error.value.message
    assert ":6" in str(error.value) and f":{len(twice)}" in str(error.value)
    skipped = load_predictions(write_jsonl(twice), labels=LABELS, skip_invalid=True)
    assert [s.reason for s in skipped.skipped] == ["duplicate (instance, agent)"]
    conflict = [*STUDY[:-1], answer("3", "e2e", "c", condition="without:audio", gold="a")]
    with pytest.raises(InputError, match="disagree on gold"):
        load_predictions(write_jsonl(conflict), labels=LABELS)


def test_invalid_labels_of_a_model_are_counted_for_the_model(write_jsonl):
    rows = [*STUDY, answer("4", "e2e", "confusion", gold="a"), answer("4", "e2e", "zzz", condition="without:audio")]
    pset = load_predictions(write_jsonl(rows), labels=LABELS)
    assert pset.invalid_labels == {"text": 0, "audio": 0}
    assert pset.ablation.invalid_labels == {"e2e": 2}
    assert set(pset.ablation.invalid_examples["e2e"]) == {"confusion", "zzz"}
    section = diagnose(pset, bootstrap=0).to_dict()["ablation"]
    assert section["models"]["e2e"]["invalid_labels"] == 2
    assert section["models"]["e2e"]["abstained"] == 1  # instance 4: no valid candidate
    with pytest.raises(InputError, match="zzz|confusion"):
        load_predictions(write_jsonl(rows), labels=LABELS, strict=True)


def _exact(path, **options):
    def give_up(*args, **kwargs):
        raise predictions._GiveUp

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predictions, "_fast", give_up)
        return load_predictions(path, **options)


def _fast(path, **options):
    used = []
    real = predictions._fast

    def spy(*args, **kwargs):
        used.append(real(*args, **kwargs))
        return used[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predictions, "_fast", spy)
        out = load_predictions(path, **options)
    assert used, "the fast reader gave up"
    return out


def _same(x: np.ndarray | None, y: np.ndarray | None) -> bool:
    if x is None or y is None:
        return x is y
    if x.dtype == object:
        return x.tolist() == y.tolist()
    return x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")


def assert_same_sets(a: PredictionSet, b: PredictionSet) -> None:
    for name in ("instance_ids", "scores", "candidate", "quality", "gold", "present", "dataset", "line"):
        assert _same(getattr(a, name), getattr(b, name)), name
    assert (a.agents, a.invalid_labels, a.invalid_examples) == (b.agents, b.invalid_labels, b.invalid_examples)
    assert (a.ablation is None) == (b.ablation is None)
    if a.ablation is not None:
        for name in ("instance_ids", "gold", "scores", "candidate", "present", "dataset", "line"):
            assert _same(getattr(a.ablation, name), getattr(b.ablation, name)), f"ablation.{name}"
        assert a.ablation.columns == b.ablation.columns
        assert a.ablation.invalid_labels == b.ablation.invalid_labels


conditioned_records = st.lists(
    st.builds(
        answer,
        st.sampled_from(["1", "2", "3", "4"]),
        st.sampled_from(["text", "audio", "e2e", "late"]),
        st.sampled_from(["a", "b", "c", "zz", None]),
        condition=st.sampled_from([None, "full", "without:audio", " Without:audio", "only:text", "shuffled:text", ""]),
        gold=st.sampled_from([None, "a"]),
        confidence=st.sampled_from([0, 50, 80]),
        dataset=st.sampled_from([None, "d1", "d2"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(rows=conditioned_records, fmt=st.sampled_from(["jsonl", "csv", "parquet"]))
def test_the_fast_reader_equals_the_exact_reader_with_conditions(rows, fmt, tmp_path_factory):
    keyed = {(r["instance_id"], r["agent"], parse_condition(r.get("condition")) or "full"): r for r in rows}
    rows = list(keyed.values())  # one record per (instance, agent, condition)
    if not any(r.get("gold") for r in rows):
        rows[0]["gold"] = "a"
    path = tmp_path_factory.mktemp("fmt") / f"p.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        table = pa.table(
            {
                "instance_id": [r["instance_id"] for r in rows],
                "agent": [r["agent"] for r in rows],
                "gold": [r.get("gold") for r in rows],
                "dataset": [r.get("dataset") for r in rows],
                "condition": [r.get("condition") for r in rows],
                "candidates": [json.dumps(r["candidates"]) for r in rows],
            }
        )
        if fmt == "csv":
            table.to_pandas().to_csv(path, index=False)
        else:
            pq.write_table(table, path)
    try:
        exact = _exact(path, labels=LABELS)
    except InputError as error:
        with pytest.raises(InputError) as again:
            load_predictions(path, labels=LABELS)
        assert str(again.value) == str(error)
        return
    assert_same_sets(_fast(path, labels=LABELS), exact)


# -- the audit, by hand ---------------------------------------------------------------------------

# gold a on every instance; the model's full and without:audio answers ("-": abstains, "x": no record)
#   instance  full  without:audio   full right?  without right?   role of audio
#   1         b     a               no           yes              causal saboteur
#   2         a     b               yes          no               causal contributor
#   3         a     a               yes          yes              (nothing; no flip)
#   4         b     c               no           no               (nothing; a flip)
#   5         b     -               (the pair is not valid: left out)
#   6         -     a               (the full answer is not valid: left out, and abstained)
#   7         a     x               (no ablated record: left out)
#   8         b     a(tie b)        no           yes: the tie goes to the earlier label, a
TABLE = [
    ("1", "b", "a"),
    ("2", "a", "b"),
    ("3", "a", "a"),
    ("4", "b", "c"),
    ("5", "b", None),
    ("6", None, "a"),
    ("7", "a", "x"),
    ("8", "b", "tie"),
]


def _table_records():
    rows = []
    for instance, full, without in TABLE:
        rows.append(answer(instance, "e2e", full, gold="a"))
        if without == "tie":
            rows.append(record(instance, "e2e", [("b", 60), ("a", 60)], condition="without:audio"))
        elif without != "x":
            rows.append(answer(instance, "e2e", without, condition="without:audio"))
    return rows


def test_the_ablation_figures_by_hand(write_jsonl):
    d = diagnose(write_jsonl(_table_records()), labels=LABELS, bootstrap=200, seed=1)
    assert d.fused_agents == () and d.pset.agents == ()  # model records only
    section = d.to_dict()["ablation"]
    model = section["models"]["e2e"]
    assert (model["n"], model["abstained"], model["missing"], model["invalid_labels"]) == (7, 1, 0, 0)
    assert model["top1_full"] == pytest.approx(3 / 7)  # instances 2, 3, 7 of the 7 valid full answers
    audio = model["streams"]["audio"]
    # pairs: 1, 2, 3, 4, 8 (n = 5); full right on 2, 3; without right on 1, 3, 8
    assert audio["n"] == 5
    assert audio["top1_full"] == pytest.approx(2 / 5)
    assert audio["top1_without"] == pytest.approx(3 / 5)
    assert audio["top1_drop"] == pytest.approx(-1 / 5)
    assert audio["causal_sabotage_rate"] == pytest.approx(2 / 5)  # 1 and 8
    assert audio["causal_contribution_rate"] == pytest.approx(1 / 5)  # 2
    assert audio["flip_rate"] == pytest.approx(4 / 5)  # all but 3
    assert audio["conditions"] == ["without:audio"]
    ci = section["ci"]
    for key in ("top1_full", "top1_without", "top1_drop", "causal_sabotage_rate", "causal_contribution_rate"):
        low, high = ci[f"models.e2e.streams.audio.{key}"]
        assert low <= audio[key] <= high
    assert ci["models.e2e.streams.audio.flip_rate"][1] <= 1.0
    assert audio["ci"] == {k: ci[f"models.e2e.streams.audio.{k}"] for k in audio["ci"]}  # beside the figures too
    assert set(audio["ci"]) == {
        "top1_full",
        "top1_without",
        "top1_drop",
        *("causal_sabotage_rate", "causal_contribution_rate", "flip_rate"),
    }
    assert model["ci"] == {"top1_full": ci["models.e2e.top1_full"]} and audio["perceptual_score"] is None
    assert diagnostics.get("ablation").reference(d) is not None
    table = d.instances().set_index("instance_id")
    assert table["e2e.without:audio.causal"].to_dict() == {
        "1": "saboteur",
        "2": "contributor",
        "3": "",
        "4": "",
        "5": "",
        "6": "",
        "7": "",
        "8": "saboteur",
    }
    assert table.loc["8", "e2e.without:audio.top"] == "a" and pd.isna(table.loc["7", "e2e.without:audio.top"])


def test_the_paired_bootstrap_resamples_full_and_ablated_together(write_jsonl):
    """When the model with and without the stream are always both right or both wrong, every
    resample has a drop of exactly 0: the two are drawn from the same instances."""
    rows = []
    for i in range(40):
        top = "a" if i % 3 else "b"
        rows += [answer(str(i), "e2e", top, gold="a"), answer(str(i), "e2e", top, condition="without:text")]
    section = diagnose(write_jsonl(rows), labels=LABELS, bootstrap=300).to_dict()["ablation"]
    assert section["ci"]["models.e2e.streams.text.top1_drop"] == [0.0, 0.0]
    low, high = section["ci"]["models.e2e.streams.text.top1_without"]
    assert low < high  # the top-1 itself does vary across resamples
    again = diagnose(write_jsonl(rows, "again.jsonl"), labels=LABELS, bootstrap=300).to_dict()["ablation"]
    assert again["ci"] == section["ci"]  # seeded


def test_a_model_that_ignores_a_stream_has_every_rate_zero(write_jsonl):
    rows = []
    for i, (gold, top) in enumerate([("a", "a"), ("b", "c"), ("c", "c"), ("a", "b"), ("b", "b")]):
        rows += [
            answer(str(i), "e2e", top, gold=gold, confidence=70),
            answer(str(i), "e2e", top, condition="without:vision", confidence=55),  # the same top label
            answer(str(i), "e2e", top, condition="shuffled:vision", confidence=70),
        ]
    audio = diagnose(write_jsonl(rows), labels=LABELS, bootstrap=100).to_dict()["ablation"]["models"]["e2e"]
    vision = audio["streams"]["vision"]
    assert vision["n"] == 5 and vision["top1_without"] == vision["top1_full"] == pytest.approx(3 / 5)
    for key in ("causal_sabotage_rate", "causal_contribution_rate", "flip_rate", "top1_drop"):
        assert vision[key] == 0
    shuffled = vision["shuffled"]
    assert shuffled["perceptual_score"] == 0 and shuffled["flip_rate"] == 0 and shuffled["n"] == 5
    assert vision["perceptual_score"] == 0 and vision["ci"]["perceptual_score"] == [0.0, 0.0]


def test_missing_conditions_give_empty_figures_not_errors(write_jsonl):
    """A stream measured only by shuffling has no removal figures (n 0, nulls) but its perceptual
    score; a model without any full record has nothing paired."""
    rows = [
        answer("1", "e2e", "a", gold="a"),
        answer("1", "e2e", "b", condition="shuffled:audio"),
        answer("2", "e2e", "a", gold="b"),
        answer("2", "e2e", "b", condition="shuffled:audio"),
        answer("1", "nofull", "a", condition="without:audio"),
        answer("2", "nofull", "b", condition="only:text"),
    ]
    section = diagnose(write_jsonl(rows), labels=LABELS, bootstrap=50).to_dict()["ablation"]
    audio = section["models"]["e2e"]["streams"]["audio"]
    assert audio["n"] == 0 and audio["causal_sabotage_rate"] is None and audio["top1_drop"] is None
    assert audio["shuffled"]["perceptual_score"] == pytest.approx(0.5 - 0.5)
    assert audio["shuffled"]["causal_sabotage_rate"] == pytest.approx(0.5)  # instance 2
    assert audio["shuffled"]["causal_contribution_rate"] == pytest.approx(0.5)  # instance 1
    nofull = section["models"]["nofull"]
    assert (nofull["n"], nofull["missing"], nofull["top1_full"]) == (0, 2, None)
    assert nofull["conditions"] == ["full", "without:audio", "only:text"]
    assert nofull["streams"]["audio"]["n"] == 0 and nofull["streams"]["text"]["only"]["n"] == 0
    json.dumps(section, allow_nan=False)


def test_per_dataset_groups_equal_the_dataset_alone(write_jsonl):
    rows = []
    rng = np.random.default_rng(3)
    for i in range(60):
        ds = "d1" if i % 3 else "d2"
        gold, full, without = (str(rng.choice(["a", "b", "c"])) for _ in range(3))
        rows += [
            answer(str(i), "e2e", full, gold=gold, dataset=ds),
            answer(str(i), "e2e", without, condition="without:audio", dataset=ds),
        ]
    whole = diagnose(write_jsonl(rows), labels=LABELS, bootstrap=0).to_dict()["ablation"]
    for ds in ("d1", "d2"):
        alone = diagnose(
            write_jsonl([r for r in rows if r["dataset"] == ds], f"{ds}.jsonl"), labels=LABELS, bootstrap=0
        ).to_dict()["ablation"]
        group = whole["by_dataset"][ds]
        assert group["n_instances"] == alone["n_instances"]
        expected = alone["models"]
        for model in expected.values():
            model.pop("invalid_labels")
        assert group["models"] == expected


def test_agents_and_a_model_in_one_study(write_jsonl):
    """The agents are fused and audited as if the model were not there; the ablation section
    puts each agent's leave-one-out causal rates beside the stream it reads."""
    rows = [r for r in STUDY]
    mixed = diagnose(write_jsonl(rows), labels=LABELS, bootstrap=50, causal=True)
    agents_only = diagnose(
        write_jsonl([r for r in rows if r["agent"] != "e2e"], "agents.jsonl"), labels=LABELS, bootstrap=50, causal=True
    )
    out, alone = mixed.to_dict(), agents_only.to_dict()
    section = out.pop("ablation")
    out.pop("source"), alone.pop("source")
    assert out == alone  # the foundation and causal sections do not see the model
    fusion = section["fusion"]["agents"]
    assert fusion["audio"]["stream"] == "audio" and fusion["text"]["stream"] is None  # e2e only names audio
    # instance 1: text a (gold a), audio b: tie a/b at 0.8 -> a (earlier): right; without text: b, wrong
    assert fusion["text"]["causal_contribution_rate"] == pytest.approx(1 / 2)
    assert fusion["audio"]["causal_sabotage_rate"] == 0  # instance 2 right with and without audio
    assert out["causal"]["agents"]["text"]["causal_contribution_rate"] == fusion["text"]["causal_contribution_rate"]
    e2e = section["models"]["e2e"]["streams"]["audio"]
    assert (e2e["n"], e2e["causal_sabotage_rate"]) == (3, pytest.approx(1 / 3))  # instance 1
    columns = mixed.instances().columns
    assert {"text.causal", "e2e.full.top", "e2e.without:audio.causal"} <= set(columns)


def test_an_agent_is_matched_to_the_stream_it_reads():
    from modsab.diagnostics.ablation import agent_stream

    streams = ["audio", "text", "audio_hd"]
    assert agent_stream("audio", streams) == "audio"
    assert agent_stream("audio_probe", streams) == "audio"
    assert agent_stream("probe-text", streams) == "text"
    assert agent_stream("audio_hd_probe", streams) == "audio_hd"  # the longest match
    assert agent_stream("vision", streams) is None
    assert agent_stream("textual", streams) is None


def test_model_only_files_diagnose_with_an_empty_foundation(write_jsonl, tmp_path, capsys):
    path = write_jsonl(_table_records())
    out = diagnose(path, labels=LABELS, bootstrap=20).to_dict()
    assert out["fused_agents"] == [] and out["agents"] == {} and out["baseline_top1"] is None
    assert set(out["fusion_topk"]) == {"1", "2", "3"} and set(out["fusion_topk"].values()) == {None}
    assert "ablation" in out
    with pytest.raises(InputError, match="needs fused agents"):
        diagnose(path, labels=LABELS, causal=True)
    runner = CliRunner()
    result = runner.invoke(app, ["diagnose", str(path), "--labels", LABELS, "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    assert "Ablation audit" in result.output and "model records with conditions only" in result.output
    assert "Fusion top-k" not in result.output
    result = runner.invoke(app, ["diagnose", str(path), "--labels", LABELS, "--json", "--bootstrap", "0"])
    assert json.loads(result.output)["ablation"]["models"]["e2e"]["streams"]["audio"]["n"] == 5
    assert "needs fused agents" in cli_error(["diagnose", str(path), "--labels", LABELS, "--all"], capsys)
    report = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(path), "--labels", LABELS, "--out", str(report), "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    assert "Ablation audit (end-to-end models)" in report.read_text(encoding="utf-8")


def test_ablation_is_automatic_and_not_a_flag(write_jsonl):
    runner = CliRunner()
    assert "--ablation" not in runner.invoke(app, ["diagnose", "--help"]).output
    plain = write_jsonl([answer("1", "t", "a", gold="a"), answer("2", "t", "b", gold="b")])
    assert "ablation" not in diagnose(plain, labels=LABELS, diagnostics="all").to_dict()
    with pytest.raises(InputError, match="carries a condition"):
        diagnose(plain, labels=LABELS, diagnostics=["ablation"])
    mixed = write_jsonl(STUDY, "mixed.jsonl")
    assert "ablation" in diagnose(mixed, labels=LABELS, diagnostics="all").to_dict()


def test_ablation_set_from_arrays_orders_and_checks_columns():
    scores = np.zeros((2, 3, 2))
    scores[:, :, 0] = 0.5
    ab = AblationSet.from_arrays(
        scores, [0, 1], labels=("a", "b"), columns=[("m", "without:x"), ("m", " FULL"), ("n", "only:y")]
    )
    assert ab.columns == (("m", "full"), ("m", "without:x"), ("n", "full"), ("n", "only:y"))
    assert not ab.present[:, 2].any() and ab.scores.shape == (2, 4, 2)
    assert ab.streams("m") == ("x",) and ab.conditions("n") == ("full", "only:y")
    with pytest.raises(InputError, match="twice"):
        AblationSet.from_arrays(scores, [0, 1], labels=("a", "b"), columns=[("m", "full")] * 3)
    with pytest.raises(InputError, match="condition"):
        AblationSet.from_arrays(scores, [0, 1], labels=("a", "b"), columns=[("m", "gone:x")] * 3)


def test_a_run_with_a_manifest_of_trimodal_features_and_a_model_audited_by_ablation(tmp_path):
    """``modsab run``: probe agents on a manifest's feature columns, and a model trained on
    other instances whose ``modsab.ablate`` records come in as a precomputed agent; the run's
    JSON has the ablation figures a plain computation gives."""
    from sklearn.linear_model import LogisticRegression

    import modsab
    from modsab.run.config import load_config
    from modsab.run.pipeline import run_pipeline

    rng = np.random.default_rng(5)
    n = 160
    y = rng.integers(0, 3, n)
    streams = {
        "shape": np.eye(3)[y] * 1.5 + rng.normal(size=(n, 3)),
        "sound": np.eye(3)[y] * 1.0 + rng.normal(size=(n, 3)),
        "word": rng.normal(size=(n, 2)),  # carries nothing
    }
    train, test = np.arange(n) < 80, np.arange(n) >= 80
    model = LogisticRegression(max_iter=1000).fit(np.hstack([v[train] for v in streams.values()]), y[train])
    labels = ["circle", "square", "star"]
    ids = [f"s{i}" for i in np.flatnonzero(test)]
    records = modsab.ablate(
        lambda d: model.predict_proba(np.hstack([d[s] for s in streams])),
        {s: v[test] for s, v in streams.items()},
        labels=labels,
        gold=np.array(labels)[y[test]],
        instance_ids=ids,
        agent="e2e",
    )
    modsab.to_jsonl(records, tmp_path / "e2e.jsonl")
    manifest = pd.DataFrame({"instance_id": ids, "gold": np.array(labels)[y[test]]})
    columns = {}
    for s, values in streams.items():
        columns[s] = [f"{s}_{j}" for j in range(values.shape[1])]
        manifest[columns[s]] = values[test]
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    agents = "".join(
        f'[[agents]]\nname = "{s}"\nkind = "probe"\nfeatures = {json.dumps(c)}\n\n' for s, c in columns.items()
    )
    (tmp_path / "run.toml").write_text(
        '[run]\ndir = "run"\n[dataset]\nloader = "manifest"\npath = "manifest.csv"\nlabels = "circle,square,star"\n\n'
        f'{agents}[[agents]]\nname = "e2e"\nkind = "precomputed"\npath = "e2e.jsonl"\n\n'
        '[audit]\nbootstrap = 200\ndiagnostics = ["causal"]\n[outputs]\nreport = ""\n',
        encoding="utf-8",
    )
    outcome = run_pipeline(load_config(tmp_path / "run.toml"), progress=False)
    result = json.loads((tmp_path / "run" / "diagnosis.json").read_text(encoding="utf-8"))
    assert result == json.loads(json.dumps(outcome.diagnosis))
    assert result["fused_agents"] == ["shape", "sound", "word"]  # the model is not fused
    section = result["ablation"]
    full = model.predict_proba(np.hstack([v[test] for v in streams.values()])).argmax(axis=1)
    gold = y[test]
    assert section["models"]["e2e"]["top1_full"] == pytest.approx(np.mean(full == gold))
    for s in streams:
        masked = {
            t: (np.broadcast_to(v[test].mean(axis=0), v[test].shape) if t == s else v[test]) for t, v in streams.items()
        }
        without = model.predict_proba(np.hstack(list(masked.values()))).argmax(axis=1)
        entry = section["models"]["e2e"]["streams"][s]
        assert entry["n"] == 80
        assert entry["top1_without"] == pytest.approx(np.mean(without == gold))
        assert entry["top1_drop"] == pytest.approx(np.mean(full == gold) - np.mean(without == gold))
        assert entry["causal_sabotage_rate"] == pytest.approx(np.mean((full != gold) & (without == gold)))
        assert entry["causal_contribution_rate"] == pytest.approx(np.mean((full == gold) & (without != gold)))
        assert entry["flip_rate"] == pytest.approx(np.mean(full != without))
        for key in ("causal_sabotage_rate", "top1_drop"):
            low, high = section["ci"][f"models.e2e.streams.{s}.{key}"]
            assert low <= entry[key] <= high
    assert {a["stream"] for a in section["fusion"]["agents"].values()} == set(streams)
    table = pd.read_parquet(tmp_path / "run" / "instances.parquet")
    assert {"e2e.without:sound.causal", "sound.causal"} <= set(table.columns)


def test_per_dataset_tables_show_when_there_are_several(write_jsonl, capsys):
    from modsab.views.terminal import print_summary

    rows = []
    for i in range(8):
        ds = "left" if i % 2 else "right"
        rows += [answer(str(i), "e2e", "a", gold="a", dataset=ds), answer(str(i), "e2e", "b", condition="without:x")]
    print_summary(diagnose(write_jsonl(rows), labels=LABELS, bootstrap=0).to_dict())
    out = capsys.readouterr().out
    assert "left: ablation audit (n = 4)" in out and "right: ablation audit (n = 4)" in out


def test_the_report_shows_the_ablation_tables_with_their_figures(tmp_path):
    """The ablation section of the page: the models, each stream removed (figures with their
    intervals, as in the JSON) and the agents' fusion beside the model, per stream."""
    import html
    import random
    import re

    rng = random.Random(0)
    labels = ["a", "b", "c"]
    rows = []
    for i in range(40):
        gold = rng.choice(labels)
        for agent in ("text", "audio"):
            rows.append({"instance_id": str(i), "agent": agent, "gold": gold,
                         "candidates": [{"label": gold if rng.random() < 0.6 else rng.choice(labels), "confidence": 80}]})
        for condition in ("full", "without:text", "without:audio"):
            rows.append({"instance_id": str(i), "agent": "e2e", "condition": condition, "gold": gold,
                         "candidates": [{"label": gold if rng.random() < 0.7 else rng.choice(labels), "confidence": 90}]})
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["report", str(path), "--out", str(tmp_path / "r.html"), "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    section = page[page.index('<section id="ablation"'):]
    section = html.unescape(re.sub(r"<[^>]+>", " ", section[: section.index("</section>")]))
    out = diagnose(path, bootstrap=20).to_dict()["ablation"]
    assert "Each stream removed" in section and "the agents' fusion beside the model" in section
    for stream in ("audio", "text"):
        figures = out["models"]["e2e"]["streams"][stream]
        low, high = out["ci"][f"models.e2e.streams.{stream}.causal_sabotage_rate"]
        assert f"{figures['causal_sabotage_rate']:.3f} [{low:.3f}, {high:.3f}]" in section
        fused = out["fusion"]["agents"][stream]["causal_sabotage_rate"]
        assert f"{fused:.3f}" in section
