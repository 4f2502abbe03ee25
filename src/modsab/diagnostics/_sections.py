"""Typed sections of the diagnostics beyond the paper, one model per top-level key of
``diagnosis.json``: :class:`CausalSection`, :class:`ShapleySection`,
:class:`CalibrationSection`, :class:`FusionCompareSection`, :class:`TauSweepSection`.

Each describes exactly what its diagnostic writes today (README, "JSON keys"), with its
sub-models next to it; the blocks below are independent of each other. Dynamic keys
(agent, pair, group, strategy names) are ``dict[str, Model]``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import GetJsonSchemaHandler, SerializerFunctionWrapHandler, model_serializer, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema as cs

from modsab.core.typed import Interval, Model, absent

# -- causal ---------------------------------------------------------------------------------------


class CausalDisagreement(Model):
    """Instances where the agent is a successful saboteur by the paper's rule, a causal one, or both."""

    both: int
    paper_only: int
    causal_only: int


class CausalAgent(Model):
    """``causal.agents.<a>``: rates over the instances the agent answered."""

    n: int
    causal_sabotage_rate: float | None
    causal_contribution_rate: float | None
    paper_successful_sabotage_rate: float | None
    causal_given_paper: float | None
    disagreement: CausalDisagreement


class CausalPair(Model):
    """``causal.pairs.<a+b>``: pairwise removal, counts and rates over all instances."""

    jointly_causal: int
    only_jointly: int
    jointly_causal_rate: float | None
    only_jointly_rate: float | None


class CausalSection(Model):
    """``causal``: leave-one-out (and leave-two-out) counterfactual sabotage. ``ci`` is keyed
    ``agents.<a>.<rate>`` and ``pairs.<a+b>.<rate>``; empty without bootstrap."""

    n_instances: int
    agents: dict[str, CausalAgent]
    pairs: dict[str, CausalPair]
    ci: dict[str, Interval]


# -- shapley --------------------------------------------------------------------------------------


class ShapleyMean(Model):
    """Mean Shapley value per instance, with its interval (null mean: no instance)."""

    mean: float | None
    ci: Interval


class ShapleyAgent(Model):
    """``shapley.groups.<g>.agents.<a>``: one mean per coalition value (``shapley.values``)."""

    correct: ShapleyMean
    gold_probability: ShapleyMean

    def value(self, name: str) -> ShapleyMean:
        """The mean for a name of ``shapley.values``."""
        return getattr(self, name)


class ShapleyGroup(Model):
    """``shapley.groups.<all or dataset>``; the agents' means sum to ``total_<value>``."""

    n_instances: int
    agents: dict[str, ShapleyAgent]
    total_correct: float | None
    total_gold_probability: float | None


class ShapleySection(Model):
    """``shapley``: exact Shapley value of each fused agent, per group of instances."""

    values: list[str]
    groups: dict[str, ShapleyGroup]


# -- calibration ----------------------------------------------------------------------------------


class ReliabilityBins(Model):
    """One reliability diagram: bin edges, and per bin the count, mean confidence and
    accuracy (null in an empty bin)."""

    edges: list[float]
    count: list[int]
    confidence: list[float | None]
    accuracy: list[float | None]


class Reliability(Model):
    equal_width: ReliabilityBins
    equal_mass: ReliabilityBins


class CalibrationFigures(Model):
    """``calibration.groups.<g>.<a>`` (and each ``recalibrated.<method>``): the agent's
    top-label figures. With no answer (``n`` 0) only ``n`` is there; ``quality_auroc``
    only when the answers carry quality; ``candidate_nll`` and ``reliability`` not after
    recalibration; ``recalibrated`` under ``all`` only. A figure that cannot be computed
    is null."""

    n: int
    ece: float | None = absent(nullable=True)
    mce: float | None = absent(nullable=True)
    ece_equal_mass: float | None = absent(nullable=True)
    brier: float | None = absent(nullable=True)
    top_nll: float | None = absent(nullable=True)
    accuracy: float | None = absent(nullable=True)
    mean_confidence: float | None = absent(nullable=True)
    confidence_auroc: float | None = absent(nullable=True)
    quality_auroc: float | None = absent(nullable=True)
    candidate_nll: float | None = absent(nullable=True)
    reliability: Reliability | None = absent()
    #: Keyed by figure name.
    ci: dict[str, Interval] | None = absent()
    #: Held-out figures after each recalibration method (``temperature``, ``isotonic``).
    recalibrated: dict[str, CalibrationFigures] | None = absent()


