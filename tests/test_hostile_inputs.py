"""Hostile files and options (issue 13): a clear error naming the file, line or field,
exit code 2 and no traceback; or, where a format is legitimate (``.jsonl.gz``), read it."""

from __future__ import annotations

import bz2
import gzip
import json
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import record

from modsab.cli import main
from modsab.contract.errors import InputError
from modsab.contract.labels import LabelSet
from modsab.contract.predictions import load_predictions
from modsab.core.diagnosis import Options, diagnose

LABELS = "joy,anger,sadness"
RECORDS = [
    record("i1", "text", [("joy", 80), ("anger", 10)], gold="joy", quality=70),
    record("i1", "audio", [("anger", 90)], quality=40),
    record("i2", "text", [("sadness", 60)], gold="sadness"),
    record("i2", "audio", [("joy", 75), ("sadness", 20)]),
]
ARRAYS = ("instance_ids", "scores", "candidate", "quality", "gold", "present")


def jsonl_bytes(records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def csv_text(records) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["instance_id", "agent", "gold", "candidates", "quality"])
    for r in records:
        writer.writerow(
            [r["instance_id"], r["agent"], r.get("gold", ""), json.dumps(r["candidates"]), r.get("quality", "")]
        )
    return out.getvalue()


def cli_error(args, capsys) -> str:
    """Run the CLI; assert exit code 2 and no traceback; return stderr."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    return " ".join(err.split())  # rich wraps long lines


def cli_ok(args) -> None:
    """Run the CLI; assert it ends without an error."""
    try:
        main([str(a) for a in args])
    except SystemExit as done:
        assert done.code in (0, None)


def assert_same_set(a, b) -> None:
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        if x.dtype == object:
            assert x.tolist() == y.tolist(), name
        else:
            assert np.array_equal(x, y, equal_nan=True), name
    assert a.agents == b.agents and a.invalid_labels == b.invalid_labels


# -- candidate labels that are not strings -----------------------------------------------------


NOT_STRINGS = [5, 2.5, True, None, {"text": "joy"}, ["joy"]]


def bad_label_records(label):
    bad = {"instance_id": "i3", "agent": "text", "gold": "joy", "candidates": [{"label": "joy", "confidence": 5}]}
    bad["candidates"].append({"label": label, "confidence": 50})
    return [*RECORDS, bad]


@pytest.mark.parametrize("label", NOT_STRINGS, ids=repr)
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_candidate_label_not_a_string_names_line_and_field(tmp_path, label, fmt):
    records = bad_label_records(label)
    path = tmp_path / f"p.{fmt}"
    if fmt == "jsonl":
        path.write_bytes(jsonl_bytes(records))
    else:
        path.write_text(csv_text(records), encoding="utf-8")
    for strict in (False, True):
        with pytest.raises(InputError) as info:
            load_predictions(path, labels=LABELS, strict=strict)
        message = str(info.value)
        line = 5 if fmt == "jsonl" else 6
        assert f"{path}:{line}" in message and "candidates.1.label" in message and "must be a string" in message
    loaded = load_predictions(path, labels=LABELS, skip_invalid=True)
    assert [s.where for s in loaded.skipped] == [f"{path}:{line}"] and "candidates.1.label" in loaded.skipped[0].reason
    assert loaded.instance_ids.tolist() == ["i1", "i2"]
    result = diagnose(path, labels=LABELS, skip_invalid=True, bootstrap=0).to_dict()
    assert result["n_skipped"] == 1 and result["n_instances"] == 2


def parquet_with_labels(path: Path, labels: list, label_type: pa.DataType) -> Path:
    candidates_type = pa.list_(pa.struct([("label", label_type), ("confidence", pa.float64())]))
    table = pa.table(
        {
            "instance_id": pa.array([f"i{i}" for i in range(len(labels))]),
            "agent": pa.array(["text"] * len(labels)),
            "gold": pa.array(["joy"] * len(labels)),
            "candidates": pa.array([[{"label": label, "confidence": 50.0}] for label in labels], candidates_type),
        }
    )
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize(
    ("labels", "label_type"),
    [(["joy", None, "anger"], pa.string()), ([1, 2, 3], pa.int64()), ([True, False, True], pa.bool_())],
    ids=["null", "int", "bool"],
)
def test_parquet_candidate_label_not_a_string(tmp_path, labels, label_type):
    path = parquet_with_labels(tmp_path / "p.parquet", labels, label_type)
    row = 2 if labels[0] == "joy" else 1
    with pytest.raises(InputError) as info:
        load_predictions(path, labels=LABELS)
    assert f"row {row}" in str(info.value) and "candidates.0.label" in str(info.value)
    if labels[0] == "joy":
        loaded = load_predictions(path, labels=LABELS, skip_invalid=True)
        assert loaded.instance_ids.tolist() == ["i0", "i2"] and len(loaded.skipped) == 1


def test_cli_candidate_label_number_exit_2(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_bytes(jsonl_bytes(bad_label_records(7)))
    for extra in ([], ["--strict"]):
        err = cli_error(["diagnose", path, "--labels", LABELS, "--bootstrap", "0", *extra], capsys)
        assert f"{path}:5" in err and "candidates.1.label" in err


# -- compressed, binary and non-UTF-8 content --------------------------------------------------


def test_gzip_and_bz2_predictions_are_read(tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(jsonl_bytes(RECORDS))
    reference = load_predictions(plain, labels=LABELS)
    files = {
        "p.jsonl.gz": gzip.compress(jsonl_bytes(RECORDS)),
        "p.csv.gz": gzip.compress(csv_text(RECORDS).encode()),
        "p.jsonl.bz2": bz2.compress(jsonl_bytes(RECORDS)),
        "misnamed.jsonl": gzip.compress(jsonl_bytes(RECORDS)),  # gzip under a plain name: read it too
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert_same_set(load_predictions(path, labels=LABELS), reference)
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl.gz").write_bytes(files["p.jsonl.gz"])
    assert_same_set(load_predictions(run, labels=LABELS), reference)


def test_gzip_errors_keep_line_numbers(tmp_path):
    lines = jsonl_bytes(RECORDS) + b'{"instance_id": "i9", "agent": "text"}\n'
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(gzip.compress(lines))
    with pytest.raises(InputError, match="missing field 'candidates'") as info:
        load_predictions(path, labels=LABELS)
    assert f"{path}:5" in str(info.value)


def test_truncated_gzip_is_an_error(tmp_path, capsys):
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl_bytes(RECORDS) * 50)[:60])
    err = cli_error(["diagnose", path, "--labels", LABELS, "--bootstrap", "0"], capsys)
    assert str(path) in err and "decompress" in err


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


@pytest.mark.parametrize("name", ["p.jsonl", "p.csv", "p.jsonl.gz"])
def test_binary_content_is_an_error_naming_the_file(tmp_path, capsys, name):
    path = tmp_path / name
    path.write_bytes(gzip.compress(PNG) if name.endswith(".gz") else PNG)
    with pytest.raises(InputError, match="not a text file") as info:
        load_predictions(path, labels=LABELS)
    assert str(path) in str(info.value) and "PNG" in str(info.value)
    err = cli_error(["diagnose", path, "--labels", LABELS, "--bootstrap", "0"], capsys)
    assert str(path) in err and "not a text file" in err


def test_nul_bytes_are_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(jsonl_bytes(RECORDS) + b"\x00\x00\x00\x00")
    with pytest.raises(InputError, match="not a text file") as info:
        load_predictions(path, labels=LABELS)
    assert f"{path}:5" in str(info.value)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_latin1_content_names_file_and_line(tmp_path, capsys, fmt):
    records = [*RECORDS, record("café", "text", [("joy", 10)], gold="joy")]
    text = jsonl_bytes(records).decode() if fmt == "jsonl" else csv_text(records)
    path = tmp_path / f"p.{fmt}"
    path.write_bytes(text.encode("latin-1"))
    line = 5 if fmt == "jsonl" else 6
    with pytest.raises(InputError, match="not UTF-8") as info:
        load_predictions(path, labels=LABELS)
    assert f"{path}:{line}" in str(info.value) and "latin-1" in str(info.value)
    err = cli_error(["diagnose", path, "--labels", LABELS, "--bootstrap", "0"], capsys)
    assert f"{path}:{line}" in err


def test_read_rows_reads_gzip_and_rejects_binary(tmp_path):
    from modsab.data.loaders import read_rows

    rows = [{"instance_id": "a", "text": "hello"}, {"instance_id": "b", "text": "héllo"}]
    (tmp_path / "t.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes(rows)))
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(b"instance_id,text\na,hello\nb,h\xc3\xa9llo\n"))
    for name in ("t.jsonl.gz", "t.csv.gz"):
        assert [row for _, row in read_rows(tmp_path / name)] == rows
    (tmp_path / "bad.csv").write_bytes(PNG)
    with pytest.raises(InputError, match="not a text file"):
        read_rows(tmp_path / "bad.csv")
    (tmp_path / "latin.csv").write_bytes("instance_id,text\na,héllo\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8") as info:
        read_rows(tmp_path / "latin.csv")
    assert f"{tmp_path / 'latin.csv'}:2" in str(info.value)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="Parquet"):
        read_rows(tmp_path / "bad.parquet")


def test_binary_toml_config_exit_2(tmp_path, capsys):
    from modsab.run.config import load_config

    path = tmp_path / "bad.toml"
    path.write_bytes(PNG)
    with pytest.raises(InputError, match="not a text file"):
        load_config(path)
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[run]\ndir = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8") as info:
        load_config(latin)
    assert f"{latin}:2" in str(info.value)
    err = cli_error(["run", path], capsys)
    assert str(path) in err and "not a text file" in err


def test_corrupt_cache_database_exit_2(tmp_path, capsys):
    (tmp_path / "cache.sqlite").write_bytes(b"this is not an SQLite database" * 200)
    for command in ("ls", "stats"):
        err = cli_error(["cache", command, "--cache-dir", tmp_path], capsys)
        assert str(tmp_path / "cache.sqlite") in err and "SQLite" in err


def test_cache_clear_on_missing_directory_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "no-cache-here"
    for command in (["clear", "--yes"], ["clear"], ["ls"], ["stats"]):
        cli_ok(["cache", *command, "--cache-dir", missing])
        assert not missing.exists()
    assert "nothing to clear" in capsys.readouterr().out


def test_cache_clear_still_clears(tmp_path, capsys):
    from modsab.agents.store import ResponseCache

    cache = ResponseCache(tmp_path)
    request = {"messages": []}
    cache.put("k", base_url="u", model="m", prompt_version="v", request=request, response="r",
              prompt_tokens=1, completion_tokens=1)  # fmt: skip
    cache.close()
    cli_ok(["cache", "clear", "--yes", "--cache-dir", tmp_path])
    assert "removed 1 entries" in capsys.readouterr().out
    assert sqlite3.connect(tmp_path / "cache.sqlite").execute("SELECT COUNT(*) FROM responses").fetchone() == (0,)


# -- options: folds and seed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--folds", "0"], "--folds 0"),
        (["--folds", "1"], "--folds 1"),
        (["--folds", "-3"], "--folds -3"),
        (["--seed", "-1"], "--seed -1"),
    ],
)
@pytest.mark.parametrize("command", ["diagnose", "report"])
def test_folds_and_seed_are_validated(tmp_path, capsys, args, message, command):
    path = tmp_path / "p.jsonl"
    path.write_bytes(jsonl_bytes(RECORDS))
    extra = ["--out", tmp_path / "r.html"] if command == "report" else []
    err = cli_error([command, path, "--labels", LABELS, "--bootstrap", "5", "--all", *args, *extra], capsys)
    assert message in err
    assert not (tmp_path / "r.html").exists()


def test_folds_and_seed_in_the_api():
    for bad in ({"folds": 1}, {"folds": 0}, {"seed": -1}, {"seed": 1.5}):
        with pytest.raises(InputError):
            Options(**bad)
    assert Options(folds=2, seed=None).folds == 2
    pset = load_predictions_from(RECORDS)
    with pytest.raises(InputError, match="--folds 1"):
        diagnose(pset, bootstrap=0, n_folds=1)  # even without a cross-fitted diagnostic asked for
    result = diagnose(pset, bootstrap=0)
    with pytest.raises(InputError, match="--folds 1"):
        result.extend("calibration", n_folds=1)
    assert "cross-fitted over 2" in result.extend("calibration", n_folds=2).to_dict()["calibration"]["split"]


def test_config_seed_must_not_be_negative(tmp_path):
    from modsab.run.config import load_config

    path = tmp_path / "run.toml"
    config = '[dataset]\nloader = "ravdess"\npath = "x"\n\n[[agents]]\nname = "a"\nkind = "probe"\nfeatures = "audio"\n'
    path.write_text(config + "\n[audit]\nseed = 0\n", encoding="utf-8")
    assert load_config(path).audit.seed == 0
    path.write_text(config + "\n[audit]\nseed = -1\n", encoding="utf-8")
    with pytest.raises(InputError, match="audit.seed"):
        load_config(path)


def load_predictions_from(records, **options):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.jsonl"
        path.write_bytes(jsonl_bytes(records))
        options.setdefault("labels", LABELS)
        return load_predictions(path, **options)


# -- labels given as a list ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [["joy", "anger", "sadness"], ("joy", "anger", "sadness"), "joy,anger,sadness", LabelSet(("joy", "anger", "sadness"))],
    ids=["list", "tuple", "string", "LabelSet"],
)
def test_labels_as_list_tuple_string_or_labelset(tmp_path, labels):
    path = tmp_path / "p.jsonl"
    path.write_bytes(jsonl_bytes(RECORDS))
    loaded = load_predictions(path, labels=labels)
    assert tuple(loaded.labels) == ("joy", "anger", "sadness")
    assert_same_set(loaded, load_predictions(path, labels=LABELS))
    assert diagnose(path, labels=labels, bootstrap=0).to_dict()["labels"] == ["joy", "anger", "sadness"]


def test_labels_list_with_synonyms_and_bad_items(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(jsonl_bytes([*RECORDS, record("i3", "text", [("glad", 50)], gold="joy")]))
    loaded = load_predictions(path, labels=["joy", "anger", "sadness"], synonyms={"glad": "joy"})
    assert loaded.scores[2, loaded.agents.index("text"), 0] == 0.5
    with pytest.raises(InputError, match="labels"):
        load_predictions(path, labels=["joy", 3])
    with pytest.raises(InputError, match="given twice"):
        load_predictions(path, labels=["joy", "joy"])


# -- ragged CSV rows -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "fields"),
    [("i3,text", 2), ('i3,text,joy,"[]",50,extra', 6), ("i3,text,joy", 3)],
    ids=["fewer", "more", "no-candidates"],
)
def test_ragged_csv_row_names_the_line(tmp_path, row, fields):
    text = csv_text(RECORDS) + row + "\n" + csv_text(RECORDS[:1]).splitlines()[1].replace("i1", "i4") + "\n"
    path = tmp_path / "p.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=f"{fields} fields, the header has 5") as info:
        load_predictions(path, labels=LABELS)
    assert f"{path}:6" in str(info.value)
    loaded = load_predictions(path, labels=LABELS, skip_invalid=True)
    assert [s.where for s in loaded.skipped] == [f"{path}:6"]
    assert loaded.instance_ids.tolist() == ["i1", "i2", "i4"]


# -- a label twice in one candidate list --------------------------------------------------------


def test_label_repeated_in_one_answer_is_counted_as_invalid(tmp_path):
    records = [
        record("i1", "text", [("joy", 20), ("anger", 30), ("joy", 90)], gold="joy"),
        record("i1", "audio", [("happy", 60), ("JOY", 70), ("anger", 10)]),  # the same label after resolution
        record("i2", "text", [("sadness", 40)], gold="sadness"),
        record("i2", "audio", [("sadness", 40), ("fear", 5)]),
    ]
    path = tmp_path / "p.jsonl"
    path.write_bytes(jsonl_bytes(records))
    loaded = load_predictions(path, labels=LABELS)
    text, audio = loaded.agents.index("text"), loaded.agents.index("audio")
    assert loaded.scores[0, text].tolist() == [0.2, 0.3, 0.0]  # the first mention is kept, the repeat dropped
    assert loaded.scores[0, audio].tolist() == [0.6, 0.1, 0.0]
    assert loaded.invalid_labels == {"audio": 2, "text": 1}
    assert loaded.invalid_examples == {"audio": ["fear", "joy (repeated)"], "text": ["joy (repeated)"]}
    result = diagnose(path, labels=LABELS, bootstrap=0).to_dict()
    assert result["agents"]["text"]["invalid_labels"] == 1 and result["agents"]["audio"]["invalid_labels"] == 2
    assert result["agents"]["text"]["contributors"] == 1  # i1: anger 0.3 beats the first joy, 0.2
    with pytest.raises(InputError, match="'joy' twice") as info:
        load_predictions(path, labels=LABELS, strict=True)
    assert f"{path}:1" in str(info.value)


def test_repeated_label_same_in_every_format(tmp_path):
    records = [
        record("i1", "text", [("joy", 20), ("joy", 90), ("anger", 30), ("anger", 30)], gold="joy"),
        record("i2", "text", [("sadness", 40)], gold="sadness"),
    ]
    (tmp_path / "p.jsonl").write_bytes(jsonl_bytes(records))
    (tmp_path / "p.csv").write_text(csv_text(records), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "p.parquet")
    loaded = [load_predictions(tmp_path / name, labels=LABELS) for name in ("p.jsonl", "p.csv", "p.parquet")]
    for other in loaded[1:]:
        assert_same_set(other, loaded[0])
    assert loaded[0].scores[0, 0].tolist() == [0.2, 0.3, 0.0] and loaded[0].invalid_labels == {"text": 2}


# -- no RuntimeWarning on extreme data ------------------------------------------------------------


def extreme_records():
    """Tie-heavy answers at the ends of the scale: an agent always right, one at 0 and 100,
    one tied between two labels, one that abstains on half the instances."""
    labels = LABELS.split(",")
    out = []
    for i in range(60):
        gold = labels[i % 3]
        other = labels[(i + 1) % 3]
        out.append(record(f"i{i}", "oracle", [(gold, 61 if i % 2 else 100)], gold=gold, quality=100))
        out.append(record(f"i{i}", "extreme", [(gold if i % 4 else other, 100 if i % 2 else 0)], quality=0))
        out.append(record(f"i{i}", "tied", [(gold, 50), (other, 50)], quality=50))
        out.append(record(f"i{i}", "sometimes", [] if i % 2 else [(other, 100)], quality=100))
    return out


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_diagnose_all_on_extreme_data_emits_no_runtime_warning(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(jsonl_bytes(extreme_records()))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for folds in (2, 5):
            result = diagnose(
                path, labels=LABELS, bootstrap=50, n_folds=folds, weights="quality",
                causal=True, shapley=True, calibration=True, fusion_compare=True, tau_sweep=True,
            ).to_dict()  # fmt: skip
            temperatures = result["calibration"]["temperatures"]["oracle"]
            assert all(np.isfinite(temperatures))


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_temperature_map_is_finite_at_the_extremes():
    from modsab.core import recalibration as calibration  # recalibration moved out of the calibration report

    for confidence, correct in [([0.59, 0.86], [1, 1]), ([0.61] * 3, [1] * 3), ([0.0, 1.0], [0, 1])]:
        temperature = calibration.fit_temperature(np.array(confidence), np.array(correct))
        mapped = calibration._map("temperature", temperature, np.arange(101) / 100)
        assert np.all(np.isfinite(mapped)) and np.all((mapped >= 0) & (mapped <= 1))
        assert np.all(np.diff(mapped) >= 0)
