"""Run configuration: validated, errors name the key, paths resolve against the file."""

from __future__ import annotations

import tomllib

import pytest

from modsab.contract.errors import InputError
from modsab.run.config import load_config

GOOD = """
[run]
dir = "runs/x"

[dataset]
loader = "ravdess"
path = "clips"
limit = 10

[[agents]]
name = "audio"
kind = "probe"
features = "audio"

[[agents]]
name = "text"
kind = "llm"
model = "local"
reads = ["transcript"]

[fusion]
weights = "uniform"
baseline = "text"
"""


def write(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_good_config_resolves_paths(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.dataset.path == tmp_path / "clips"
    assert config.run.dir == tmp_path / "runs/x"
    assert [a.name for a in config.agents] == ["audio", "text"]
    assert config.audit.tau == 0.70 and config.outputs.json_file == "diagnosis.json"
    again = tomllib.loads(config.to_toml())
    assert again["dataset"]["limit"] == 10 and again["agents"][1]["reads"] == ["transcript"]


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (('kind = "probe"', 'kind = "oracle"'), "agents[0].kind", "Input should be"),
        (("limit = 10", "limit = 0"), "dataset.limit", "greater than or equal"),
        (("limit = 10", "limt = 10"), "dataset.limt", "unknown key"),
        (('baseline = "text"', 'baseline = "tav"'), "", "unknown agent 'tav'"),
        (('features = "audio"', ""), "agents[0]", "needs 'features'"),
        (('path = "clips"', ""), "dataset.path", "missing key"),
        (('baseline = "text"', 'baseline = "text"\n[audit]\ndiagnostics = ["causes"]'), "audit.diagnostics[0]",
         "Input should be 'causal'"),
        (('baseline = "text"', 'baseline = "text"\n[audit]\ndiagnostics = "every"'), "audit.diagnostics", 'or "all"'),
    ],
)
def test_errors_name_the_key(tmp_path, change, key, message):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(InputError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_invalid_toml(tmp_path):
    with pytest.raises(InputError, match="invalid TOML"):
        load_config(write(tmp_path, "[dataset\n"))


def test_narrowing(tmp_path):
    config = load_config(write(tmp_path, GOOD)).narrowed(limit=3, agents=["audio"])
    assert config.dataset.limit == 3 and [a.name for a in config.agents] == ["audio"]
    assert config.fusion.baseline is None
    with pytest.raises(InputError, match="unknown agent 'video'"):
        load_config(write(tmp_path, GOOD)).narrowed(agents=["video"])


def test_absolute_paths_are_kept(tmp_path):
    text = GOOD.replace('dir = "runs/x"', f'dir = "{tmp_path / "abs"}"\ncache_dir = "{tmp_path / "c"}"')
    text += f'\n[[agents]]\nname = "base"\nkind = "precomputed"\npath = "{tmp_path / "p.jsonl"}"\n'
    config = load_config(write(tmp_path, text))
    assert config.run.dir == tmp_path / "abs" and config.run.cache_dir == tmp_path / "c"
    assert config.agents[-1].path == tmp_path / "p.jsonl"
