"""The typed, versioned diagnosis JSON: models that describe exactly what ``diagnose`` writes,
and the JSON Schema generated from them (``modsab schema diagnosis``)."""

from __future__ import annotations

import copy
import json
import typing
from importlib.resources import files

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydantic import ValidationError
from typer.testing import CliRunner

from modsab.cli import app
from modsab.contract.predictions import PredictionSet
from modsab.core.diagnosis import diagnose
from modsab.core.result import SCHEMA_VERSION, DiagnosisResult, Summary
from modsab.data.synth import SynthConfig, generate, write
from modsab.diagnostics.calibration import CalibrationFigures
from modsab.diagnostics.fusion_compare import FusionStrategy
from modsab.registry import diagnostics as registered
from modsab.registry import requestable_diagnostics

EVERY = dict.fromkeys(requestable_diagnostics(), True)


def as_json(data) -> str:
    """Key order, int vs float and null all show in the text (a section's typed model as its JSON)."""
    return json.dumps(data, allow_nan=False, default=lambda model: model.model_dump(mode="json"))


def assert_round_trips(d) -> dict:
    """``to_dict()`` is exactly the JSON as assembled (today's keys, order and values) plus
    ``schema_version``; reading that JSON back into the models and dumping it changes nothing."""
    out = d.to_dict()
    assert as_json(out) == as_json(d._payload())
    assert list(out)[0] == "schema_version" and out["schema_version"] == SCHEMA_VERSION
    text = as_json(out)
    assert as_json(DiagnosisResult.model_validate(json.loads(text)).model_dump(mode="json")) == text
    return out


@pytest.fixture(scope="module")
def demo():
    path = str(files("modsab") / "data" / "demo_predictions.jsonl")
    fused = ["text", "audio", "vision", "tav"]
    return diagnose(path, labels="meld", fuse=fused, baseline="tav", bootstrap=100, **EVERY)


@pytest.fixture(scope="module")
def synth3():
    pset = generate(SynthConfig(n_instances=2000, n_datasets=3, seed=5))[0]
    return diagnose(pset, bootstrap=100, baseline="joint", k=3, **EVERY)


def test_demo_and_synth_json_round_trip(demo, synth3):
    for d in (demo, synth3):
        out = assert_round_trips(d)
        assert set(requestable_diagnostics()) <= set(out) and len(out["by_dataset"]) >= 1
    assert list(synth3.to_dict()["by_dataset"]) == ["synth0", "synth1", "synth2"]


def test_result_is_typed(synth3):
    result = synth3.result()
    assert isinstance(result, DiagnosisResult)
    assert result.agents["audio"].successful_sabotage_rate == synth3.to_dict()["agents"]["audio"][
        "successful_sabotage_rate"
    ]
    assert result.fusion_compare.strategies["quality"].rates["top1"] == (
        synth3.to_dict()["fusion_compare"]["strategies"]["quality"]["top1"]
    )
    assert [name for name, _ in result.groups()] == ["all", "synth0", "synth1", "synth2"]
    assert isinstance(result, Summary) and result.groups()[0][1] is result


def test_absent_keys_stay_absent_and_nulls_stay_null():
    pset = generate(SynthConfig(n_instances=300, seed=2))[0]
    pset.quality[:] = np.nan  # answers without quality
    out = assert_round_trips(diagnose(pset, bootstrap=0, calibration=True, fusion_compare=True))
    assert "by_dataset" not in out and "causal" not in out and "tau_sweep" not in out
    figures = out["calibration"]["groups"]["all"]["text"]
    assert "quality_auroc" not in figures and "recalibrated" in figures
    assert "reliability" not in figures["recalibrated"]["temperature"]
    assert figures["ci"]["ece"] == [None, None]
    assert "quality" in out["fusion_compare"]["skipped"] and "quality" not in out["fusion_compare"]["strategies"]
    assert "diff" not in out["fusion_compare"]["strategies"]["uniform"]
    assert out["baseline"] is None and out["baseline_top1"] is None and out["ci"] == {}


def test_a_key_without_a_model_is_an_error(synth3):
    out = synth3.to_dict()
    for path in (
        (),
        ("agents", "audio"),
        ("by_dataset", "synth0"),
        ("causal", "pairs", "text+audio"),
        ("shapley", "groups", "all", "agents", "text", "correct"),
        ("calibration", "groups", "all", "text", "recalibrated", "isotonic"),
        ("fusion_compare", "strategies", "cap"),
        ("tau_sweep", "points", 3, "changed_from_previous"),
    ):
        changed = copy.deepcopy(out)
        target = changed
        for key in path:
            target = target[key]
        target["surprise_key"] = 1
        with pytest.raises(ValidationError, match="surprise_key"):
            DiagnosisResult.model_validate(changed)
    missing = copy.deepcopy(out)
    del missing["fusion_compare"]["strategies"]["cap"]["causal_sabotage"]
    with pytest.raises(ValidationError, match="causal_sabotage"):
        DiagnosisResult.model_validate(missing)


