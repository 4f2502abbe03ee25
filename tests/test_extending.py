"""The README's "Extending modsab" examples work as written: one file each, nothing else edited.

The code blocks are read from the README and run as the new module would be; the registries
are restored afterwards. Then the addition must show up everywhere the registry feeds:
``--weights``, the fusion comparison, the ``--<diagnostic>`` flag, ``diagnose(...)`` keywords,
the run config and the JSON.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modsab import registry
from modsab.core.diagnosis import diagnose
from modsab.data.synth import SynthConfig, generate

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_block(heading_start: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Extending modsab") :]
    at = section.index(heading_start)
    return re.search(r"```python\n(.*?)```", section[at:], re.S).group(1)


@pytest.fixture
def clean_registries(monkeypatch):
    for which in (registry.fusion_rules, registry.diagnostics):
        which.names()  # discover first, then work on copies
        monkeypatch.setattr(which, "_entries", dict(which._entries))
        monkeypatch.setattr(which, "_order", dict(which._order))


def test_a_fusion_rule_in_one_file_reaches_weights_and_the_comparison(clean_registries, tmp_path):
    exec(compile(_readme_block("A fusion rule"), "trimmed.py", "exec"), {})
    assert "trimmed" in registry.fusion_rules.names()
    pset, _ = generate(SynthConfig(n_instances=300, seed=2))
    d = diagnose(pset, weights="trimmed", bootstrap=0, fusion_compare=True)
    assert d.options.weights == "trimmed"
    assert "trimmed" in d.to_dict()["fusion_compare"]["strategies"]
    # the rule really fuses differently from uniform
    uniform = diagnose(pset, bootstrap=0)
    assert d.to_dict()["fusion_topk"] != uniform.to_dict()["fusion_topk"]


def test_a_diagnostic_in_one_file_reaches_the_cli_the_api_and_the_json(clean_registries, tmp_path):
    exec(compile(_readme_block("A diagnostic"), "agreement_rate.py", "exec"), {})
    pset, _ = generate(SynthConfig(n_instances=200, seed=3))
    section = diagnose(pset, bootstrap=0, agreement_rate=True).to_dict()["agreement_rate"]
    assert 0 <= section["all_agree"] <= 1
    demo = Path(__file__).resolve().parents[1] / "src" / "modsab" / "data" / "demo_predictions.jsonl"
    app = _app()
    assert "--agreement-rate" in CliRunner().invoke(app, ["diagnose", "--help"]).output
    result = CliRunner().invoke(app, ["diagnose", str(demo), "--labels", "meld", "--agreement-rate", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["agreement_rate"]["all_agree"] >= 0


def _app():
    import typer

    from modsab.cli import diagnose as diagnose_cli

    app = typer.Typer()
    diagnose_cli.register(app)
    return app


def test_an_unknown_name_lists_the_registered_ones():
    from modsab.contract.errors import InputError

    with pytest.raises(InputError) as error:
        diagnose(generate(SynthConfig(n_instances=20))[0], weights="nope")
    for name in registry.fusion_rules.names():
        assert name in str(error.value)
    with pytest.raises(InputError) as error:
        diagnose(generate(SynthConfig(n_instances=20))[0], diagnostics=["nope"])
    for name in registry.diagnostics.names():
        assert name in str(error.value)
    assert json.dumps(registry.diagnostics.names())  # plain names, JSON-able
