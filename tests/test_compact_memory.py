"""What a large set is held as, beside the one-byte scores, gives back the originals (issue 15.3).

The reader keeps the instance ids as one Arrow string array and the quality as one-byte
codes until they are first read; ``diagnose`` keeps a uniform rule's fused scores only as
the top label and gold rank it reduced them to (``Diagnosis.fused`` fuses again when read);
``--all`` looks the recalibrated scores up a block at a time (``TableScores``), fuses
coalitions from blocks of decoded codes (``BlockContributions``) and copies the codes, not
floats, label-major. Each is checked against the dense float64 computation it stands for
(the reader with grid codes switched off, as ``test_compact_scores`` does), bit for bit, and
the CLI's ``diagnose --all --json`` / ``--instances`` bytes on messy sets are the same.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from test_compact_scores import assert_compact_equals_dense, dense_floats
from test_order_invariance import LABELS, prediction_files, write

from modsab.contract import compact, grid
from modsab.contract.predictions import load_predictions
from modsab.core import fusion
from modsab.core.context import Context
from modsab.core.diagnosis import diagnose
from modsab.core.recalibration import TableScores, crossfit, crossfit_store
from modsab.data import synth
from modsab.diagnostics.attribution import BlockContributions, Coalitions
from modsab.diagnostics.fusion_compare import _label_major


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """A set over more than one block of 65,536 rows, in three datasets."""
    folder = tmp_path_factory.mktemp("synthetic")
    config = synth.SynthConfig(n_instances=70_000, n_datasets=3, seed=5)
    pset, planted = synth.generate(config)
    synth.write(pset, planted, folder, config)
    return next(folder.glob("predictions.*"))


def dense(path: Path, **options):
    """The set as the reader of before held it: every number float64."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(grid, "encode", dense_floats)
        return load_predictions(path, **options)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_ids_and_quality_stay_compact_until_read_and_decode_to_the_originals(synthetic):
    pset, reference = load_predictions(synthetic), dense(synthetic)
    assert isinstance(pset.id_store, pa.Array) and isinstance(pset.quality_store, compact.CompactScores)
    assert isinstance(reference.quality_store, np.ndarray)
    rows = np.flatnonzero(np.arange(pset.n_instances) % 3 == 1)
    part = pset.subset(rows)  # taken as held: nothing decoded
    assert isinstance(part.id_store, pa.Array) and isinstance(part.quality_store, compact.CompactScores)
    ordered = pset.with_agent_order(list(reversed(pset.agents)))
    assert isinstance(ordered.quality_store, compact.CompactScores)
    assert same_bits(pset.quality, reference.quality)  # NaN where NaN, bit for bit
    assert pset.instance_ids.dtype == object and pset.instance_ids.tolist() == reference.instance_ids.tolist()
    assert pset.instance_ids.tolist() == sorted(set(pset.instance_ids.tolist()))
    assert part.instance_ids.tolist() == reference.instance_ids[rows].tolist()
    assert same_bits(part.quality, reference.quality[rows])
    assert same_bits(ordered.quality, reference.quality[:, ::-1])


def test_the_foundation_audit_keeps_ids_quality_and_uniform_fusion_compact(synthetic):
    result = diagnose(synthetic, bootstrap=10)
    assert isinstance(result.pset.id_store, pa.Array)
    assert isinstance(result.pset.quality_store, compact.CompactScores)
    assert result._fused is None  # reduced to top label and rank per block, not kept
    reference = diagnose(dense(synthetic), bootstrap=10)
    assert isinstance(reference.pset.score_store, np.ndarray)
    fused = result.fused  # fused again on this first read
    assert same_bits(fused, reference.fused)
    assert same_bits(fused, fusion.FusionRule().fuse(dense(synthetic), range(len(result.pset.agents))))
    assert same_bits(result.fused_top, fusion.top_label(fused))
    assert same_bits(result.rank, fusion.gold_rank(fused, result.pset.gold))
    assert result.to_dict() == reference.to_dict()


def test_a_weighted_rule_keeps_its_fused_scores(synthetic):
    result = diagnose(synthetic, bootstrap=0, weights="quality")
    assert result._fused is not None
    assert same_bits(result.fused, diagnose(dense(synthetic), bootstrap=0, weights="quality").fused)


@pytest.mark.parametrize("method", ["temperature", "isotonic"])
def test_recalibrated_scores_looked_up_per_block_are_the_dense_ones(synthetic, method):
    pset, reference = load_predictions(synthetic), dense(synthetic)
    agents = list(range(len(pset.agents)))
    for chosen in (agents, agents[1:]):
        store, _ = crossfit_store(pset, chosen, method)
        assert isinstance(store, TableScores)
        whole, _ = crossfit(reference, chosen, method)
        assert same_bits(store.decode(), whole)
        assert same_bits(store[slice(1000, 70_000)], whole[1000:70_000])
    assert isinstance(pset.score_store, compact.CompactScores)  # the codes were never decoded whole


def test_coalitions_and_the_label_major_copy_from_codes_are_the_dense_ones(synthetic):
    pset, reference = Context(load_predictions(synthetic)), Context(dense(synthetic))
    agents = [0, 2, 3]
    for rule in (fusion.FusionRule(), fusion.rule("quality")):
        blocks = Coalitions.from_rule(pset, rule, agents)
        plain = Coalitions.from_rule(reference, rule, agents)
        assert isinstance(blocks.contrib, BlockContributions) and isinstance(plain.contrib, np.ndarray)
        assert blocks.contrib.shape == plain.contrib.shape
        assert same_bits(blocks.contrib[slice(5, 66_000)], plain.contrib[5:66_000])
        masks = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=np.int8)
        for mine, theirs in zip(blocks.rows(masks), plain.rows(masks), strict=True):
            assert all(same_bits(a, b) for a, b in zip(mine, theirs, strict=True))
        assert same_bits(blocks.fused_top(), plain.fused_top())
    codes, floats = _label_major(pset, agents), _label_major(reference, agents)
    assert isinstance(codes, compact.CompactScores)
    assert same_bits(codes.decode(), floats)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prediction_files())
def test_messy_sets_give_the_bytes_of_the_dense_set_with_every_diagnostic(records):
    with tempfile.TemporaryDirectory() as folder:
        path = write(records, Path(folder), "jsonl")
        assert_compact_equals_dense(path, LABELS, "--all", "--bootstrap", "10", "--skip-invalid")
