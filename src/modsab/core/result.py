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

from pydantic import Field

from modsab.core.typed import Interval, Model, absent
from modsab.diagnostics._sections import (
    CalibrationSection,
    CausalSection,
    FusionCompareSection,
    ShapleySection,
    TauSweepSection,
)

#: Version of the diagnosis JSON's keys (``schema_version``, its first key).
SCHEMA_VERSION = "1.0"

#: Top-level keys of the diagnostics' sections, in JSON order.
SECTIONS = ("causal", "shapley", "calibration", "fusion_compare", "tau_sweep")


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
    dataset loader, each agent's kind)."""

    config: str | None
    dataset: str
    agents: dict[str, str]


class Versioned(Model):
    """The first key of a versioned file."""

    schema_version: str = Field(description=f"version of these keys, {SCHEMA_VERSION!r} here")


class DiagnosisResult(Summary, Versioned):
    """The whole diagnosis JSON: ``schema_version``, the summary of all instances (the
    :class:`Summary` fields), the run's facts, ``by_dataset`` (when the predictions name
    datasets), one section per diagnostic that was run (absent otherwise) and, in a run
    directory's diagnosis.json, ``run``. (Fields come base first, in reverse MRO order:
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
    # -- the diagnostics beyond the paper --
    causal: CausalSection | None = absent()
    shapley: ShapleySection | None = absent()
    calibration: CalibrationSection | None = absent()
    fusion_compare: FusionCompareSection | None = absent()
    tau_sweep: TauSweepSection | None = absent()
    # -- written by ``modsab run`` --
    run: RunInfo | None = absent()

    def groups(self) -> list[tuple[str, Summary]]:
        """``[("all", self), (dataset, its summary)...]``."""
        return [("all", self), *(self.by_dataset or {}).items()]
