"""One process per run directory: a second ``modsab run`` / ``modsab agents run`` on the
same directory fails at once naming the holder, or waits with ``--wait``; no call is paid twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from modsab.agents.testing import StubServer, chat_reply
from modsab.cli import main
from modsab.run.lock import LOCK_FILE, RunLock

TREE = Path(__file__).resolve().parents[1]
N = 12


def answer(label="joy"):
    return json.dumps({"candidates": [{"label": label, "confidence": 80}], "primary_label": label,
                       "quality": 70, "issues": [], "reason": "stub"})


def study(tmp_path: Path, url: str) -> Path:
    data = tmp_path / "manifest.jsonl"
    data.write_text("".join(json.dumps({"instance_id": f"i{k:02d}", "gold": "joy", "transcript": f"words {k}"}) + "\n"
                            for k in range(N)))
    config = tmp_path / "run.toml"
    config.write_text(
        f'[run]\ndir = "{tmp_path / "run"}"\ncache_dir = "{tmp_path / "cache"}"\n'
        f'[dataset]\nloader = "manifest"\npath = "{data}"\nlabels = "meld"\n'
        f'[[agents]]\nname = "text"\nkind = "llm"\nmodel = "stub"\nbase_url = "{url}"\nconcurrency = 1\n'
        '[audit]\nbootstrap = 20\n[outputs]\nreport = ""\n'
    )
    return config


def modsab_process(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(TREE / "src")}
    return subprocess.Popen([sys.executable, "-m", "modsab", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def holder_pid(lock: Path, deadline: float) -> int | None:
    while time.monotonic() < deadline:
        try:
            return json.loads(lock.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    return None


def test_a_second_run_on_one_directory_fails_at_once_and_a_waiting_one_pays_nothing_twice(tmp_path):
    released = threading.Event()

    def slow_until_released(request):
        released.wait(timeout=120)  # the first run holds the directory until the test releases it
        return chat_reply(answer())

    with StubServer(responder=slow_until_released) as server:
        config = study(tmp_path, server.url)
        first, waiting = modsab_process("run", config), None
        try:
            pid = holder_pid(tmp_path / "run" / LOCK_FILE, time.monotonic() + 60)
            assert pid == first.pid
            started = time.monotonic()
            second = modsab_process("run", config)
            _, err = second.communicate(timeout=60)
            assert second.returncode == 2, err
            assert f"pid {first.pid}" in err and "modsab run" in err and "--wait" in err
            assert time.monotonic() - started < 30  # at once: it did not wait for the first
            assert first.poll() is None, "the first run ended before the second was refused"
            waiting = modsab_process("run", config, "--wait")
            lines: list[str] = []
            reader = threading.Thread(target=lambda: lines.extend(waiting.stderr), daemon=True)
            reader.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any("waiting for modsab run" in line for line in lines):
                time.sleep(0.05)
            assert any(f"waiting for modsab run (pid {first.pid}" in line for line in lines), lines
            assert first.poll() is None and waiting.poll() is None  # it blocks on the lock
            released.set()
            _, err = first.communicate(timeout=120)
            assert first.returncode == 0, err
            waiting.wait(timeout=120)
            reader.join(10)
            assert waiting.returncode == 0, "".join(lines)
        finally:
            for process in (first, waiting):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()
        assert len(server.requests) == N  # every prompt sent once


def test_agents_run_on_a_held_run_directory_fails_naming_the_holder(tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"instance_id": "a", "transcript": "hello", "gold": "joy"}) + "\n")
    with StubServer() as server, RunLock(tmp_path / "run", command="modsab run"):
        try:
            main(["agents", "run", str(rows), "--run", str(tmp_path / "run"), "--base-url", server.url,
                  "--model", "stub", "--agents", "text", "--no-cache", "--no-progress"])
            code = 0
        except SystemExit as done:
            code = done.code
        assert server.requests == []
    err = capsys.readouterr().err
    assert code == 2 and f"modsab run (pid {os.getpid()}" in err and "--wait" in err


def test_agents_run_with_wait_starts_when_the_holder_ends(tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"instance_id": "a", "transcript": "hello", "gold": "joy"}) + "\n")
    lock = RunLock(tmp_path / "run", command="modsab run").__enter__()
    timer = threading.Timer(1.0, lock.__exit__, args=(None, None, None))
    with StubServer() as server:
        timer.start()
        started = time.monotonic()
        try:
            main(["agents", "run", str(rows), "--run", str(tmp_path / "run"), "--base-url", server.url,
                  "--model", "stub", "--agents", "text", "--no-cache", "--no-progress", "--wait"])
            code = 0
        except SystemExit as done:
            code = done.code
        timer.join()
    assert code == 0 and time.monotonic() - started >= 0.9
    assert "waiting for modsab run" in capsys.readouterr().err
    assert len(server.requests) == 1