class CalibrationSection(Model):
    """``calibration``: per group (``all`` and each dataset) and agent, raw and recalibrated
    figures. ``temperatures.<a>``: the fitted temperature of each fold."""

    bins: int
    n_folds: int
    split: str
    temperatures: dict[str, list[float]]
    groups: dict[str, dict[str, CalibrationFigures]]


# -- fusion_compare -------------------------------------------------------------------------------

#: The figures of a strategy: ``top1``..``top<k>``, then the two sabotage shares.
FIGURE = re.compile(r"top[1-9][0-9]*|successful_sabotage|causal_sabotage")
REQUIRED_FIGURES = ("top1", "successful_sabotage", "causal_sabotage")


class FusionStrategy(Model):
    """``fusion_compare.strategies.<name>``. In the JSON the figures (``fusion_compare.figures``:
    ``top1``..``top<k>``, ``successful_sabotage``, ``causal_sabotage``) are keys of the
    object itself, beside ``ci``, ``diff`` and ``diff_ci``; here they are :attr:`rates`.
    ``diff`` (strategy - baseline) and ``diff_ci`` are absent for the baseline."""

    rates: dict[str, float]
    ci: dict[str, Interval]
    diff: dict[str, float] | None = absent()
    diff_ci: dict[str, Interval] | None = absent()

    @model_validator(mode="before")
    @classmethod
    def _gather_rates(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rates" not in data:
            data = dict(data)
            data["rates"] = {key: data.pop(key) for key in list(data) if FIGURE.fullmatch(key)}
        return data

    @model_validator(mode="after")
    def _every_strategy_has(self) -> FusionStrategy:
        missing = [figure for figure in REQUIRED_FIGURES if figure not in self.rates]
        if missing:
            raise ValueError(f"figure(s) {', '.join(missing)} missing")
        return self

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler: SerializerFunctionWrapHandler) -> Any:  # and flatten the rates
        data = handler(self)
        if isinstance(data, dict):
            data = {**data.pop("rates"), **data}
            for key in self.absent_keys - self.model_fields_set:
                data.pop(key, None)
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: cs.CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        reference = handler(schema)
        described = handler.resolve_ref_schema(reference)
        rate = described["properties"].pop("rates")["additionalProperties"]
        described["properties"] = {**dict.fromkeys(REQUIRED_FIGURES, rate), **described["properties"]}
        described["patternProperties"] = {"^top[1-9][0-9]*$": rate}
        described["required"] = [*REQUIRED_FIGURES, "ci"]
        return reference


class FusionCompareSection(Model):
    """``fusion_compare``: strategies side by side over all instances. ``skipped.<name>``:
    why a strategy was left out."""

    baseline: str
    figures: list[str]
    n_instances: int
    n_folds: int
    strategies: dict[str, FusionStrategy]
    skipped: dict[str, str]


# -- tau_sweep ------------------------------------------------------------------------------------


class TauIntervals(Model):
    potential_sabotage_rate: Interval
    successful_sabotage_rate: Interval
    successful_sabotage_share: Interval


class TauAgent(Model):
    """``tau_sweep.points[].agents.<a>``: the agent's rates (over answered) and share at one tau."""

    potential_sabotage_rate: float | None
    successful_sabotage_rate: float | None
    successful_sabotage_share: float | None
    ci: TauIntervals


class RoleChanges(Model):
    """``changed_from_previous``: (instance, agent) pairs and instances whose role changed
    since the previous tau, and pairs per agent."""

    pairs: int
    instances: int
    per_agent: dict[str, int]


class TauPoint(Model):
    """One tau of the sweep; ``changed_from_previous`` absent at the first."""

    tau: float
    agents: dict[str, TauAgent]
    changed_from_previous: RoleChanges | None = absent()


class TauSweepSection(Model):
    """``tau_sweep``: the audit at each tau of ``grid`` (ascending)."""

    grid: list[float]
    points: list[TauPoint]
