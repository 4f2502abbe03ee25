"""``diagnosis.json`` as typed models: :class:`DiagnosisResult` and the foundation summary.

:meth:`modsab.core.diagnosis.Diagnosis.result` builds a :class:`DiagnosisResult`;
``Diagnosis.to_dict()`` is its ``model_dump(mode="json")``, the JSON that ``modsab diagnose
--json`` prints and ``modsab run`` writes. The keys are the README's ("JSON keys");
:data:`SCHEMA_VERSION` is the first key and changes with them (the minor number when keys
are added, the major one when a key changes meaning or goes). ``modsab schema diagnosis``
prints :meth:`DiagnosisResult.model_json_schema`.

The sections of the diagnostics beyond the paper are in
:mod:`modsab.diagnostics._sections`, one model per section.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import Field, create_model

from modsab.core.typed import Interval, Model, absent

#: Version of the diagnosis JSON's keys (``schema_version``, its first key).
SCHEMA_VERSION = "1.1"

#: Top-level keys of the diagnostics' sections, in JSON order.


class AgentSummary(Model):
    """``agents.<name>``: one agent's counts and rates (rates over the instances it answered,
    shares over the fused agents'; null when there is nothing to divide by)."""

    n: int
    abstained: int
    missing_records: int
    invalid_labels: int
    contributors: int
    potential_sabotage: int
    successful_sabotage: int
    fused: bool
    top1: float | None
    contributor_rate: float | None
    potential_sabotage_rate: float | None
    successful_sabotage_rate: float | None
    success_given_potential: float | None
    contributor_share: float | None
    potential_sabotage_share: float | None
    successful_sabotage_share: float | None


class LabelBreakdown(Model):
    """``sabotage_by_label.<agent>``: counts per label (every label of the set, in its order)."""

    successful_by_gold: dict[str, int]
    successful_by_pushed_label: dict[str, int]
    potential_by_gold: dict[str, int]


class Summary(Model):
    """The figures of one group of instances: the top level (all instances) and each
    ``by_dataset.<name>``. ``ci`` is keyed by the figure's dotted path
    (``fusion_topk.1``, ``agents.audio.top1``, ``baseline_top1``); empty without bootstrap."""

    n_instances: int
    labels: list[str]
    tau: float
    weights: str
    fused_agents: list[str]
    baseline: str | None
    baseline_top1: float | None
    #: ``"1"`` .. ``"<k>"``: share of instances whose gold label is in the fused top-k.
    fusion_topk: dict[str, float | None]
    agents: dict[str, AgentSummary]
    ci: dict[str, Interval]
    sabotage_by_label: dict[str, LabelBreakdown]


class Bootstrap(Model):
    """``bootstrap``: how the intervals were drawn (``resamples`` 0: no intervals)."""

    resamples: int
    seed: int | None
    level: float


class Skipped(Model):
    """``skipped[]``: a record left out under ``--skip-invalid``."""

    where: str
    reason: str


class RunInfo(Model):
    """``run``: added by ``modsab run`` to the diagnosis.json it writes (the config file, the
    dataset loader, each agent's kind; the task when the config names one)."""

    config: str | None
    dataset: str
    agents: dict[str, str]
    task: str | None = absent()


class Finding(Model):
    """``findings[]``: one sentence of what the audit concluded, with the figures it quotes
    and the section that supports it. Computed from the typed result by
    :func:`modsab.diagnostics.findings.findings` (the rules are stated there).

    ``kind`` names the rule (``paper_saboteur``, ``causal_saboteur``, ``saboteur_rules``,
    ``fusion_vs_best_agent``, ``best_strategy``, ``quality_predicts_failure``,
    ``quality_placebo``, ``worst_calibrated``, ``tau_cliff``); ``figures`` holds each number
    the sentence quotes under its dotted path (an interval under the same path plus
    ``.ci``); ``section`` is the JSON key of the evidence (``agents``, ``fusion_topk``,
    ``causal``, ``calibration``, ``fusion_compare``, ``tau_sweep``)."""

    kind: str
    text: str
    figures: dict[str, float | list[float | None] | None]
    section: str


class Versioned(Model):
    """The first key of a versioned file."""

    schema_version: str = Field(description=f"version of these keys, {SCHEMA_VERSION!r} here")


class DiagnosisFields(Summary, Versioned):
    """The diagnosis JSON without the diagnostics' sections: ``schema_version``, the summary
    of all instances (the :class:`Summary` fields), the run's facts and ``by_dataset`` (when
    the predictions name datasets). (Fields come base first, in reverse MRO order:
    :class:`Versioned`, then :class:`Summary`, then these.)"""

    # -- the run --
    source: str
    label_source: str
    scale: str
    k: int
    bootstrap: Bootstrap
    n_without_gold: int
    invalid_labels: dict[str, int]
    invalid_label_examples: dict[str, list[str]]
    skipped: list[Skipped]
    n_skipped: int
    by_dataset: dict[str, Summary] | None = absent()

    def groups(self) -> list[tuple[str, Summary]]:
        """``[("all", self), (dataset, its summary)...]``."""
        return [("all", self), *(self.by_dataset or {}).items()]


def result_model() -> type[DiagnosisFields]:
    """The whole diagnosis JSON's model: :class:`DiagnosisFields`, one optional section per
    registered diagnostic (its own model, :attr:`~modsab.diagnostics._base.Diagnostic.section`,
    absent when it was not run), then ``findings`` (what the audit concluded, read off those
    sections: :class:`Finding`), then ``run`` (written by ``modsab run``). Built from the
    registry, so a diagnostic added later is part of the schema without an edit here."""
    from modsab.registry import diagnostics

    return _model(tuple((name, entry.section) for name, entry in diagnostics.items()))


@functools.lru_cache(maxsize=8)
def _model(sections: tuple[tuple[str, type | None], ...]) -> type[DiagnosisFields]:
    """The model for these (name, section model) pairs; a pure function of them, so its
    result may be kept (building a model costs milliseconds)."""
    fields: dict[str, Any] = {
        name: ((model if model is not None else dict[str, Any]) | None, absent()) for name, model in sections
    }
    fields["findings"] = (list[Finding] | None, absent())
    fields["run"] = (RunInfo | None, absent())
    return create_model("DiagnosisResult", __base__=DiagnosisFields, __doc__=DiagnosisFields.__doc__, **fields)


#: The model of today's registry (for the schema command, the views and type hints).
DiagnosisResult = result_model()
