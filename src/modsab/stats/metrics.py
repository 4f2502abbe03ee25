"""Rates, shares and their bootstrap intervals, from counts.

Every figure modsab reports is a ratio of counts over instances (hits, contributors,
saboteurs, answers). So each instance is reduced to a *pattern*: its fused-rank
bucket and every agent's :class:`~modsab.core.audit.Role`. A run of a million instances
has at most a few thousand distinct patterns. Resampling instances with replacement
is exactly a multinomial draw over the pattern counts, so a percentile bootstrap of
1,000 resamples costs one ``[B, patterns] @ [patterns, counts]`` product, not a
thousand passes over the data; and counts from batches add up (mergeable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modsab.core.audit import Role


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
    draws = resample_counts(pattern_counts, resamples=resamples, seed=seed)
    # a float product (BLAS) is exact for counts below 2^53 and far faster than an integer one
    return np.rint(draws.astype(np.float64) @ pattern_indicators.astype(np.float64)).astype(np.int64)


def resample_counts(pattern_counts: np.ndarray, *, resamples: int, seed: int | None) -> np.ndarray:
    """``[resamples, patterns]``: how often each pattern occurs in each bootstrap resample."""
    n = int(pattern_counts.sum())
    return np.random.default_rng(seed).multinomial(n, pattern_counts / n, size=resamples)


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


# -- generic resampling for the diagnostics beyond the paper ------------------------------


def row_patterns(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(distinct_rows, counts)`` of an integer matrix ``[n, F]``.

    Resampling instances with replacement is a multinomial draw over these counts, so
    every diagnostic whose figures are sums of per-instance integers bootstraps in one
    ``[B, patterns] @ [patterns, F]`` product (see the module docstring).
    """
    rows = np.asarray(rows, dtype=np.int64)
    low = rows.min(axis=0, initial=0)
    span = rows.max(axis=0, initial=0) - low + 1
    size = float(np.prod(span.astype(np.float64)))
    if size < 2.0**62:
        radix = np.concatenate([[1], np.cumprod(span[:-1])]).astype(np.int64)
        code = (rows - low) @ radix
        if size <= max(1 << 22, 4 * rows.shape[0]):  # small code space: count in O(n), no sort
            tally = np.bincount(code, minlength=int(size))
            present = np.flatnonzero(tally)
            return (present[:, None] // radix[None, :]) % span[None, :] + low[None, :], tally[present]
        _, first, counts = np.unique(code, return_index=True, return_counts=True)
        return rows[first], counts
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    return unique, counts


def ratio_intervals(
    columns: dict[str, np.ndarray],
    ratios: dict[str, tuple[str, str]],
    *,
    differences: dict[str, tuple[str, str]] | None = None,
    resamples: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
) -> tuple[dict[str, float | None], dict[str, list[float | None]]]:
    """Point estimates and percentile intervals of ratios of per-instance counts.

    ``columns`` maps a name to an integer ``[n]`` array (one value per instance);
    ``ratios`` maps a figure to ``(numerator column, denominator column)``;
    ``differences`` maps a figure to ``(ratio a, ratio b)``, and its interval is the
    *paired* bootstrap of ``a - b`` (both from the same resampled instances).
    """
    names = list(columns)
    unique, counts = row_patterns(np.column_stack([columns[c] for c in names]))
    where = {name: i for i, name in enumerate(names)}

    def figures(sums: np.ndarray) -> dict[str, np.ndarray]:
        out = {key: _ratio(sums[..., where[a]], sums[..., where[b]]) for key, (a, b) in ratios.items()}
        for key, (a, b) in (differences or {}).items():
            out[key] = out[a] - out[b]
        return out

    point = {key: _nan_to_none(float(v)) for key, v in figures(counts @ unique).items()}
    ci: dict[str, list[float | None]] = {}
    if resamples:
        draws = bootstrap_counts(counts, unique, resamples=resamples, seed=seed)
        ci = percentile_intervals(figures(draws), level=level)
    return point, ci


def mean_interval(
    values: np.ndarray, *, resamples: int = 1000, seed: int | None = 0, level: float = 0.95, max_cells: int = 512
) -> tuple[float | None, list[float | None]]:
    """Mean of a real ``[n]`` array with a percentile bootstrap interval.

    For the resampling only, values are put on a grid of at most ``max_cells`` steps
    and the interval is shifted by the grid's rounding of the mean; the bootstrap is
    then a multinomial over distinct grid values, whatever ``n``. The point is exact.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, [None, None]
    point = float(values.mean())
    if not resamples:
        return point, [None, None]
    low, high = float(values.min()), float(values.max())
    step = (high - low) / (max_cells - 1) if high > low else 1.0
    cells = np.round((values - low) / step)
    unique, counts = row_patterns(cells[:, None])
    draws = resample_counts(counts, resamples=resamples, seed=seed) @ (unique[:, 0] * step + low) / values.size
    shift = point - float(counts @ (unique[:, 0] * step + low)) / values.size
    return point, percentile_intervals({"mean": draws + shift}, level=level)["mean"]


def _nan_to_none(value: float) -> float | None:
    return None if np.isnan(value) else value


# -- packed codes: distinct rows of a few small columns without an [n, F] int64 copy ---------


def _code_dtype(size: int) -> np.dtype:
    """The smallest unsigned integer type holding every code below ``size``."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if size <= int(np.iinfo(dtype).max) + 1:
            return np.dtype(dtype)
    raise ValueError(f"a code space of {size} does not fit 64 bits")


def pack_columns(columns: Sequence[np.ndarray], spans: Sequence[int]) -> np.ndarray:
    """One integer per instance for ``F`` small non-negative integer (or boolean) ``[n]``
    columns, column f below ``spans[f]``: ``code = sum_f column_f * prod(spans[:f])``
    (for booleans, with spans of 2, the bits of the code). The code space
    ``prod(spans)`` must fit 64 bits; the code takes the smallest unsigned type that holds it."""
    size = 1
    for span in spans:
        size *= int(span)
    dtype = _code_dtype(size)
    code = np.zeros(np.shape(columns[0])[0], dtype=dtype)
    radix = 1
    for column, span in zip(columns, spans, strict=True):
        part = np.asarray(column).astype(dtype)
        if radix > 1:
            part *= dtype.type(radix)
        code += part
        radix *= int(span)
    return code


def code_counts(code: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(distinct codes, counts)`` of codes below ``size``: a histogram when the code
    space is small (O(n), no sort), else a sort."""
    if code.dtype != np.uint64 and size <= max(1 << 22, 4 * code.size):
        tally = np.bincount(code, minlength=size)
        present = np.flatnonzero(tally)
        return present, tally[present]
    return np.unique(code, return_counts=True)


def column_patterns(columns: Sequence[np.ndarray], spans: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(distinct_rows[P, F], counts)`` of ``F`` small non-negative integer ``[n]`` columns,
    column f below ``spans[f]``: as :func:`row_patterns` of their ``column_stack``, but each
    row is packed into one small integer (:func:`pack_columns`) and counted, with no
    ``[n, F]`` int64 copy. Rows come in increasing code order."""
    size = 1
    for span in spans:
        size *= int(span)
    if size > 1 << 64:
        return row_patterns(np.column_stack(columns))
    codes, counts = code_counts(pack_columns(columns, spans), size)
    rows = np.empty((codes.size, len(spans)), dtype=np.int64)
    rest = codes.astype(np.uint64)
    for f, span in enumerate(spans):
        rows[:, f] = (rest % np.uint64(span)).astype(np.int64)
        rest //= np.uint64(span)
    return rows, counts


def draw_counts(pattern_counts: np.ndarray, *, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``[resamples, patterns]`` bootstrap resamples of the instances behind ``pattern_counts``
    (a multinomial, as :func:`resample_counts`), drawn from ``rng``: several groups of figures
    resampled one after another from one generator get independent draws."""
    pattern_counts = np.asarray(pattern_counts)
    n = int(pattern_counts.sum())
    if n == 0:
        return np.zeros((resamples, pattern_counts.size), dtype=np.int64)
    return rng.multinomial(n, pattern_counts / n, size=resamples)


def percentile_columns(samples: np.ndarray, *, level: float = 0.95) -> list[list[float | None]]:
    """:func:`percentile_intervals` of each column of ``samples[B, K]`` (NaN resamples
    ignored), with one vectorised percentile over the columns that are all finite."""
    tail = (1 - level) / 2 * 100
    samples = np.asarray(samples, dtype=np.float64)
    finite = np.isfinite(samples)
    out: list[list[float | None]] = [[None, None] for _ in range(samples.shape[1])]
    full = np.flatnonzero(finite.all(axis=0)) if samples.shape[0] else np.zeros(0, dtype=np.int64)
    if full.size:
        low, high = np.percentile(samples[:, full], [tail, 100 - tail], axis=0)
        for i, column in enumerate(full.tolist()):
            out[column] = [float(low[i]), float(high[i])]
    for column in np.flatnonzero(~finite.all(axis=0) & finite.any(axis=0)).tolist():
        values = samples[finite[:, column], column]
        low, high = np.percentile(values, [tail, 100 - tail])
        out[column] = [float(low), float(high)]
    return out


def pattern_ratio_intervals(
    counts: np.ndarray,
    ratios: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    resamples: int,
    rng: np.random.Generator,
    level: float = 0.95,
) -> tuple[dict[str, float | None], dict[str, list[float | None]]]:
    """As :func:`ratio_intervals`, from distinct patterns already counted: ``ratios`` maps a
    figure to ``(numerator, denominator)``, each a ``[patterns]`` array of per-instance
    values; the resamples (one multinomial shared by these figures) are drawn from ``rng``."""
    names = list(ratios)
    counts = np.asarray(counts)
    numerators = np.column_stack([ratios[key][0] for key in names]).astype(np.float64)
    denominators = np.column_stack([ratios[key][1] for key in names]).astype(np.float64)
    values = _ratio(counts @ numerators, counts @ denominators)  # exact: integer sums below 2^53
    point = {key: _nan_to_none(float(value)) for key, value in zip(names, values, strict=True)}
    ci: dict[str, list[float | None]] = {}
    if resamples:
        draws = draw_counts(counts, resamples=resamples, rng=rng).astype(np.float64)
        samples = _ratio(draws @ numerators, draws @ denominators)
        ci = dict(zip(names, percentile_columns(samples, level=level), strict=True))
    return point, ci


# -- plain references of the pattern bootstrap -------------------------------------------


def instance_rows_reference(rank: np.ndarray, role: np.ndarray, layout: Layout) -> np.ndarray:
    """``[n, width]``: what each instance adds to the count vector, as a loop over instances and
    the definitions (hit at k: fused rank below k; answered: not abstained; potential: potential
    or successful sabotage; one instance)."""
    out = np.zeros((rank.shape[0], layout.width), dtype=np.int64)
    for i in range(rank.shape[0]):
        for k in range(layout.k):
            out[i, k] = int(rank[i] < k + 1)
        for m in range(len(layout.agents)):
            r = Role(int(role[i, m]))
            base = layout.k + 4 * m
            out[i, base] = int(r is not Role.ABSTAINED)
            out[i, base + 1] = int(r is Role.CONTRIBUTOR)
            out[i, base + 2] = int(r in (Role.POTENTIAL_SABOTAGE, Role.SUCCESSFUL_SABOTAGE))
            out[i, base + 3] = int(r is Role.SUCCESSFUL_SABOTAGE)
        out[i, -1] = 1
    return out


def counts_reference(rank: np.ndarray, role: np.ndarray, layout: Layout, weight: np.ndarray) -> np.ndarray:
    """The count vector of the instances taken ``weight[i]`` times each (a bootstrap resample
    is such a weighting): the weighted sum of :func:`instance_rows_reference`."""
    return np.asarray(weight, dtype=np.int64) @ instance_rows_reference(rank, role, layout)


def bootstrap_reference(
    rank: np.ndarray,
    role: np.ndarray,
    layout: Layout,
    *,
    resamples: int,
    seed: int | None,
    baseline: int | None = None,
    level: float = 0.95,
) -> dict[str, list[float | None]]:
    """The percentile bootstrap of every figure as textbooks state it: draw ``n`` instance
    indices with replacement, count, compute the rates; repeat. The fast path (a multinomial
    over patterns, :func:`bootstrap_counts`) has the same distribution but other draws, so the
    two agree within Monte-Carlo error, not bit for bit."""
    n = rank.shape[0]
    rows = instance_rows_reference(rank, role, layout)
    rng = np.random.default_rng(seed)
    stack = np.empty((resamples, layout.width), dtype=np.int64)
    for b in range(resamples):
        stack[b] = rows[rng.integers(0, n, size=n)].sum(axis=0)
    return percentile_intervals(rates(stack, layout, baseline=baseline), level=level)