def test_schema_version_comes_first_then_the_summary_fields():
    fields = list(DiagnosisResult.model_fields)
    assert fields[0] == "schema_version"
    assert fields[1 : 1 + len(Summary.model_fields)] == list(Summary.model_fields)
    # the sections, then what the audit concluded from them, then the run
    assert fields[-len(registered.names()) - 2 : -2] == list(registered.names()) and fields[-2:] == ["findings", "run"]
    assert list(DiagnosisResult.model_json_schema()["properties"]) == fields


def test_absent_fields_are_declared_on_the_models():
    assert CalibrationFigures.absent_keys >= {"quality_auroc", "recalibrated", "reliability", "ci"}
    assert FusionStrategy.absent_keys == {"diff", "diff_ci"}
    assert DiagnosisResult.absent_keys == {"by_dataset", *registered.names(), "findings", "run"}
    for name in DiagnosisResult.absent_keys:  # optional sections are never null when present
        assert type(None) in typing.get_args(DiagnosisResult.model_fields[name].annotation)


# -- any predictions ------------------------------------------------------------------------------

AGENT_NAMES = ("text", "audio", "vision", "tav", "joint", "face", "voice")
LABEL_NAMES = ("neutral", "joy", "anger", "sadness")


@st.composite
def prediction_sets(draw):
    n = draw(st.integers(2, 30))
    m = draw(st.integers(1, 7))  # 7 agents: Shapley's plain path (more than a packed code holds)
    k = draw(st.integers(1, 4))
    conf = draw(arrays(np.int64, (n, m, k), elements=st.integers(0, 100)))
    named = draw(arrays(np.bool_, (n, m, k)))
    gold = draw(arrays(np.int64, n, elements=st.integers(0, k - 1)))
    quality = None
    if draw(st.booleans()):
        quality = draw(arrays(np.int64, (n, m), elements=st.integers(1, 100))) / 100
    dataset = None
    if draw(st.booleans()):
        dataset = draw(st.lists(st.sampled_from(["meld", "mer", "iemocap"]), min_size=n, max_size=n))
    return PredictionSet.from_arrays(
        np.where(named, conf, 0) / 100,
        gold,
        labels=LABEL_NAMES[:k],
        agents=AGENT_NAMES[:m],
        candidate=named,
        quality=quality,
        dataset=dataset,
    )


@settings(max_examples=25, deadline=None)
@given(
    prediction_sets(),
    st.sampled_from([0, 20]),
    st.integers(1, 5),
    st.sampled_from([0.0, 0.5, 0.7, 1.0]),
    st.booleans(),
)
def test_any_diagnosis_round_trips(pset, bootstrap, k, tau, with_baseline):
    baseline = pset.agents[-1] if with_baseline and len(pset.agents) > 1 else None
    d = diagnose(pset, bootstrap=bootstrap, k=k, tau=tau, baseline=baseline, n_folds=2, **EVERY)
    out = assert_round_trips(d)
    jsonschema.validate(out, DiagnosisResult.model_json_schema())


# -- the JSON Schema ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def printed_schema():
    result = CliRunner().invoke(app, ["schema", "diagnosis"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def test_diagnose_all_json_validates_against_the_printed_schema(printed_schema, tmp_path):
    pset, planted = generate(SynthConfig(n_instances=600, n_datasets=3, seed=1))
    write(pset, planted, tmp_path, SynthConfig(n_instances=600, n_datasets=3, seed=1))
    result = CliRunner().invoke(app, ["diagnose", str(tmp_path), "--all", "--json", "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(requestable_diagnostics()) <= set(out) and len(out["by_dataset"]) == 3
    validator = jsonschema.Draft202012Validator(printed_schema)
    assert not list(validator.iter_errors(out))
    # the schema is strict: it catches an unknown key, a missing one, a wrong type
    wrong = copy.deepcopy(out)
    wrong["calibration"]["groups"]["synth1"]["audio"]["ece_typo"] = 0.1
    del wrong["causal"]["agents"]["text"]["disagreement"]
    wrong["tau_sweep"]["points"][0]["tau"] = "0.5"
    wrong["fusion_compare"]["strategies"]["learned"]["top2"] = None
    messages = " | ".join(error.message for error in validator.iter_errors(wrong))
    assert "ece_typo" in messages and "disagreement" in messages and "'0.5' is not of type 'number'" in messages
    assert "None is not of type 'number'" in messages


def test_a_run_diagnosis_validates_against_the_schema(printed_schema, tmp_path):
    """``modsab run`` on a manifest, each synthetic agent's answers precomputed, every diagnostic."""
    synth = SynthConfig(n_instances=40, seed=3)
    pset, planted = generate(synth)
    answers = write(pset, planted, tmp_path / "synth", synth)["predictions"]
    gold = {row["instance_id"]: row["gold"] for row in map(json.loads, open(answers, encoding="utf-8"))}
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"instance_id": i, "gold": g}) + "\n" for i, g in gold.items()))
    config = tmp_path / "run.toml"
    config.write_text(
        "\n".join(
            [
                f'[run]\ndir = "{tmp_path / "run"}"',
                f'[dataset]\nloader = "manifest"\npath = "{manifest}"\nlabels = "meld"',
                *(f'[[agents]]\nname = "{name}"\nkind = "precomputed"\npath = "{answers}"' for name in pset.agents),
                '[audit]\nbootstrap = 20\ndiagnostics = "all"\nfolds = 2',
                '[outputs]\nreport = ""\n',
            ]
        )
    )
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "diagnosis.json").read_text())
    assert saved["schema_version"] == SCHEMA_VERSION and set(requestable_diagnostics()) <= set(saved)
    assert saved["run"]["agents"] == dict.fromkeys(pset.agents, "precomputed")
    jsonschema.validate(saved, printed_schema)
    text = as_json(saved)
    assert as_json(DiagnosisResult.model_validate(saved).model_dump(mode="json")) == text


