"""Speed of the foundation pipeline: load, fuse + audit + metrics, bootstrap.

Prints, in one run, for N instances x 4 agents x 7 labels (default N = 1,000,000):
- loading JSONL and Parquet with modsab vs pyarrow and polars reading the same file raw;
- fuse + audit + all metrics (vectorised) vs a straightforward per-instance Python loop
  (timed on a slice, scaled linearly) and their ratio;
- 1,000 bootstrap resamples; peak memory.

    python benchmarks/bench_diagnose.py [--n 1000000] [--workdir /tmp/modsab-bench]

With ``--format parquet`` (or ``jsonl``) it measures instead the peak RSS and time of the
foundation audit and of ``--all``, each in a child process of its own, reading whole
(the reference) and in batches, for each of ``--sizes`` (e.g. ``--sizes 1000000 2000000``):

    python benchmarks/bench_diagnose.py --format parquet --sizes 1000000 2000000

At 10,000,000 instances it says whether issue 15's targets are met (peak RSS <= 3 GB for the
foundation audit and <= 8 GB for ``--all``, time within 12x of a 1M run measured alongside):

    python benchmarks/bench_diagnose.py --format parquet --sizes 1000000 10000000 --whole-max 0
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from modsab.contract.labels import PRESETS
from modsab.contract.predictions import load_predictions
from modsab.core import audit, fusion
from modsab.core.diagnosis import diagnose
from modsab.stats import metrics

LABELS = PRESETS["meld"]
AGENTS = ("text", "audio", "vision", "tav")


def make_table(n: int, seed: int = 0, start: int = 0) -> pa.Table:
    """n x 4 records with 1-5 candidates each, ~1% invalid labels, 0-100 integer confidences
    (instances ``i<start>`` to ``i<start + n - 1>``)."""
    rng = np.random.default_rng(seed)
    rows = n * len(AGENTS)
    lengths = rng.integers(1, 6, size=rows)
    total = int(lengths.sum())
    vocab = np.array([*LABELS, "confusion"], dtype=object)
    label_idx = np.where(rng.random(total) < 0.01, 7, rng.integers(0, 7, size=total))
    labels = pa.array(vocab[label_idx], pa.string())
    conf = pa.array(rng.integers(0, 101, size=total).astype(np.float64))
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    structs = pa.StructArray.from_arrays([labels, conf], ["label", "confidence"])
    candidates = pa.ListArray.from_arrays(offsets, structs)
    instance = np.repeat(np.arange(start, start + n), len(AGENTS))
    ids = pa.array(np.char.add("i", instance.astype(str)).astype(object), pa.string())
    gold = np.array(LABELS, dtype=object)[rng.integers(0, 7, size=n)]
    gold_col = np.where(np.arange(rows) % len(AGENTS) == 0, np.repeat(gold, len(AGENTS)), None)
    return pa.table(
        {
            "instance_id": ids,
            "agent": pa.array(np.tile(np.array(AGENTS, dtype=object), n), pa.string()),
            "gold": pa.array(gold_col, pa.string()),
            "candidates": candidates,
            "quality": pa.array(rng.integers(1, 101, size=rows).astype(np.float64)),
        }
    )


def write_files(table: pa.Table, workdir: Path) -> tuple[Path, Path]:
    import polars as pl

    workdir.mkdir(parents=True, exist_ok=True)
    jsonl, parquet = workdir / f"bench_{table.num_rows}.jsonl", workdir / f"bench_{table.num_rows}.parquet"
    if not jsonl.exists():
        pl.from_arrow(table).write_ndjson(jsonl)
    if not parquet.exists():
        pq.write_table(table, parquet)
    return jsonl, parquet


#: Instances per generated chunk: a file larger than this is written chunk by chunk.
CHUNK = 1_000_000


def write_large(n: int, workdir: Path, fmt: str) -> Path:
    """The benchmark set of n instances as one file, generated and written a chunk of
    instances at a time (chunk j seeded j), so a 10M-instance file never sits in memory.
    At most one chunk: the same file as :func:`write_files` writes."""
    import polars as pl

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"bench_{n * len(AGENTS)}.{fmt}"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    writer = None
    with open(partial, "wb") as handle:
        for j, start in enumerate(range(0, n, CHUNK)):
            table = make_table(min(CHUNK, n - start), seed=j, start=start)
            if fmt == "parquet":
                writer = writer or pq.ParquetWriter(handle, table.schema)
                writer.write_table(table)
            else:
                pl.from_arrow(table).write_ndjson(handle)
        if writer is not None:
            writer.close()
    partial.rename(path)
    return path


def _child(args: argparse.Namespace) -> None:
    """One measured diagnosis in this (child) process: the foundation audit, or ``--all``."""
    batch_rows = None if args.batch_rows == 0 else args.batch_rows
    extra = {"diagnostics": "all"} if args.child == "all" else {}
    result = diagnose(args.file, labels="meld", batch_rows=batch_rows, **extra)
    json.dumps(result.to_dict(), ensure_ascii=False, allow_nan=False)


def measure(path: Path, what: str, batch_rows: int) -> tuple[float, float]:
    """``(seconds, peak RSS in MB)`` of one diagnosis of ``path`` in a fresh child process
    (``os.wait4`` gives that child's own peak, so measurements never share one)."""
    import os
    import subprocess
    import sys

    command = [sys.executable, __file__, "--child", what, "--batch-rows", str(batch_rows), "--file", str(path)]
    start = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"child {' '.join(command)} failed with {child.returncode}")
    return seconds, usage.ru_maxrss / 1024


