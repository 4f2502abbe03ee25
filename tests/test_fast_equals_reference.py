"""Every optimised diagnostic equals its plain reference on every point figure.

Parametrised over the registries, so a diagnostic or fusion rule registered later is held to
the same standard without anyone adding it here: a diagnostic without a reference fails.
Sets are tie-heavy (confidences on a coarse grid), with abstentions, missing self-reported
quality and several datasets.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

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
@given(pset=messy_sets())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_registered_diagnostic_equals_its_plain_reference(name, weights, pset):
    entry = diagnostics.get(name)
    assert entry.reference is not None, f"diagnostic '{name}' registers no plain reference"
    d = diagnose(pset, weights=weights, bootstrap=0, diagnostics=[name], n_folds=2)
    assert_figures_equal(entry.reference(d, folds=2), d.to_dict()[name], name)


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
