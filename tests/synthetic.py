"""A realistic synthetic run for report tests and benchmarks (no model needed).

Agents behave like the GPT-class answers METHOD.md describes: integer confidences
(0 occurs), 1-7 candidates sharing confidences, quality 1-100, about 1% invalid
labels, some abstentions; text is the best agent, audio a confident saboteur.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

MELD = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
MELD_PRIOR = (0.48, 0.16, 0.11, 0.11, 0.07, 0.03, 0.04)
#: agent -> (probability the top label is gold, typical top confidence)
AGENTS = {"text": (0.55, 75), "audio": (0.30, 85), "vision": (0.25, 60), "tav": (0.50, 70), "base": (0.45, 70)}
XSS = ("<script>window.__xss=1</script>", '<img src=x onerror="window.__xss=2">', "</script><b>x</b>")


def records(
    n: int,
    *,
    seed: int = 0,
    labels: tuple[str, ...] = MELD,
    prior: tuple[float, ...] | None = MELD_PRIOR,
    gold: list[str] | None = None,
    datasets: tuple[str, ...] = ("meld", "mer"),
    agents: dict[str, tuple[float, int]] | None = None,
    ids: list[str] | None = None,
) -> list[dict]:
    rng = np.random.default_rng(seed)
    agents = agents or AGENTS
    k = len(labels)
    p = None if prior is None else np.asarray(prior) / np.sum(prior)
    gold_idx = np.asarray([labels.index(g) for g in gold]) if gold is not None else rng.choice(k, size=n, p=p)
    out = []
    for i in range(n):
        g = int(gold_idx[i])
        iid = ids[i] if ids else f"dia{i // 12}_utt{i % 12}"
        dataset = datasets[i % len(datasets)] if datasets else None
        for agent, (accuracy, confidence) in agents.items():
            if rng.random() < 0.02:
                candidates = []  # abstained
            else:
                top = g if rng.random() < accuracy else int(rng.choice([j for j in range(k) if j != g]))
                others = [j for j in rng.permutation(k).tolist() if j != top][: int(rng.integers(0, min(6, k - 1) + 1))]
                c = int(np.clip(rng.normal(confidence, 15), 0, 100))
                candidates = [{"label": labels[top], "confidence": c}]
                for j in others:
                    c = int(max(0, c - rng.integers(0, 25)))
                    candidates.append({"label": labels[j], "confidence": c})
                if rng.random() < 0.01:
                    candidates.append({"label": "confusion", "confidence": 20})
            record = {
                "instance_id": iid,
                "agent": agent,
                "gold": labels[g],
                "candidates": candidates,
                "quality": int(rng.integers(1, 101)),
            }
            if dataset:
                record["dataset"] = dataset
            out.append(record)
    return out


def write_run(
    directory: Path,
    n: int,
    *,
    raw: bool = True,
    descriptors: bool = True,
    diagnostics: str | None = None,
    xss: bool = False,
    **options,
) -> Path:
    """A run directory: predictions.jsonl, and optionally a SQLite store of raw answers,
    descriptors.parquet, run.json and a diagnosis.json with later diagnostics:
    ``diagnostics="modsab"`` copies sections as ``modsab diagnose --all`` writes them
    (tests/data/diagnostics_sections.json, from the diagnostics branch at 5fd7f0e, same
    agents), ``"generic"`` writes other shapes the report must still read."""
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    rows = records(n, **options)
    if xss:  # payloads in some instance ids (every agent's record of the instance)
        suffix = {r["instance_id"]: XSS[i % 3] for i, r in enumerate(rows[: 5 * 40]) if i % 15 == 0}
        for row in rows:
            row["instance_id"] += suffix.get(row["instance_id"], "")
    with (directory / "predictions.jsonl").open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    ids = list(dict.fromkeys(r["instance_id"] for r in rows))
    if raw:
        with sqlite3.connect(directory / "store.sqlite") as db:
            db.execute("create table answers (instance_id text, agent text, model text, raw text)")
            db.executemany(
                "insert into answers values (?, ?, ?, ?)",
                [
                    (
                        r["instance_id"],
                        r["agent"],
                        "gpt-4o-mini",
                        json.dumps({"candidates": r["candidates"], "note": XSS[i % 3] if xss else "ok"}),
                    )
                    for i, r in enumerate(rows)
                ],
            )
    if descriptors:
        frame = pd.DataFrame(
            {
                "instance_id": ids,
                "transcript": [
                    (XSS[i % 3] + " " if xss else "") + f"Oh. That's so Monica {i}." for i in range(len(ids))
                ],
                "audio": ["pitch high, loud, fast rate" for _ in ids],
                "vision": ["AU12 raised lip corners; leaning forward" for _ in ids],
            }
        )
        frame.to_parquet(directory / "descriptors.parquet", index=False)
    (directory / "run.json").write_text(
        json.dumps(
            {"model": "gpt-4o-mini" + (XSS[1] if xss else ""), "prompt_versions": {"text": "t-v3", "audio": "a-v2"}}
        ),
        encoding="utf-8",
    )
    if diagnostics == "modsab":
        sections = (Path(__file__).parent / "data" / "diagnostics_sections.json").read_text(encoding="utf-8")
        (directory / "diagnosis.json").write_text(sections, encoding="utf-8")
    elif diagnostics == "generic":
        agents = sorted({r["agent"] for r in rows})
        bins = [
            {"lo": b / 5, "hi": (b + 1) / 5, "mean_confidence": b / 5 + 0.1, "accuracy": b / 6 + 0.05, "count": 10 + b}
            for b in range(5)
        ]
        diagnosis = {
            "calibration": {"agents": {a: {"ece": 0.12, "bins": bins} for a in agents}},
            "tau_sweep": [
                {"tau": t / 10, "audio_potential": 1 - t / 10, "text_potential": (1 - t / 10) / 2} for t in range(4, 10)
            ],
            "fusion_compare": {"uniform": {"top1": 0.41, "top3": 0.72}, "quality": {"top1": 0.40, "top3": 0.71}},
            "causal": {"agents": {a: {"causal_sabotage_rate": 0.05 + 0.01 * i} for i, a in enumerate(agents)}},
        }
        (directory / "diagnosis.json").write_text(json.dumps(diagnosis), encoding="utf-8")
    return directory