def peaks(args: argparse.Namespace) -> None:
    """Peak RSS and time of the foundation audit and of ``--all``, each in its own child,
    read whole (``batch_rows=None``, the reference) and in batches, for each ``--n``."""
    rows = []
    for n in args.sizes:
        path = write_large(n, args.workdir, args.format)
        size = path.stat().st_size / 1e6
        for what in args.what:
            for label, batch_rows in (("whole", 0), ("batched", args.batch_rows)):
                if label == "whole" and n > args.whole_max:
                    continue  # the reference reader would need more memory than this run may take
                seconds, peak = measure(path, what, batch_rows)
                rows.append({"n": n, "what": what, "reader": label, "seconds": seconds, "peak_mb": peak})
                print(
                    f"{args.format:7s} n={n:>11,} ({size:,.0f} MB) {what:10s} {label:7s} "
                    f"{seconds:7.1f} s  peak RSS {peak:8,.0f} MB",
                    flush=True,
                )
    by = {(r["n"], r["what"], r["reader"]): r for r in rows}
    small = min(args.sizes)
    for r in rows:
        if r["reader"] == "batched" and r["n"] != small and (small, r["what"], "batched") in by:
            base = by[(small, r["what"], "batched")]
            print(
                f"{r['what']:10s} batched n={r['n']:,} vs n={small:,}: time {r['seconds'] / base['seconds']:.2f}x, "
                f"peak {r['peak_mb'] / base['peak_mb']:.2f}x (instances {r['n'] / small:.0f}x)"
            )
        whole = by.get((r["n"], r["what"], "whole"))
        if r["reader"] == "batched" and whole:
            print(
                f"{r['what']:10s} n={r['n']:,}: batched / whole peak {r['peak_mb'] / whole['peak_mb']:.2f}x, "
                f"time {r['seconds'] / whole['seconds']:.2f}x"
            )
    for r in rows:  # issue 15's targets, stated for ten million instances
        if r["reader"] == "batched" and r["n"] >= TARGET_N:
            limit = TARGET_PEAK_MB[r["what"]]
            verdict = "met" if r["peak_mb"] <= limit else "MISSED"
            print(f"target {r['what']:10s} n={r['n']:,}: peak RSS {r['peak_mb']:,.0f} MB <= {limit:,} MB: {verdict}")
            base = by.get((1_000_000, r["what"], "batched"))
            if base:
                ratio = r["seconds"] / base["seconds"]
                verdict = "met" if ratio <= TARGET_TIME_RATIO else "MISSED"
                print(f"target {r['what']:10s} time vs n=1,000,000: {ratio:.1f}x <= {TARGET_TIME_RATIO}x: {verdict}")
    print(json.dumps(rows))


#: Issue 15's targets at ten million instances (Parquet, 4 agents, 7 labels): peak RSS of the
#: foundation audit and of ``--all``, and time within this many times the 1M run's.
TARGET_N = 10_000_000
TARGET_PEAK_MB = {"foundation": 3_000, "all": 8_000}
TARGET_TIME_RATIO = 12


