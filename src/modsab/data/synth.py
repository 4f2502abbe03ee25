"""Synthetic predictions with planted saboteurs: known truth for the detectors.

Each agent m has a latent probability ``c`` of being right, drawn around its set
accuracy; it is right with probability ``c`` (so ``c`` is calibrated) and reports
``sigmoid(overconfidence * logit(c))`` as its top confidence (``overconfidence > 1``:
overconfident, as temperature scaling should find). Each answer also lists up to two
lower-ranked labels. On a known random subset of instances, the chosen saboteur agent
is *planted*: it names one wrong label with confidence 0.90-0.99 and a high quality
self-report. In the ``clear`` scenario the other agents are right but unsure on that
subset (confidence 0.15-0.30), so the planted answer always flips the fusion and
removing it always restores the gold label; in ``mixed`` they answer as usual, so a
planted answer flips the fusion only sometimes.

Everything is drawn with vectorised numpy from one seeded generator.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from modsab.contract.errors import InputError
from modsab.contract.labels import LabelSet
from modsab.contract.predictions import PredictionSet
from modsab.core.fusion import FusionRule
from modsab.diagnostics.attribution import Attribution, Coalitions, PaperRule
from modsab.diagnostics.causal import LeaveOneOut
from modsab.diagnostics.shapley import Shapley
from modsab.stats import metrics

SCENARIOS = ("clear", "mixed")
MELD_LABELS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


@dataclass(frozen=True)
class SynthConfig:
    """What to generate; every field is a ``modsab synth`` option."""

    n_instances: int = 2000
    agents: tuple[str, ...] = ("text", "audio", "vision", "joint")
    accuracy: tuple[float, ...] = (0.75, 0.60, 0.55, 0.70)
    labels: tuple[str, ...] = MELD_LABELS
    saboteur: str = "audio"
    sabotage_rate: float = 0.15
    scenario: str = "clear"
    overconfidence: float = 1.0
    n_datasets: int = 1
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.accuracy) != len(self.agents):
            raise InputError(f"{len(self.accuracy)} accuracies for {len(self.agents)} agents", hint="one per agent")
        if self.saboteur not in self.agents:
            raise InputError(f"saboteur '{self.saboteur}' is not an agent", hint=", ".join(self.agents))
        if self.scenario not in SCENARIOS:
            raise InputError(f"unknown scenario '{self.scenario}'", hint=" or ".join(SCENARIOS))
        if not 0 <= self.sabotage_rate <= 1 or self.n_instances < 1 or len(self.labels) < 3:
            raise InputError("need 0 <= sabotage rate <= 1, at least 1 instance and 3 labels")


def prediction_set(
    scores: np.ndarray,
    gold: np.ndarray,
    *,
    agents: tuple[str, ...] | None = None,
    labels: tuple[str, ...] | None = None,
    quality: np.ndarray | None = None,
    dataset: np.ndarray | None = None,
    source: str = "<synthetic>",
) -> PredictionSet:
    """A :class:`PredictionSet` straight from arrays (confidences in [0, 1]; a label is a
    candidate where its score is above 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    n, m, k = scores.shape
    return PredictionSet(
        instance_ids=np.asarray([f"i{i}" for i in range(n)], dtype=object),
        agents=agents or tuple(f"agent{j}" for j in range(m)),
        labels=LabelSet(labels or tuple(f"label{j}" for j in range(k)), source="synthetic"),
        scores=scores,
        candidate=scores > 0,
        quality=np.full((n, m), np.nan) if quality is None else np.asarray(quality, dtype=np.float64),
        gold=np.asarray(gold, dtype=np.int64),
        present=np.ones((n, m), dtype=bool),
        dataset=dataset,
        source=source,
        scale="unit",
    )


def _percent(values: np.ndarray) -> np.ndarray:
    """Integer percent in [1, 100] back on the unit scale, as real agents answer."""
    return np.clip(np.round(values * 100), 1, 100) / 100


def generate(config: SynthConfig) -> tuple[PredictionSet, np.ndarray]:
    """``(predictions, planted[n, m])``: the set and which (instance, agent) were planted."""
    rng = np.random.default_rng(config.seed)
    n, m, k = config.n_instances, len(config.agents), len(config.labels)
    rows = np.arange(n)[:, None]
    gold = rng.integers(0, k, n)
    accuracy = np.asarray(config.accuracy)[None, :]
    latent = np.clip(accuracy + rng.uniform(-0.15, 0.15, (n, m)), 0.02, 0.98)
    correct = rng.random((n, m)) < latent
    top = np.where(correct, gold[:, None], (gold[:, None] + rng.integers(1, k, (n, m))) % k)
    logit = np.log(latent / (1 - latent))
    confidence = 1 / (1 + np.exp(-config.overconfidence * logit))

    saboteur = config.agents.index(config.saboteur)
    sabotaged = rng.random(n) < config.sabotage_rate
    planted = np.zeros((n, m), dtype=bool)
    planted[:, saboteur] = sabotaged
    top[:, saboteur] = np.where(sabotaged, (gold + rng.integers(1, k, n)) % k, top[:, saboteur])
    confidence[:, saboteur] = np.where(sabotaged, rng.uniform(0.90, 0.99, n), confidence[:, saboteur])
    if config.scenario == "clear":
        unsure = sabotaged[:, None] & ~planted
        top = np.where(unsure, gold[:, None], top)
        confidence = np.where(unsure, rng.uniform(0.15, 0.30, (n, m)), confidence)
    confidence = _percent(confidence)

    scores = np.zeros((n, m, k))
    offsets = np.argsort(rng.random((n, m, k - 1)), axis=2)[:, :, :2] + 1  # distinct, never the top
    second = (top[:, :, None] + offsets) % k
    keep = (rng.random((n, m, 2)) < 0.5) & ~planted[:, :, None]
    share = rng.uniform(0.1, 0.5, (n, m, 2))
    for slot in range(2):
        value = np.where(keep[:, :, slot], _percent(confidence * share[:, :, slot]), 0.0)
        scores[rows, np.arange(m)[None, :], second[:, :, slot]] = value
    scores[rows, np.arange(m)[None, :], top] = confidence

    quality = np.clip(0.55 + 0.3 * (latent - 0.5) + rng.normal(0, 0.15, (n, m)), 0.05, 1.0)
    quality = np.where(planted, rng.uniform(0.75, 0.95, (n, m)), quality)
    dataset = None
    if config.n_datasets > 1:
        dataset = np.asarray([f"synth{d}" for d in range(config.n_datasets)], dtype=object)[
            rng.integers(0, config.n_datasets, n)
        ]
    pset = prediction_set(
        scores, gold, agents=config.agents, labels=config.labels, quality=_percent(quality), dataset=dataset
    )
    pset.scale = "percent"
    return pset, planted


# -- files -------------------------------------------------------------------------------------


#: Instances written per chunk by :func:`write`.
_CHUNK = 20_000


def write(pset: PredictionSet, planted: np.ndarray, out: str | Path, config: SynthConfig | None = None) -> dict:
    """Write ``predictions.jsonl`` (the foundation contract, confidences 0-100),
    ``truth.jsonl`` (one line per planted (instance, agent) pair) and ``synth.json``
    (the configuration) into the directory ``out``. Returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(pset.labels.labels, dtype=object)
    percent = np.round(pset.scores * 100).astype(np.int64)
    order = np.argsort(-pset.scores, axis=2, kind="stable")
    length = pset.candidate.sum(axis=2)
    quality = np.round(pset.quality * 100).astype(np.int64)
    paths = {"predictions": out / "predictions.jsonl", "truth": out / "truth.jsonl", "config": out / "synth.json"}
    # the same bytes as json.dumps of each record, assembled from pre-encoded pieces a chunk
    # of instances at a time (a million instances in seconds, not minutes)
    n, m, _ = pset.scores.shape
    width = int(length.max()) if length.size else 0
    order = order[:, :, :width]
    confidence = np.take_along_axis(percent, order, axis=2)
    top = int(confidence.max(initial=0)) + 1
    label_json = [json.dumps(str(label)) for label in labels]
    # one piece per (label, confidence): '{"label": "joy", "confidence": 80}'
    pieces = [f'{{"label": {name}, "confidence": {c}}}' for name in label_json for c in range(top)]
    agent_json = [f', "agent": {json.dumps(agent)}, "gold": ' for agent in pset.agents]
    with paths["predictions"].open("w", encoding="utf-8") as handle:
        for start in range(0, n, _CHUNK):
            rows = slice(start, min(start + _CHUNK, n))
            sizes = length[rows].ravel().tolist()
            codes = (order[rows] * top + confidence[rows]).reshape(len(sizes), width)
            candidates = [""] * len(sizes)
            for slot in range(width):
                column = codes[:, slot].tolist()
                sep = ", " if slot else ""
                candidates = [
                    f"{c}{sep}{pieces[code]}" if size > slot else c
                    for c, code, size in zip(candidates, column, sizes, strict=True)
                ]
            ids = [json.dumps(str(i)) for i in pset.instance_ids[rows].tolist()]
            gold = [label_json[g] for g in pset.gold[rows].tolist()]
            if pset.dataset is None:
                datasets = ['"synth"'] * len(ids)
            else:
                datasets = [json.dumps(str(d)) for d in pset.dataset[rows].tolist()]
            qualities = quality[rows].ravel().tolist()
            handle.write(
                "".join(
                    f'{{"instance_id": {ids[r // m]}{agent_json[r % m]}{gold[r // m]}, "candidates": '
                    f'[{candidates[r]}], "quality": {qualities[r]}, "dataset": {datasets[r // m]}}}\n'
                    for r in range(len(sizes))
                )
            )
    with paths["truth"].open("w", encoding="utf-8") as handle:
        for i, j in zip(*np.nonzero(planted), strict=True):
            handle.write(json.dumps({"instance_id": str(pset.instance_ids[i]), "agent": pset.agents[j]}) + "\n")
    if config is not None:
        paths["config"].write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")
    return {key: str(path) for key, path in paths.items() if path.exists()}


def load_truth(path: str | Path, pset: PredictionSet) -> np.ndarray:
    """``planted[n, m]`` from a ``truth.jsonl`` written by :func:`write`."""
    where = {name: i for i, name in enumerate(pset.instance_ids.tolist())}
    planted = np.zeros(pset.scores.shape[:2], dtype=bool)
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            record = json.loads(line)
            try:
                planted[where[record["instance_id"]], pset.agent_index(record["agent"])] = True
            except KeyError:
                raise InputError(
                    f"instance '{record['instance_id']}' is not in the predictions", path=path, line=number
                ) from None
    return planted


# -- scoring the detectors against the planted truth ---------------------------------------------


def detectors() -> dict[str, Attribution]:
    return {"paper": PaperRule(), "counterfactual": LeaveOneOut(), "shapley": Shapley("correct")}


def detector_scores(
    pset: PredictionSet,
    planted: np.ndarray,
    *,
    rule: FusionRule | None = None,
    tau: float = 0.70,
    resamples: int = 1000,
    seed: int | None = 0,
    level: float = 0.95,
) -> dict:
    """Precision and recall of each sabotage detector over (instance, agent) pairs, with
    bootstrap intervals (instances resampled). All agents are fused."""
    agents = list(range(len(pset.agents)))
    coalitions = Coalitions.from_rule(pset, rule or FusionRule(), agents, tau=tau)
    columns = {"planted": planted.sum(axis=1)}
    ratios = {}
    for name, method in detectors().items():
        flags = method.saboteurs(coalitions)
        columns[f"{name}.flagged"] = flags.sum(axis=1)
        columns[f"{name}.hits"] = (flags & planted).sum(axis=1)
        ratios[f"{name}.precision"] = (f"{name}.hits", f"{name}.flagged")
        ratios[f"{name}.recall"] = (f"{name}.hits", "planted")
    point, ci = metrics.ratio_intervals(columns, ratios, resamples=resamples, seed=seed, level=level)
    return {
        name: {
            "precision": point[f"{name}.precision"],
            "recall": point[f"{name}.recall"],
            "flagged": int(columns[f"{name}.flagged"].sum()),
            "hits": int(columns[f"{name}.hits"].sum()),
            "planted": int(planted.sum()),
            "ci": {key: ci.get(f"{name}.{key}", [None, None]) for key in ("precision", "recall")},
        }
        for name in detectors()
    }
