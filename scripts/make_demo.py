"""Write the bundled demo predictions (src/modsab/data/demo_predictions.jsonl).

Synthetic on purpose (the real datasets may not be redistributed in the package):
240 instances of a MELD-like label set, four agents shaped like the paper's
findings: text is the best contributor, audio a confident saboteur that often
names anger or sadness, vision weak and noisy, the joint agent in between. About
1% of candidate labels are outside the set, as in real answers. Deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LABELS = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
PRIOR = np.array([0.35, 0.18, 0.13, 0.12, 0.09, 0.06, 0.07])
AGENTS = {  # accuracy, confidence when right, confidence when wrong
    "text": (0.55, (70, 95), (40, 80)),
    "audio": (0.30, (60, 90), (70, 98)),
    "vision": (0.25, (30, 70), (30, 75)),
    "tav": (0.45, (60, 90), (50, 85)),
}
OUT_OF_SET = ("confusion", "concern", "frustration", "anxiety")


def main(path: Path, n: int = 240, seed: int = 2025) -> None:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        gold = int(rng.choice(len(LABELS), p=PRIOR))
        dataset = "meld-like" if i < 160 else "iemocap-like"
        for agent, (accuracy, right, wrong) in AGENTS.items():
            correct = rng.random() < accuracy
            if correct:
                top, conf = gold, int(rng.integers(*right))
            else:
                pool = [3, 4] if agent == "audio" and rng.random() < 0.6 else range(len(LABELS))
                top = int(rng.choice([j for j in pool if j != gold]))
                conf = int(rng.integers(*wrong))
            others = rng.choice(
                [j for j in range(len(LABELS)) if j != top], size=int(rng.integers(1, 4)), replace=False
            )
            cands = [{"label": LABELS[top], "confidence": conf}]
            cands += [{"label": LABELS[j], "confidence": int(rng.integers(5, conf + 1))} for j in others]
            if rng.random() < 0.04:
                cands.append({"label": str(rng.choice(OUT_OF_SET)), "confidence": int(rng.integers(10, 60))})
            if rng.random() < 0.01:
                cands = []  # an invalid answer: the agent abstains
            lines.append(
                {
                    "instance_id": f"demo{i:03d}",
                    "agent": agent,
                    "gold": LABELS[gold] if agent == "text" else None,
                    "candidates": cands,
                    "quality": int(rng.integers(40, 96)),
                    "dataset": dataset,
                }
            )
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            line = {k: v for k, v in line.items() if v is not None}
            handle.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main(Path(__file__).resolve().parents[1] / "src" / "modsab" / "data" / "demo_predictions.jsonl")
