"""The pattern bootstrap of the foundation figures against its plain reference.

Two checks, because the fast path resamples *patterns* (a multinomial over distinct
(fused rank, roles) rows) and the reference resamples *instances*:

- exactly: for any weighting of the instances (a resample), the counts the fast path forms
  from patterns (the instances' weights summed per pattern, times the pattern's indicators)
  equal the plain per-instance loop; so the grouping into patterns loses nothing;
- in distribution: with many resamples the fast intervals and the textbook ones (indices
  drawn with replacement) agree within Monte-Carlo error.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from modsab.core.audit import Role
from modsab.stats import metrics

AGENTS = ("text", "audio", "vision")


def layout(k: int = 3) -> metrics.Layout:
    return metrics.Layout(agents=AGENTS, fused=(True, True, False), k=k)


@st.composite
def audits(draw):
    """Fused ranks and roles of a tie-heavy audit: few distinct rows, abstentions common."""
    n = draw(st.integers(1, 60))
    rank = draw(arrays(np.int64, n, elements=st.sampled_from([0, 0, 1, 2, 6])))
    role = draw(arrays(np.int8, (n, len(AGENTS)), elements=st.sampled_from([int(r) for r in Role] + [0])))
    return rank, role


@settings(max_examples=80, deadline=None)
@given(audits(), st.integers(0, 2**31))
def test_pattern_counts_equal_the_plain_loop_for_any_resample(audit, seed):
    rank, role = audit
    lay = layout()
    p_rank, p_role, p_count = metrics.patterns(rank, role)
    assert int(p_count.sum()) == rank.shape[0]
    index = {(int(r), *map(int, roles)): p for p, (r, roles) in enumerate(zip(p_rank, p_role, strict=True))}
    pattern_of = np.array([index[(int(r), *map(int, roles))] for r, roles in zip(rank, role, strict=True)])
    indicators = metrics.indicators(p_rank, p_role, lay)
    rng = np.random.default_rng(seed)
    n = rank.shape[0]
    for weight in (np.ones(n, dtype=np.int64), rng.multinomial(n, np.full(n, 1 / n)), rng.integers(0, 4, n)):
        per_pattern = np.bincount(pattern_of, weights=weight, minlength=p_count.size).astype(np.int64)
        np.testing.assert_array_equal(per_pattern @ indicators, metrics.counts_reference(rank, role, lay, weight))
    # and the figures of the point estimate
    point = metrics.rates(p_count @ indicators, lay, baseline=1)
    plain = metrics.rates(metrics.counts_reference(rank, role, lay, np.ones(n, dtype=np.int64)), lay, baseline=1)
    assert point.keys() == plain.keys()
    for key in point:
        np.testing.assert_array_equal(point[key], plain[key])


def test_pattern_bootstrap_intervals_agree_with_the_textbook_bootstrap():
    rng = np.random.default_rng(7)
    n = 400
    rank = rng.choice([0, 1, 2, 5], size=n, p=[0.55, 0.2, 0.15, 0.1])
    role = rng.choice([int(r) for r in Role], size=(n, len(AGENTS)), p=[0.1, 0.5, 0.2, 0.1, 0.1]).astype(np.int8)
    lay = layout()
    p_rank, p_role, p_count = metrics.patterns(rank, role)
    indicators = metrics.indicators(p_rank, p_role, lay)
    resamples = 3000
    fast = metrics.percentile_intervals(
        metrics.rates(metrics.bootstrap_counts(p_count, indicators, resamples=resamples, seed=1), lay, baseline=0)
    )
    plain = metrics.bootstrap_reference(rank, role, lay, resamples=resamples, seed=2, baseline=0)
    assert fast.keys() == plain.keys()
    checked = 0
    for key in fast:
        if plain[key][0] is None:
            assert fast[key] == [None, None], key
            continue
        # a 2.5% quantile of a rate over 400 instances moves by ~0.006 between 3,000-draw runs
        assert abs(fast[key][0] - plain[key][0]) < 0.02, (key, fast[key], plain[key])
        assert abs(fast[key][1] - plain[key][1]) < 0.02, (key, fast[key], plain[key])
        checked += 1
    assert checked >= 20
