"""Writes that cannot tear, and storage failures that end in a clear error, not a traceback.

The tests run as root, where a chmod'ed directory does not block writes, so unwritable
places and full disks are made another way, each said in its test: a run directory
under a regular file (NotADirectoryError, a real OS error), SQLite's own size limit
(``PRAGMA max_page_count``: the real SQLITE_FULL "database or disk is full"), and the
lowest-level write of a cache entry patched to raise ``OSError(ENOSPC)``. What is tested
is the handling: the error names the path and what to do, data already stored stays.
"""

from __future__ import annotations

import errno
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from modsab.agents.testing import StubServer
from modsab.cli import main
from modsab.diskcache import CacheWarning
from modsab.diskcache import npy_cached as _npy_cached


def modsab(capsys, *args) -> tuple[int, str]:
    try:
        main(list(map(str, args)))
        code = 0
    except SystemExit as done:
        code = done.code or 0
    return code, capsys.readouterr().err


def probe_study(tmp_path: Path, *, run_dir: Path | None = None, n: int = 24) -> Path:
    """A manifest with two numeric feature columns and a probe on them (fast, no models)."""
    rng = np.random.default_rng(0)
    golds = ["joy", "anger", "sadness"]
    rows = [{"instance_id": f"i{k:02d}", "gold": golds[k % 3], "speaker": f"s{k % 4}",
             "f1": float(k % 3 + rng.normal(0, 0.3)), "f2": float(rng.normal())} for k in range(n)]
    data = tmp_path / "manifest.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = tmp_path / "probe.toml"
    config.write_text(
        f'[run]\ndir = "{run_dir or tmp_path / "run"}"\ncache_dir = "{tmp_path / "cache"}"\n'
        f'[dataset]\nloader = "manifest"\npath = "{data}"\nlabels = "meld"\n'
        '[[agents]]\nname = "probe"\nkind = "probe"\nfeatures = ["f1", "f2"]\noptions = { n_splits = 2 }\n'
        '[audit]\nbootstrap = 20\n[outputs]\nreport = ""\n'
    )
    return config


# -- .npy cache entries -------------------------------------------------------------------------


def test_a_torn_cache_entry_is_dropped_and_recomputed_with_a_warning(tmp_path):
    path = tmp_path / "probe-abc.npy"
    good = np.arange(12.0).reshape(3, 4)
    np.save(path, good)
    path.write_bytes(path.read_bytes()[:40])  # what a kill in the middle of np.save left behind
    with pytest.warns(CacheWarning, match="does not load"):
        again = _npy_cached(path, lambda: good)
    assert np.array_equal(again, good) and np.array_equal(np.load(path), good)


def test_a_write_that_fails_halfway_leaves_no_entry_under_the_final_name(tmp_path, monkeypatch):
    """The lowest-level write is patched to write half the bytes, then fail as a full disk does."""
    real_save = np.save

    def half_then_full(file, array, *args, **kwargs):
        import io

        buffer = io.BytesIO()
        real_save(buffer, array)
        data = buffer.getvalue()[:30]
        if hasattr(file, "write"):
            file.write(data)
        else:
            Path(file).write_bytes(data)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", half_then_full)
    path = tmp_path / "embeddings-minilm-x.npy"
    from modsab.contract.errors import InputError

    with pytest.raises(InputError) as info:
        _npy_cached(path, lambda: np.ones((2, 3)))
    assert not path.exists() and list(tmp_path.iterdir()) == []  # nothing torn, no temporary left
    assert str(path) in str(info.value) and "disk is full" in str(info.value)
    monkeypatch.setattr(np, "save", real_save)
    assert np.array_equal(_npy_cached(path, lambda: np.ones((2, 3))), np.ones((2, 3)))


def test_a_run_over_a_torn_probe_cache_recomputes_it_and_ends_with_the_same_json(tmp_path, capsys):
    config = probe_study(tmp_path)
    code, err = modsab(capsys, "run", config)
    assert code == 0, err
    first = (tmp_path / "run" / "diagnosis.json").read_bytes()
    [entry] = (tmp_path / "cache").glob("probe-*.npy")
    entry.write_bytes(entry.read_bytes()[:50])
    code, err = modsab(capsys, "run", config)
    assert code == 0, err
    assert "warning: cache entry" in err and "recomputing it" in err
    assert (tmp_path / "run" / "diagnosis.json").read_bytes() == first
    np.load(entry)  # whole again


# -- unwritable places and full disks ----------------------------------------------------------


def test_a_run_directory_under_a_file_is_a_clear_error(tmp_path, capsys):
    """A path under a regular file cannot be created (NotADirectoryError), even for root."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    code, err = modsab(capsys, "run", probe_study(tmp_path, run_dir=blocker / "run"))
    assert code == 2, err
    assert "not-a-folder" in err and "is a file, not a folder" in err and "Traceback" not in err


def test_agents_run_into_a_directory_under_a_file_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"instance_id": "a", "transcript": "hello", "gold": "joy"}) + "\n")
    code, err = modsab(capsys, "agents", "run", rows, "--run", blocker / "run", "--base-url", "http://127.0.0.1:9/v1",
                       "--model", "m", "--agents", "text", "--no-cache", "--no-progress")
    assert code == 2 and "not-a-folder" in err and "is a file, not a folder" in err


def test_a_full_disk_during_the_agents_stage_is_a_clear_error_and_keeps_what_was_stored(
        tmp_path, capsys, monkeypatch):
    """SQLite's page limit makes the run store full after a few answers: the real SQLITE_FULL."""
    from modsab.agents import store

    real_connect = store._connect

    def small(path):
        connection = real_connect(path)
        if path.name == "run.sqlite":
            connection.execute("PRAGMA max_page_count = 12")
        return connection

    monkeypatch.setattr(store, "_connect", small)
    data = tmp_path / "manifest.jsonl"
    data.write_text("".join(json.dumps({"instance_id": f"i{k:03d}", "gold": "joy",
                                        "transcript": f"words {k} " + "long " * 200}) + "\n" for k in range(60)))
    config = tmp_path / "run.toml"
    with StubServer() as server:
        config.write_text(
            f'[run]\ndir = "{tmp_path / "run"}"\ncache_dir = "{tmp_path / "cache"}"\n'
            f'[dataset]\nloader = "manifest"\npath = "{data}"\nlabels = "meld"\n'
            f'[[agents]]\nname = "text"\nkind = "llm"\nmodel = "stub"\nbase_url = "{server.url}"\nconcurrency = 1\n'
            '[outputs]\nreport = ""\n'
        )
        code, err = modsab(capsys, "run", config)
    assert code == 2, err
    assert "database or disk is full" in err and "run.sqlite" in err and "free space" in err
    assert "Traceback" not in err
    with sqlite3.connect(tmp_path / "run" / "agents" / "text" / "run.sqlite") as db:
        kept = db.execute("SELECT COUNT(*) FROM answers WHERE status = 'ok'").fetchone()[0]
    assert 0 < kept < 60  # what was stored before the disk filled is still there
