"""Every optimised diagnostic equals its plain reference on every point figure.

Parametrised over the registries, so a diagnostic or fusion rule registered later is held to
the same standard without anyone adding it here: a diagnostic without a reference fails.
Sets are tie-heavy (confidences on a coarse grid), with abstentions, missing self-reported
quality and several datasets. Half of them also carry models' answers under conditions
(ties, invalid answers, missing conditions and records, several datasets, instances the
agents do not have), so every diagnostic runs beside them and the automatic ``ablation``
one is held to its reference, on model-only sets too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from modsab.contract.ablation import AblationSet
from modsab.contract.predictions import PredictionSet
from modsab.core.diagnosis import diagnose
from modsab.core.recalibration import crossfit, crossfit_reference
from modsab.registry import diagnostics

LABELS = ("neutral", "joy", "surprise", "anger")
AGENTS = ("text", "audio", "vision")


@st.composite
def messy_sets(draw, min_n=2):
    n = draw(st.integers(min_n, 40))
    conf = draw(arrays(np.int64, (n, 3, len(LABELS)), elements=st.sampled_from([0, 0, 10, 30, 50, 70, 100])))
    gold = draw(arrays(np.int64, n, elements=st.integers(0, len(LABELS) - 1)))
    quality = draw(arrays(np.float64, (n, 3), elements=st.sampled_from([0.1, 0.5, 1.0, np.nan])))
    dataset = draw(arrays(np.int64, n, elements=st.integers(0, 2)))
    return PredictionSet.from_arrays(
        conf / 100,
        gold,
        labels=LABELS,
        agents=AGENTS,
        quality=quality,
        dataset=[f"ds{v}" for v in dataset],
    )


CONDITIONS = ("without:text", "without:audio", "shuffled:text", "only:audio", "shuffled:vision")


@st.composite
def ablation_sets(draw, n_agents_instances: int):
    """Models' answers: 1-2 models, each with full and a subset of CONDITIONS (some models
    lack a full record or a condition for some instances), over instances partly shared with
    the agents' ("0".."n-1") and partly their own."""
    n = draw(st.integers(1, 30))
    first = draw(st.integers(0, max(n_agents_instances - 1, 0)))
    ids = [str(first + i) for i in range(n)]  # overlaps the agents' instances, may run past them
    columns = []
    for model in draw(st.sampled_from([("e2e",), ("e2e", "late")])):
        kept = draw(st.lists(st.sampled_from(CONDITIONS), min_size=1, max_size=4, unique=True))
        columns += [(model, "full"), *((model, c) for c in kept)]
    c = len(columns)
    conf = draw(arrays(np.int64, (n, c, len(LABELS)), elements=st.sampled_from([0, 0, 0, 20, 50, 50, 90])))
    present = draw(arrays(np.bool_, (n, c), elements=st.sampled_from([True, True, True, False])))
    conf[~present] = 0
    gold = draw(arrays(np.int64, n, elements=st.integers(0, len(LABELS) - 1)))
    dataset = draw(arrays(np.int64, n, elements=st.integers(0, 2)))
    return AblationSet.from_arrays(
        conf / 100, gold, labels=LABELS, columns=columns, present=present, instance_ids=ids,
        dataset=[f"ds{v}" for v in dataset],
    )


@st.composite
def sets_with_models(draw):
    """A messy set with an ablation part; one in four has no agent at all (model records only)."""
    if draw(st.integers(0, 3)) == 0:
        ablation = draw(ablation_sets(1))
        n = ablation.n_instances
        pset = PredictionSet.from_arrays(
            np.zeros((n, 0, len(LABELS))), ablation.gold, labels=LABELS, agents=(),
            instance_ids=ablation.instance_ids, dataset=ablation.dataset,
        )
    else:
        pset = draw(messy_sets())
        ablation = draw(ablation_sets(pset.n_instances))
    pset.ablation = ablation
    return pset


def assert_figures_equal(reference, fast, path="") -> None:
    """Every leaf of ``reference`` is in ``fast`` and equal (integers exactly, floats to 1e-9)."""
    if isinstance(reference, dict):
        assert isinstance(fast, dict), path
        for key, value in reference.items():
            assert key in fast, f"{path}.{key} missing from the fast section"
            assert_figures_equal(value, fast[key], f"{path}.{key}")
    elif isinstance(reference, list):
        assert isinstance(fast, list) and len(fast) == len(reference), path
        for i, (a, b) in enumerate(zip(reference, fast, strict=True)):
            assert_figures_equal(a, b, f"{path}[{i}]")
    elif isinstance(reference, float) and reference is not None:
        assert fast is not None and math.isclose(reference, fast, rel_tol=0, abs_tol=1e-9), (path, reference, fast)
    else:
        assert reference == fast, (path, reference, fast)


@pytest.mark.parametrize("name", diagnostics.names())
@pytest.mark.parametrize("weights", ["uniform", "agreement"])
@given(pset=st.one_of(messy_sets(), sets_with_models()))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_registered_diagnostic_equals_its_plain_reference(name, weights, pset):
    entry = diagnostics.get(name)
    assert entry.reference is not None, f"diagnostic '{name}' registers no plain reference"
    applies = entry.applies is None or entry.applies(diagnose(pset, bootstrap=0, diagnostics=[]))
    if (entry.needs_agents and not pset.agents) or not applies:
        return  # refused for this set (tested where the refusal is); the other sets run it
    d = diagnose(pset, weights=weights, bootstrap=0, diagnostics=[] if entry.automatic else [name], n_folds=2)
    assert_figures_equal(entry.reference(d, folds=2), d.to_dict()[name], name)
    if pset.ablation is not None:  # the models never reach the fusion: the same section without them
        pset.ablation = None
        if pset.agents and not entry.automatic:
            alone = diagnose(pset, weights=weights, bootstrap=0, diagnostics=[name], n_folds=2)
            assert_figures_equal(entry.reference(alone, folds=2), d.to_dict()[name], name)


@pytest.mark.parametrize("method", ["temperature", "isotonic"])
@given(pset=messy_sets(min_n=6), off_grid=st.booleans())
@settings(max_examples=40, deadline=None)
def test_crossfit_recalibration_equals_the_plain_fold_loop(method, pset, off_grid):
    if off_grid:  # continuous confidences take the general path, not the percent tables
        pset.scores = np.where(pset.scores > 0, np.clip(pset.scores - 0.00123, 0.001, 1), 0)
    fast = crossfit(pset, range(3), method, n_folds=3, seed=4)[0]
    np.testing.assert_allclose(fast, crossfit_reference(pset, range(3), method, n_folds=3, seed=4), rtol=0, atol=1e-9)


def test_a_diagnostic_reference_catches_a_wrong_figure():
    """The comparison is not vacuous: a changed figure is reported."""
    with pytest.raises(AssertionError):
        assert_figures_equal({"a": {"b": 0.5}}, {"a": {"b": 0.5000001}})
    with pytest.raises(AssertionError):
        assert_figures_equal({"a": 1}, {"b": 1})
