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
3. A directory of ``--files`` Parquet files (``--instances`` instances x 4 agents in all,
   made as ``bench_diagnose.py`` makes its sets) read by ``load_predictions``: here (file
   after file) and with ``executor = "ray"`` (one task a file on 1 and 2 actors, merged
   here), warm (actors up) and cold (actors started in the call); Ray's own start apart.
   The sets must be equal (checked); the ratio is against the local read in this run.

    PYTHONPATH=src python benchmarks/bench_scale.py --skip-describe --skip-overhead --files 16
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


def reduce_directory(n_files: int, instances: int, repeat: int = 2) -> None:
    import sys
    import tempfile

    import pyarrow.parquet as pq
    import ray

    sys.path.insert(0, str(TREE / "benchmarks"))
    from bench_diagnose import make_table

    from modsab.contract.batches import DEFAULT_BATCH_ROWS
    from modsab.contract.predictions import load_predictions
    from modsab.contract.spread import ReduceFiles
    from modsab.run.executors import ExecutorSettings, make_executor

    per_file = instances // n_files
    workdir = Path(tempfile.mkdtemp(prefix="bench-reduce-"))
    folder = workdir / "parts"
    folder.mkdir()
    for i in range(n_files):
        pq.write_table(make_table(per_file, seed=i, start=i * per_file), folder / f"part-{i:05d}.parquet")
    size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
    print(f"3. a directory of {n_files} Parquet files, {per_file * n_files} instances x 4 agents "
          f"({size:.0f} MB), load_predictions")

    def best(**how) -> tuple[float, object]:
        times, got = [], None
        for _ in range(repeat):
            start = time.perf_counter()
            got = load_predictions(folder, labels="meld", **how)
            times.append(time.perf_counter() - start)
        return min(times), got

    def reduce_only(executor=None) -> float:
        """The part an executor spreads: the files reduced and merged (no assembly of the set)."""
        from modsab.contract.predictions import _batched

        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            _batched(folder, "parquet", "percent", DEFAULT_BATCH_ROWS, executor)
            times.append(time.perf_counter() - start)
        return min(times)

    here, reference = best()
    here_reduce = reduce_only()
    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             object_store_memory=256 * 1024**2)
    ray_start = time.perf_counter() - start
    rows = [("local, file after file", here, here_reduce, None)]
    try:
        for workers in (1, 2):
            with make_executor("ray", ExecutorSettings(workers=workers, batch_size=1)) as executor:
                start = time.perf_counter()
                load_predictions(folder, labels="meld", executor=executor)
                cold = time.perf_counter() - start
                executor.warm(ReduceFiles("percent", DEFAULT_BATCH_ROWS))  # the same actors
                warm, got = best(executor=executor)
            import numpy as np

            assert np.array_equal(got.instance_ids, reference.instance_ids)
            assert got.scores.tobytes() == reference.scores.tobytes() and np.array_equal(got.gold, reference.gold)
            rows.append((f"ray x{workers} actors", warm, reduce_only(executor), cold))
    finally:
        ray.shutdown()
    for name, warm, reduced, cold in rows:
        extra = "" if cold is None else f"   cold {cold:6.2f} s ({cold / here:5.2f}x, actors started in the call)"
        print(f"   {name:<22} {warm:6.2f} s  {warm / here:5.2f}x   of which reduce + merge {reduced:6.2f} s "
              f"{reduced / here_reduce:5.2f}x{extra}")
    print(f"   (ray.init of a local Ray: {ray_start:.1f} s, not in the figures; x = time / local time, this run; "
          f"sets checked equal)")
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--cost", type=float, default=0.05)
    parser.add_argument("--per-actor", type=int, default=40)
    parser.add_argument("--actors", default="1,2,4,8,16")
    parser.add_argument("--skip-describe", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-reduce", action="store_true")
    parser.add_argument("--files", type=int, default=16, help="Parquet files of section 3")
    parser.add_argument("--instances", type=int, default=400_000, help="instances in all (4 agents each), section 3")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    if not args.skip_describe:
        describe_rates(args.clips)
    if not args.skip_overhead:
        overhead(args.cost, args.per_actor, [int(n) for n in args.actors.split(",")])
    if not args.skip_reduce:
        reduce_directory(args.files, args.instances)


if __name__ == "__main__":
    main()
