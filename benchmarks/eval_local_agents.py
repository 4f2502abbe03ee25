"""Top-1 and speed of the offline agent options on the MELD descriptions.

    PYTHONPATH=src python benchmarks/eval_local_agents.py --n 191 \
        --options local:gemma-scorer,local:smollm2 --agents text,audio,vision,tav

Per option and agent: top-1 against gold (abstentions count as misses), the share of
answers that parsed, seconds per call; plus top-1 of a uniform fusion of the agents
run (sum of confidences, ties to the earlier label), the paper's rule.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from modsab.agents.engine import Limits
from modsab.agents.inputs import load_descriptors
from modsab.agents.run import AgentRunConfig, run_agents
from modsab.contract.labels import LabelSet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_agents import default_data  # noqa: E402

MELD = LabelSet.parse("meld")


def evaluate(records: list[dict], agents: list[str]) -> dict[str, float]:
    gold = {r["instance_id"]: MELD.resolve(r["gold"]) for r in records}
    hits: dict[str, list[int]] = defaultdict(list)
    fused: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for record in records:
        scores = {}
        for candidate in record["candidates"]:
            label = MELD.resolve(candidate["label"])
            if label is not None and label not in scores:
                scores[label] = candidate["confidence"]
        top = (
            max(MELD.labels, key=lambda lab: (scores.get(lab, -1), -MELD.index[lab]))
            if scores
            else None
        )
        hits[record["agent"]].append(int(top == gold[record["instance_id"]]))
        for label, value in scores.items():
            fused[record["instance_id"]][label] += value
    result = {agent: sum(values) / len(values) for agent, values in hits.items()}
    fused_hits = [
        int(
            bool(s)
            and max(MELD.labels, key=lambda lab: (s.get(lab, -1), -MELD.index[lab])) == gold[i]
        )
        for i, s in ((i, fused.get(i, {})) for i in gold)
    ]
    result["fused"] = sum(fused_hits) / len(fused_hits)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--n", type=int, default=191)
    parser.add_argument("--options", default="local:gemma-scorer,local:smollm2")
    parser.add_argument("--agents", default="text,audio,vision,tav")
    parser.add_argument("--out", type=Path, default=None, help="keep run dirs here")
    args = parser.parse_args()
    instances = load_descriptors(args.data)[: args.n]
    agents = args.agents.split(",")
    majority = max(MELD.labels, key=lambda lab: sum(i.gold == lab for i in instances))
    base = sum(i.gold == majority for i in instances) / len(instances)
    print(f"n={len(instances)}; always '{majority}' scores {base:.3f}")
    for option in args.options.split(","):
        folder = Path(args.out or tempfile.mkdtemp()) / option.replace(":", "_")
        for agent in agents:
            started = time.perf_counter()
            config = AgentRunConfig(
                model=option, labels=MELD, agents=[agent], limits=Limits(concurrency=1)
            )
            result = run_agents(instances, config, folder, use_cache=False)
            wall = time.perf_counter() - started
            stats = result.stats
            print(
                f"  {option:20s} {agent:6s} valid {stats.done}/{stats.done + stats.invalid} "
                f"{wall / max(1, stats.requests):5.2f} s/call",
                flush=True,
            )
        records = [
            json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()
        ]
        scores = evaluate(records, agents)
        print(f"{option}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), flush=True)


if __name__ == "__main__":
    main()