# -- the views read the typed result --------------------------------------------------------------


def _text(result) -> str:
    from rich.console import Console

    from modsab.views.terminal import print_summary

    console = Console(record=True, width=160)
    print_summary(result, console=console)
    return console.export_text()


def test_terminal_tables_read_the_typed_result(synth3):
    result = synth3.result()
    text = _text(result)
    assert text == _text(synth3.to_dict())  # a JSON dict is validated into the same result
    audio = result.agents["audio"]
    low, high = result.ci["agents.audio.successful_sabotage_rate"]
    assert f"{audio.successful_sabotage_rate:.2f} [{low:.2f}–{high:.2f}]" in text
    cap = result.fusion_compare.strategies["cap"]
    assert f"{cap.diff['top1']:+.3f} [{cap.diff_ci['top1'][0]:+.3f}, {cap.diff_ci['top1'][1]:+.3f}]" in text
    for group in ("all", "synth0", "synth1", "synth2"):
        assert f"Shapley shares, {group} (n = {result.shapley.groups[group].n_instances};" in text
    unknown = {**synth3.to_dict(), "surprise_key": 1}
    with pytest.raises(ValidationError, match="surprise_key"):
        _text(unknown)


def test_report_reads_the_typed_sections_and_shows_other_shapes_as_plain_tables(synth3, tmp_path):
    import re

    from modsab.diagnostics.fusion_compare import FusionCompareSection
    from modsab.views.report import Extras, ReportData, build_report

    def page(diagnosis, sections=None):
        html = build_report(diagnosis, extras=Extras(diagnosis=sections or {}), title="t")
        return re.sub(r"nonce-[\w-]+|nonce=\"[\w-]+\"|\d{4}-\d\d-\d\d \d\d:\d\d UTC", "", html)

    full = synth3.to_dict()
    assert page(synth3.result()) == page(full)
    assert "diff vs uniform" in page(full)
    data = ReportData.read(full)
    assert data.foreign == {} and isinstance(data.section("fusion_compare"), FusionCompareSection)

    # a diagnosis without sections takes them from a run's diagnosis.json: typed when they are
    # modsab's, plain JSON (a generic table) when they are of another shape
    plain = {key: value for key, value in full.items() if key not in requestable_diagnostics()}
    older = copy.deepcopy(full["fusion_compare"])
    del older["skipped"]
    sections = {"causal": full["causal"], "fusion_compare": older, "run": {"config": None}}
    data = ReportData.read(plain, sections)
    assert data.result.causal == synth3.result().causal and data.result.fusion_compare is None
    assert data.foreign == {"fusion_compare": older}
    html = page(plain, sections)
    assert '<section id="fusion_compare">' in html and "diff vs uniform" not in html
    assert "causal | paper" in html and '<section id="shapley">' not in html


@pytest.mark.parametrize("name", [name for name, entry in registered.items() if entry.section is not None])
def test_every_section_is_exactly_what_its_diagnostic_computes(name):
    """The typed model of each registered section dumps exactly the JSON its computation
    assembled (key order, int vs float, null): validation changes no figure."""
    pset, _ = generate(SynthConfig(n_instances=400, n_datasets=2, seed=9))
    d = diagnose(pset, bootstrap=30)
    raw = registered.get(name).compute(d, folds=3)
    assert as_json(registered.get(name).section.model_validate(raw).model_dump(mode="json")) == as_json(raw)
