import json

import pytest
from typer.testing import CliRunner

from modsab.agents.testing import StubServer
from modsab.cli import app, main
from modsab.contract.records import PredictionRecord


def descriptors(tmp_path, n=3):
    path = tmp_path / "d.jsonl"
    rows = [
        {
            "instance_id": f"u{i}",
            "gold": "joy",
            "transcript": f"line {i}",
            "audio_description": f"loud, {i} pauses",
            "face_units": [f"AU{10 + i}"],
            "face_description": "smiling" if i else "",
            "dataset": "demo",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_agents_run_then_cache_commands(tmp_path):
    runner = CliRunner()
    cache = str(tmp_path / "cache")
    with StubServer() as server:
        args = [
            "agents",
            "run",
            str(descriptors(tmp_path)),
            "--labels",
            "meld",
            "--model",
            "stub",
            "--base-url",
            server.url,
            "--run",
            str(tmp_path / "run"),
            "--cache-dir",
            cache,
            "--no-progress",
        ]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "12 answered" in result.output and len(server.requests) == 12
        again = runner.invoke(app, args)
        assert "0 requests" in again.output and len(server.requests) == 12
    lines = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    records = [PredictionRecord.model_validate_json(line) for line in lines]
    assert {(r.agent, r.dataset) for r in records} == {
        (a, "demo") for a in ("text", "audio", "vision", "tav")
    }
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["fields"]["vision"] == [
        "visual_expression_description",
        "face_units",
        "visual_objective_description",
        "face_description",
    ]
    listing = runner.invoke(app, ["cache", "ls", "--cache-dir", cache])
    assert "stub" in listing.output
    stats = runner.invoke(app, ["cache", "stats", "--cache-dir", cache])
    assert "entries 12" in stats.output
    cleared = runner.invoke(app, ["cache", "clear", "--cache-dir", cache, "--yes"])
    assert "removed 12" in cleared.output


def test_bad_input_exits_2_without_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["agents", "run", str(tmp_path / "missing.jsonl"), "--run", str(tmp_path / "r")])
    assert done.value.code == 2
    assert "file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(
            [
                "agents",
                "run",
                str(descriptors(tmp_path)),
                "--model",
                "gpt-4o-mini",
                "--run",
                str(tmp_path / "r"),
            ]
        )
    assert done.value.code == 2
    assert "needs --base-url" in capsys.readouterr().err


def test_budget_stop_exits_3(tmp_path):
    with StubServer() as server:
        result = CliRunner().invoke(
            app,
            [
                "agents",
                "run",
                str(descriptors(tmp_path)),
                "--model",
                "stub",
                "--base-url",
                server.url,
                "--run",
                str(tmp_path / "run"),
                "--no-cache",
                "--no-progress",
                "--max-tokens",
                "700",
                "--concurrency",
                "1",
            ],
        )
    assert result.exit_code == 3 and "budget reached" in result.output
