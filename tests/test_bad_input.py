"""Every bad input gets a clear error naming the file, line or item; exit code 2 in the CLI."""

from __future__ import annotations

import json

import pytest
from conftest import record
from typer.testing import CliRunner

from modsab.cli import main
from modsab.contract.errors import InputError
from modsab.contract.predictions import load_predictions

GOOD = record("i1", "text", [("joy", 80)], gold="joy")


def load(path, **options):
    options.setdefault("labels", "meld")
    return load_predictions(path, **options)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found") as info:
        load(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(InputError, match="empty"):
        load(path)


def test_blank_lines_only(write_jsonl):
    with pytest.raises(InputError, match="no valid prediction record"):
        load(write_jsonl(["", "  "]))


def test_invalid_json_names_file_and_line(write_jsonl):
    path = write_jsonl([GOOD, '{"instance_id": "i2", "agent": "text", "candidates": [}'])
    with pytest.raises(InputError, match="invalid JSON") as info:
        load(path)
    assert f"{path}:2" in str(info.value)


def test_missing_field_names_field_and_line(write_jsonl):
    path = write_jsonl([GOOD, {"instance_id": "i2", "candidates": []}])
    with pytest.raises(InputError, match="missing field 'agent'") as info:
        load(path)
    assert f"{path}:2" in str(info.value)


@pytest.mark.parametrize(
    ("candidates", "quality", "message"),
    [
        ([{"label": "joy", "confidence": 120}], 50, "confidence 120 is outside 0-100"),
        ([{"label": "joy", "confidence": -1}], 50, "outside 0-100"),
        ([{"label": "joy", "confidence": "high"}], 50, "confidence must be a number"),
        ([{"label": "joy", "confidence": None}], 50, "confidence must be a number"),
        ([{"label": "joy"}], 50, "missing field 'candidates.0.confidence'"),
        ([{"label": "joy", "confidence": 50}], 101, "quality 101 is outside 0-100"),
        ([{"label": "joy", "confidence": 50}], "good", "quality must be a number"),
        ("joy", 50, "candidates: must be a list"),
    ],
)
def test_numbers_out_of_range_or_not_numbers(write_jsonl, candidates, quality, message):
    bad = {"instance_id": "i2", "agent": "text", "candidates": candidates, "quality": quality}
    path = write_jsonl([GOOD, GOOD | {"instance_id": "i0"}, bad])
    with pytest.raises(InputError, match=message) as info:
        load(path)
    assert f"{path}:3" in str(info.value)


def test_duplicate_instance_agent_names_both_lines(write_jsonl):
    path = write_jsonl([GOOD, record("i2", "text", [("joy", 1)], gold="joy"), GOOD])
    with pytest.raises(InputError, match="two records for agent 'text'") as info:
        load(path)
    assert f"{path}:1" in str(info.value) and f"{path}:3" in str(info.value)


def test_conflicting_gold_names_the_instance(write_jsonl):
    path = write_jsonl([GOOD, record("i1", "audio", [("joy", 50)], gold="anger")])
    with pytest.raises(InputError, match="instance 'i1' disagree on gold") as info:
        load(path)
    assert "joy" in str(info.value) and "anger" in str(info.value)


def test_gold_outside_label_set(write_jsonl):
    with pytest.raises(InputError, match="gold 'boredom'"):
        load(write_jsonl([record("i1", "text", [("joy", 80)], gold="boredom")]))


def test_labels_given_twice():
    with pytest.raises(InputError, match="'joy' is given twice"):
        load_predictions("unused.jsonl", labels="joy,anger,Joy")


def test_unknown_file_type(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("x")
    with pytest.raises(InputError, match="unknown file type"):
        load(path)


def test_directory_without_predictions(tmp_path):
    with pytest.raises(InputError, match="no predictions file"):
        load(tmp_path)


def test_skip_invalid_skips_counts_and_lists(write_jsonl):
    path = write_jsonl(
        [
            GOOD,
            "not json",
            {"instance_id": "i2", "agent": "text", "candidates": [{"label": "joy", "confidence": 500}]},
            GOOD,  # duplicate
            record("i3", "text", [("joy", 80)], gold="joy"),
            record("i3", "audio", [("joy", 80)], gold="fear"),  # conflicting gold: instance skipped
        ]
    )
    pset = load(path, skip_invalid=True)
    assert list(pset.instance_ids) == ["i1"]
    reasons = [s.reason for s in pset.skipped]
    assert any("invalid JSON" in r for r in reasons)
    assert any("outside 0-100" in r for r in reasons)
    assert "duplicate (instance, agent)" in reasons
    assert "records disagree on gold" in reasons
    assert any(s.where.endswith(":2") for s in pset.skipped)


def test_unicode_passes_untouched(write_jsonl, tmp_path):
    weird = "dia1_utt2 “quoted” 😀"
    path = write_jsonl([record(weird, "téxt", [("joy", 80)], gold="joy", note="it’s")])
    result = CliRunner().invoke(
        __import__("modsab.cli", fromlist=["app"]).app,
        ["diagnose", str(path), "--labels", "meld", "--bootstrap", "0", "--instances", str(tmp_path / "o.jsonl")],
    )
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert row["instance_id"] == weird and row["téxt.top"] == "joy"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fuse", "nobody"], "unknown agent 'nobody'"),
        (["--baseline", "nobody"], "unknown agent 'nobody'"),
        (["--labels", "joy,joy"], "given twice"),
        (["--weights", "magic"], "unknown weights"),
        (["--scale", "permille"], "unknown scale"),
    ],
)
def test_cli_errors_exit_2_without_traceback(write_jsonl, capsys, args, message):
    path = write_jsonl([GOOD])
    base = ["diagnose", str(path), "--bootstrap", "0"]
    if "--labels" not in args:
        base += ["--labels", "meld"]
    with pytest.raises(SystemExit) as info:
        main(base + args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_missing_file_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["diagnose", str(tmp_path / "missing.jsonl")])
    assert info.value.code == 2
    assert "file not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["diagnose", "p.jsonl", "extra_argument"], "unexpected extra argument"),
        (["diagnose", "p.jsonl", "--no-such-option"], "No such option"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_exit_2_without_traceback(args, message):
    """The console script, as a user runs it: click's usage errors (typer's vendored click or
    the click package) end with click's message and exit 2, no traceback."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "modsab", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
