"""Rates, shares and their bootstrap intervals, from counts.

Every figure modsab reports is a ratio of counts over instances (hits, contributors,
saboteurs, answers). So each instance is reduced to a *pattern*: its fused-rank
bucket and every agent's :class:`~modsab.audit.Role`. A run of a million instances
has at most a few thousand distinct patterns. Resampling instances with replacement
is exactly a multinomial draw over the pattern counts, so a percentile bootstrap of
1,000 resamples costs one ``[B, patterns] @ [patterns, counts]`` product, not a
thousand passes over the data; and counts from batches add up (mergeable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modsab.audit import Role


@dataclass(frozen=True)
class Layout:
    """What a count vector holds: ``k`` hit counts, then 4 counts per agent, then ``n``."""

    agents: tuple[str, ...]
    fused: tuple[bool, ...]
    k: int

    @property
    def width(self) -> int:
        return self.k + 4 * len(self.agents) + 1

    def hits(self, counts: np.ndarray) -> np.ndarray:
        return counts[..., : self.k]

    def agent(self, counts: np.ndarray, m: int) -> tuple[np.ndarray, ...]:
        """``(answered, contributor, potential, successful)`` counts of agent m."""
        base = self.k + 4 * m
        return tuple(counts[..., base + i] for i in range(4))

    def total(self, counts: np.ndarray) -> np.ndarray:
        return counts[..., -1]


def indicators(rank: np.ndarray, role: np.ndarray, layout: Layout) -> np.ndarray:
    """``[rows, width]`` count contributions of each row (an instance or a pattern)."""
    rows = rank.shape[0]
    out = np.zeros((rows, layout.width), dtype=np.int64)
    out[:, : layout.k] = rank[:, None] < np.arange(1, layout.k + 1)[None, :]
    for m in range(len(layout.agents)):
        base = layout.k + 4 * m
        out[:, base] = role[:, m] != Role.ABSTAINED
        out[:, base + 1] = role[:, m] == Role.CONTRIBUTOR
        out[:, base + 2] = role[:, m] >= Role.POTENTIAL_SABOTAGE
        out[:, base + 3] = role[:, m] == Role.SUCCESSFUL_SABOTAGE
    out[:, -1] = 1
    return out


def patterns(rank: np.ndarray, role: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pattern_rank, pattern_role, pattern_count)``: the distinct rows and how often."""
    n_roles = len(Role)
    m = role.shape[1]
    top_rank = int(rank.max(initial=0)) + 1
    space = top_rank * n_roles**m
    if space > 2**62:  # very many agents: sort rows instead of coding them
        stacked = np.column_stack([rank.astype(np.int64), role.astype(np.int64)])
        unique, counts = np.unique(stacked, axis=0, return_counts=True)
        return unique[:, 0], unique[:, 1:].astype(np.int8), counts
    code = rank.astype(np.int64)
    scale = top_rank
    for j in range(m):
        code += scale * role[:, j].astype(np.int64)
        scale *= n_roles
    if space <= 1 << 24:  # a histogram is O(n), no sort
        counts = np.bincount(code, minlength=space)
        codes = np.flatnonzero(counts)
        counts = counts[codes]
    else:
        codes, counts = np.unique(code, return_counts=True)
    p_rank = codes % top_rank
    rest = codes // top_rank
    p_role = np.empty((codes.size, m), dtype=np.int8)
    for j in range(m):
        p_role[:, j] = rest % n_roles
        rest //= n_roles
    return p_rank, p_role, counts


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def rates(counts: np.ndarray, layout: Layout, *, baseline: int | None = None) -> dict[str, np.ndarray]:
    """Every reported figure from a count vector (or a ``[B, width]`` stack of them).

    Keys are the dotted JSON paths (``fusion_topk.1``, ``agents.audio.top1``...) so the
    same names index the point estimates and the confidence intervals.
    """
    total = layout.total(counts)
    out: dict[str, np.ndarray] = {}
    hits = layout.hits(counts)
    for k in range(layout.k):
        out[f"fusion_topk.{k + 1}"] = _ratio(hits[..., k], total)
    per_agent = [layout.agent(counts, m) for m in range(len(layout.agents))]
    fused_sum = [sum(per_agent[m][i] for m in range(len(layout.agents)) if layout.fused[m]) for i in (1, 2, 3)]
    for m, name in enumerate(layout.agents):
        answered, contributor, potential, successful = per_agent[m]
        prefix = f"agents.{name}."
        out[prefix + "top1"] = _ratio(contributor, answered)
        out[prefix + "contributor_rate"] = out[prefix + "top1"]
        out[prefix + "potential_sabotage_rate"] = _ratio(potential, answered)
        out[prefix + "successful_sabotage_rate"] = _ratio(successful, answered)
        out[prefix + "success_given_potential"] = _ratio(successful, potential)
        if layout.fused[m]:
            out[prefix + "contributor_share"] = _ratio(contributor, fused_sum[0])
            out[prefix + "potential_sabotage_share"] = _ratio(potential, fused_sum[1])
            out[prefix + "successful_sabotage_share"] = _ratio(successful, fused_sum[2])
    if baseline is not None:
        out["baseline_top1"] = _ratio(per_agent[baseline][1], total)
    return out


def bootstrap_counts(
    pattern_counts: np.ndarray,
    pattern_indicators: np.ndarray,
    *,
    resamples: int,
    seed: int | None,
) -> np.ndarray:
    """``[resamples, width]`` count vectors of instance-level bootstrap resamples."""
    n = int(pattern_counts.sum())
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, pattern_counts / n, size=resamples)
    return draws @ pattern_indicators


def percentile_intervals(samples: dict[str, np.ndarray], *, level: float = 0.95) -> dict[str, list[float | None]]:
    """Percentile interval of each bootstrap distribution (NaN resamples ignored)."""
    tail = (1 - level) / 2 * 100
    out: dict[str, list[float | None]] = {}
    for key, values in samples.items():
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            out[key] = [None, None]
            continue
        low, high = np.percentile(finite, [tail, 100 - tail])
        out[key] = [float(low), float(high)]
    return out


def label_breakdown(
    role: np.ndarray, top: np.ndarray, gold: np.ndarray, labels: Sequence[str], agents: Sequence[str]
) -> dict[str, dict[str, dict[str, int]]]:
    """Per agent: successful sabotage counts by gold label and by the label it pushed."""
    k = len(labels)
    out: dict[str, dict[str, dict[str, int]]] = {}
    for m, name in enumerate(agents):
        hit = role[:, m] == Role.SUCCESSFUL_SABOTAGE
        by_gold = np.bincount(gold[hit], minlength=k)
        pushed = np.bincount(top[hit, m], minlength=k)
        potential = role[:, m] >= Role.POTENTIAL_SABOTAGE
        out[name] = {
            "successful_by_gold": dict(zip(labels, by_gold.tolist(), strict=True)),
            "successful_by_pushed_label": dict(zip(labels, pushed.tolist(), strict=True)),
            "potential_by_gold": dict(zip(labels, np.bincount(gold[potential], minlength=k).tolist(), strict=True)),
        }
    return out
