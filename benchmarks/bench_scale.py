"""Describe on the local executor and on Ray actors, and Ray's orchestration overhead.

    PYTHONPATH=src python benchmarks/bench_scale.py [--clips 12] [--cost 0.05] [--per-actor 40]

1. items/s of ``describe`` (Whisper + openSMILE on the example's speech clips, no cache)
   with 1 and 2 workers, local (in-process / process pool) and on a local Ray (actors),
   cold (pool or actors started and models loaded inside the timed call, as a run does it)
   and warm (a second call on the same in-process models / actors). Ray's own start is
   timed apart (a cluster is usually up already). Ratios are against local with 1 worker,
   in this same run.
2. Orchestration overhead: N = 1, 2, 4, 8, 16 actors on a workload of known per-item cost
   (``--cost`` seconds of sleep, ``--per-actor`` items per actor), so the ideal time is
   items * cost / N whatever N; overhead = (measured - ideal) / ideal, after the actors are
   up (their start is printed apart). 2 cores cannot show more than 2x on real work; this
   shows what the pool itself costs when the work scales. Target: <= 10% at 16 actors.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

TREE = Path(__file__).resolve().parents[1]


def describe_rates(n_clips: int) -> None:
    import importlib

    import ray

    from modsab.descriptors import DescribeConfig, MediaItem, describe
    from modsab.run.executors import ExecutorSettings, make_executor

    clips = sorted((TREE / "examples" / "ravdess-mini" / "clips").glob("*.flac"))[:n_clips]
    items = [MediaItem(p.stem, audio_path=p, speaker=p.stem.rsplit("-", 1)[1]) for p in clips]
    config = DescribeConfig(face=False)
    describe_module = importlib.import_module("modsab.descriptors.describe")  # the package exports the function
    print(f"1. describe, {len(items)} clips (ASR + voice), cold (pool/actors and models started in the call)")
    rates: dict[str, tuple[float, float | None]] = {}

    def rate(**how) -> float:
        start = time.perf_counter()
        describe(items, config=config, **how)
        return len(items) / (time.perf_counter() - start)

    for workers in (1, 2):
        describe_module._EXTRACTORS.clear()  # in-process models load again, as in a new run
        cold = rate(workers=workers)
        rates[f"local x{workers}"] = (cold, rate(workers=1) if workers == 1 else None)  # a pool lives for one call
    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             object_store_memory=256 * 1024**2)
    ray_start = time.perf_counter() - start
    try:
        for workers in (1, 2):
            with make_executor("ray", ExecutorSettings(workers=workers)) as executor:
                cold = rate(executor=executor)
                rates[f"ray x{workers}"] = (cold, rate(executor=executor))  # the same actors, models loaded
    finally:
        ray.shutdown()
    base_cold, base_warm = rates["local x1"]
    for name, (cold, warm) in rates.items():
        again = (f"warm {warm:5.2f} items/s {warm / base_warm:5.2f}x" if warm is not None
                 else "warm   n/a (a process pool lives for one call)")
        print(f"   {name:<9} cold {cold:5.2f} items/s {cold / base_cold:5.2f}x   {again}   (vs local x1)")
    print(f"   (ray.init of a local Ray: {ray_start:.1f} s, not in the figures above; warm: a second call, "
          "models loaded, nothing cached)")


def overhead(cost: float, per_actor: int, actors: list[int]) -> None:
    import ray

    from modsab.run.executors import ExecutorSettings, make_executor
    from modsab.run.executors._workload import SleepWork

    print(f"2. orchestration overhead: {cost * 1000:.0f} ms per item, {per_actor} items per actor, "
          f"ideal {per_actor * cost:.2f} s for every N")
    ray.init(num_cpus=max(actors), include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             object_store_memory=256 * 1024**2)
    work = SleepWork(cost)
    try:
        for n in actors:
            items = list(range(n * per_actor))
            with make_executor("ray", ExecutorSettings(workers=n)) as executor:
                start = time.perf_counter()
                executor.warm(work)
                up = time.perf_counter() - start
                start = time.perf_counter()
                got = sum(1 for _ in executor.map(work, items, failed=str))
                took = time.perf_counter() - start
            assert got == len(items)
            ideal = len(items) * cost / n
            print(f"   N={n:>2}: {len(items):>4} items  measured {took:6.3f} s  ideal {ideal:6.3f} s  "
                  f"overhead {100 * (took - ideal) / ideal:5.1f}%  ({len(items) / took:6.1f} items/s; "
                  f"actors up in {up:.1f} s)")
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--cost", type=float, default=0.05)
    parser.add_argument("--per-actor", type=int, default=40)
    parser.add_argument("--actors", default="1,2,4,8,16")
    parser.add_argument("--skip-describe", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    if not args.skip_describe:
        describe_rates(args.clips)
    overhead(args.cost, args.per_actor, [int(n) for n in args.actors.split(",")])


if __name__ == "__main__":
    main()
