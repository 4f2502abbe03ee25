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

#: Most instances the static page embeds. A larger run carries a seeded sample of this
#: many (in dataset order) and says so above the instance browser, so report.html stays a
#: few MB however large the run; ``modsab view RUN_DIR`` browses every instance.
REPORT_INSTANCE_LIMIT = 20_000
#: Seed of that sample: the same run gives the same page.
SAMPLE_SEED = 0


def sample_rows(n: int, limit: int | None = None, seed: int = SAMPLE_SEED) -> np.ndarray | None:
    """Rows the page embeds: None (all of them) up to ``limit`` instances, else a seeded
    uniform sample of ``limit`` rows in dataset order."""
    limit = REPORT_INSTANCE_LIMIT if limit is None else limit
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def sample_note(instances: dict[str, Any]) -> str:
    """The visible note of a sampled page ("" when every instance is in it)."""
    sample = instances.get("sample")
    if not sample:
        return ""
    return (
        f'<p class="note" id="ib-sample">Showing {sample["shown"]:,} of {sample["of"]:,} instances, sampled '
        f"(seed {sample['seed']}); use <code>modsab view</code> on the run directory for all.</p>"
    )


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


def instance_data(diagnosis: Diagnosis, rows: np.ndarray | None = None) -> dict[str, Any]:
    """The browser's columns for every instance, or for ``rows`` only (a sample; see
    :func:`sample_rows`), then with ``sample: {shown, of, seed}``."""
    ps = diagnosis.pset

    def take(values: np.ndarray) -> np.ndarray:
        return values if rows is None else values[rows]

    n_labels = len(ps.labels)
    scores, candidate, fused = take(ps.scores), take(ps.candidate), take(diagnosis.fused)
    # each agent's candidates, named ones first, by confidence (ties: label-set order)
    key = np.where(candidate, scores, -1.0)
    order = np.argsort(-key, axis=2, kind="stable")
    named = np.take_along_axis(candidate, order, axis=2)
    confidence = _compact(np.take_along_axis(scores, order, axis=2) * 100)
    cand_label, cand_conf, cand_offset = _ragged(order, named, confidence)

    fused_order, length = ranking(fused)
    total = fused.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(total > 0, fused / np.where(total > 0, total, 1), 0.0)
    p_sorted = np.rint(np.take_along_axis(p, fused_order, axis=1) * 1000).astype(np.int64)
    in_ranking = np.arange(n_labels)[None, :] < length[:, None]
    fused_label, fused_p, fused_offset = _ragged(fused_order, in_ranking, p_sorted)

    quality = _compact(take(ps.quality) * 100)
    ids = [str(i) for i in take(ps.instance_ids).tolist()]
    datasets: list[str] = []
    ds: list[int] = []
    if ps.dataset is not None:
        datasets, codes = np.unique(take(ps.dataset).astype(str), return_inverse=True)
        datasets, ds = datasets.tolist(), codes.tolist()
    rank = np.where(take(diagnosis.rank) < n_labels, take(diagnosis.rank) + 1, 0)
    data: dict[str, Any] = {
        "labels": list(ps.labels),
        "agents": list(ps.agents),
        "roles": ROLE_NAMES.tolist(),
        "datasets": datasets,
        "id": ids,
        "ds": ds,
        "gold": take(ps.gold).tolist(),
        "pred": np.where(length > 0, take(diagnosis.fused_top), -1).tolist(),
        "rank": rank.tolist(),
        "role": take(diagnosis.role).ravel().tolist(),
        "quality": quality.ravel().tolist(),
        "cand_label": cand_label,
        "cand_conf": cand_conf,
        "cand_offset": cand_offset,
        "fused_label": fused_label,
        "fused_p": fused_p,
        "fused_offset": fused_offset,
    }
    if rows is not None:
        data["sample"] = {"shown": len(rows), "of": ps.n_instances, "seed": SAMPLE_SEED}
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


#: The instance browser's filter controls, shared by the report and ``modsab view`` (one markup:
#: the same filters under the same element ids; the report filters in the page, the viewer asks
#: its server).
FILTER_CONTROLS = """<label>role<select id="f-role"><option value="">any</option>
<option value="successful_sabotage">successful sabotage</option>
<option value="potential_any">potential sabotage (incl. successful)</option>
<option value="contributor">contributor</option><option value="wrong">wrong (below tau)</option>
<option value="abstained">abstained</option></select></label>
<label>agent<select id="f-agent"><option value="">any agent</option></select></label>
<label>gold<select id="f-gold"><option value="">any</option></select></label>
<label>predicted (fused top-1)<select id="f-pred"><option value="">any</option></select></label>
<label id="f-dataset-wrap">dataset<select id="f-dataset"><option value="">any</option></select></label>
<label>instance id<input id="f-id" type="search" placeholder="contains"></label>
"""
