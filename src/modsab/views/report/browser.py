"""The instance browser's data: every instance as compact columns for the page's script.

Columnar, label names as indices, ragged lists flattened with offsets, so 20,000
instances with four agents stay a few MB and the script filters typed arrays
without building an object per instance. Keys (the script in ``assets/report.js``
reads them):

``labels agents roles datasets`` vocabularies; ``id ds gold pred rank`` per instance
(-1 / 0 = none); ``role quality`` per (instance, agent), row-major; ``cand_label
cand_conf cand_offset`` each agent's ranked candidates (confidence 0-100);
``fused_label fused_p fused_offset`` the fused ranking with normalised scores.

Descriptors and raw answers are most of the bytes of a real run (hundreds of
characters per agent and instance) and are only read when a row is opened, so
:func:`text_data` packs them apart, gzip-compressed and base64-encoded
(``DecompressionStream`` unpacks them in the browser): 20,000 instances with raw
answers stay far below 25 MB.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import numpy as np

from modsab.core.audit import ROLE_NAMES
from modsab.core.diagnosis import Diagnosis
from modsab.core.fusion import ranking


def _ragged(order: np.ndarray, keep: np.ndarray, values: np.ndarray) -> tuple[list, list, list]:
    """Flatten rows of ``order`` where ``keep`` (a prefix per row) into (labels, values, offsets)."""
    counts = keep.reshape(-1, keep.shape[-1]).sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return order[keep].tolist(), values[keep].tolist(), offsets.tolist()


def _compact(values: np.ndarray) -> np.ndarray:
    """Values rounded to 0.1 (integers when all of them are whole) as an object array, NaN as None."""
    values = np.round(values, 1)
    finite = np.isfinite(values)
    out = np.full(values.shape, None, dtype=object)
    whole = np.array_equal(values[finite], np.round(values[finite]))
    out[finite] = (values[finite].astype(np.int64) if whole else values[finite]).tolist()
    return out


def instance_data(diagnosis: Diagnosis) -> dict[str, Any]:
    ps = diagnosis.pset
    n_labels = len(ps.labels)
    # each agent's candidates, named ones first, by confidence (ties: label-set order)
    key = np.where(ps.candidate, ps.scores, -1.0)
    order = np.argsort(-key, axis=2, kind="stable")
    named = np.take_along_axis(ps.candidate, order, axis=2)
    confidence = _compact(np.take_along_axis(ps.scores, order, axis=2) * 100)
    cand_label, cand_conf, cand_offset = _ragged(order, named, confidence)

    fused_order, length = ranking(diagnosis.fused)
    total = diagnosis.fused.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(total > 0, diagnosis.fused / np.where(total > 0, total, 1), 0.0)
    p_sorted = np.rint(np.take_along_axis(p, fused_order, axis=1) * 1000).astype(np.int64)
    in_ranking = np.arange(n_labels)[None, :] < length[:, None]
    fused_label, fused_p, fused_offset = _ragged(fused_order, in_ranking, p_sorted)

    quality = _compact(ps.quality * 100)
    ids = [str(i) for i in ps.instance_ids.tolist()]
    datasets: list[str] = []
    ds: list[int] = []
    if ps.dataset is not None:
        datasets, codes = np.unique(ps.dataset.astype(str), return_inverse=True)
        datasets, ds = datasets.tolist(), codes.tolist()
    rank = np.where(diagnosis.rank < n_labels, diagnosis.rank + 1, 0)
    data: dict[str, Any] = {
        "labels": list(ps.labels),
        "agents": list(ps.agents),
        "roles": ROLE_NAMES.tolist(),
        "datasets": datasets,
        "id": ids,
        "ds": ds,
        "gold": ps.gold.tolist(),
        "pred": np.where(length > 0, diagnosis.fused_top, -1).tolist(),
        "rank": rank.tolist(),
        "role": diagnosis.role.ravel().tolist(),
        "quality": quality.ravel().tolist(),
        "cand_label": cand_label,
        "cand_conf": cand_conf,
        "cand_offset": cand_offset,
        "fused_label": fused_label,
        "fused_p": fused_p,
        "fused_offset": fused_offset,
    }
    return data


def text_data(
    instance_ids: np.ndarray,
    *,
    descriptors: dict[str, dict[str, str]] | None = None,
    raw_answers: dict[str, dict[str, str]] | None = None,
) -> str | None:
    """``{"descriptors": {row: {field: text}}, "raw": {row: {agent: text}}}`` as gzip+base64
    (only instances of this run; None when there is no text at all)."""
    data: dict[str, Any] = {}
    ids = [str(i) for i in instance_ids.tolist()]
    for name, source in (("descriptors", descriptors), ("raw", raw_answers)):
        if source:
            rows = {str(row): source[i] for row, i in enumerate(ids) if i in source}
            if rows:
                data[name] = rows
    if not data:
        return None
    packed = gzip.compress(
        json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), compresslevel=6, mtime=0
    )
    return base64.b64encode(packed).decode("ascii")


def json_for_script(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` survive
    (so ``</script>`` and ``<!--`` in the data cannot end the block), nor U+2028/9."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text