def timed(fn, repeat: int = 1):
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def loop_pipeline(records: list[dict], tau: float = 0.7) -> dict:
    """The same fusion and audit written the obvious way: dicts and Python loops per instance."""
    index = {label: i for i, label in enumerate(LABELS)}
    by_instance: dict[str, dict] = {}
    for rec in records:
        entry = by_instance.setdefault(rec["instance_id"], {"gold": None, "answers": {}})
        if rec.get("gold"):
            entry["gold"] = rec["gold"]
        answer = {}
        for cand in rec["candidates"]:
            if cand["label"] in index and cand["label"] not in answer:  # a repeated label is dropped
                answer[cand["label"]] = cand["confidence"] / 100
        entry["answers"][rec["agent"]] = answer
    hits = [0] * 5
    counts = {a: [0, 0, 0, 0] for a in AGENTS}
    for entry in by_instance.values():
        fused = dict.fromkeys(LABELS, 0.0)
        for answer in entry["answers"].values():
            for label, conf in answer.items():
                fused[label] += conf
        ranking = sorted((lbl for lbl in LABELS if fused[lbl] > 0), key=lambda lbl: (-round(fused[lbl], 9), index[lbl]))
        for k in range(5):
            hits[k] += entry["gold"] in ranking[: k + 1]
        top1 = ranking[0] if ranking else None
        for agent, answer in entry["answers"].items():
            if not answer:
                continue
            label = min(answer, key=lambda lbl: (-answer[lbl], index[lbl]))
            c = counts[agent]
            c[0] += 1
            c[1] += label == entry["gold"]
            potential = label != entry["gold"] and answer[label] >= tau
            c[2] += potential
            c[3] += potential and label == top1
    return {"hits": hits, "counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--loop-slice", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/modsab-bench"))
    parser.add_argument(
        "--format",
        choices=("jsonl", "parquet"),
        help="instead of the timings: peak RSS and time of `diagnose` and `diagnose --all` on this format, "
        "each in a child process, read whole and in batches, for every --n (a file is generated chunk by chunk)",
    )
    parser.add_argument("--sizes", type=int, nargs="*", help="with --format: the n to measure (default: --n)")
    parser.add_argument("--batch-rows", type=int, default=1 << 20, help="records per batch (0: read whole)")
    parser.add_argument("--whole-max", type=int, default=2_000_000, help="largest n also read whole (reference)")
    parser.add_argument(
        "--what", nargs="*", choices=("foundation", "all"), default=["foundation", "all"], help="with --format"
    )
    parser.add_argument("--child", choices=("foundation", "all"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)
    if args.format:
        args.sizes = args.sizes or [args.n]
        return peaks(args)
    n = args.n
    print(f"modsab bench_diagnose: {n:,} instances x {len(AGENTS)} agents x {len(LABELS)} labels")

    table = make_table(n)
    jsonl, parquet = write_files(table, args.workdir)
    print(f"files: JSONL {jsonl.stat().st_size / 1e6:.0f} MB, Parquet {parquet.stat().st_size / 1e6:.0f} MB")

    import polars as pl

    raw_json, _ = timed(lambda: pj.read_json(jsonl))
    raw_polars, _ = timed(lambda: pl.read_ndjson(jsonl))
    ours_json, pset = timed(lambda: load_predictions(jsonl, labels="meld"))
    raw_pq, _ = timed(lambda: pq.read_table(parquet), repeat=2)
    ours_pq, _ = timed(lambda: load_predictions(parquet, labels="meld"), repeat=2)
    raw_best = min(raw_json, raw_polars)
    print(
        f"load JSONL    modsab {ours_json:6.2f} s | pyarrow raw {raw_json:6.2f} s | polars raw {raw_polars:6.2f} s"
        f" | ratio to fastest raw {ours_json / raw_best:4.2f}x (goal <= 3x)"
    )
    print(f"load Parquet  modsab {ours_pq:6.2f} s | pyarrow raw {raw_pq:6.2f} s | ratio {ours_pq / raw_pq:4.2f}x")

    def core():
        fused = fusion.FusionRule().fuse(pset, range(len(AGENTS)))
        fused_top = fusion.top_label(fused)
        rank = fusion.gold_rank(fused, pset.gold)
        top, conf = audit.agent_top(pset.scores, pset.candidate)
        role = audit.roles(top, conf, pset.gold, fused_top)
        layout = metrics.Layout(pset.agents, (True,) * len(AGENTS), 5)
        p_rank, p_role, p_count = metrics.patterns(rank, role)
        ind = metrics.indicators(p_rank, p_role, layout)
        return metrics.rates(p_count @ ind, layout), (p_count, ind, layout)

    vec_time, (point, (p_count, ind, layout)) = timed(core, repeat=2)
    whole_time, _ = timed(lambda: diagnose(pset, bootstrap=0))

    records = table.slice(0, args.loop_slice * len(AGENTS)).to_pylist()
    loop_slice_time, loop_out = timed(lambda: loop_pipeline(records))
    loop_time = loop_slice_time * n / args.loop_slice
    sub = diagnose(load_predictions_from_records(records), bootstrap=0).to_dict()
    assert [round(h / args.loop_slice, 12) for h in loop_out["hits"]] == [
        round(v, 12) for v in sub["fusion_topk"].values()
    ], "loop and vectorised pipelines disagree"
    print(
        f"fuse+audit+metrics  vectorised {vec_time:6.3f} s | diagnose() total {whole_time:6.3f} s | "
        f"per-instance loop {loop_time:7.1f} s (slice of {args.loop_slice:,} scaled) | "
        f"speed-up {loop_time / vec_time:6.0f}x core, {loop_time / whole_time:5.0f}x diagnose (goal >= 50x)"
    )

    boot_time, _ = timed(lambda: metrics.rates(metrics.bootstrap_counts(p_count, ind, resamples=1000, seed=0), layout))
    print(f"bootstrap 1000 resamples {boot_time:6.3f} s over {len(p_count):,} distinct instance patterns")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak:,.0f} MB (arrays: scores {pset.scores.nbytes / 1e6:,.0f} MB)")
    print(
        json.dumps(
            {
                "n": n,
                "load_jsonl_s": ours_json,
                "raw_jsonl_s": raw_best,
                "load_parquet_s": ours_pq,
                "raw_parquet_s": raw_pq,
                "core_s": vec_time,
                "diagnose_s": whole_time,
                "loop_s": loop_time,
                "bootstrap_s": boot_time,
                "peak_mb": peak,
            }
        )
    )


def load_predictions_from_records(records: list[dict]):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
        for rec in records:
            handle.write(json.dumps(rec) + "\n")
    return load_predictions(handle.name, labels="meld")


if __name__ == "__main__":
    main()
