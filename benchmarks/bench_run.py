"""Wall time of each ``modsab run`` stage, share of time per stage, and the cached rerun.

Runs the example config (48 RAVDESS clips + the AV clip, every agent of the example)
and, when the shared data is there, 200 RAVDESS clips (describe + audio and text
probes + the four offline LLM agents). Each is run twice: cold (fresh cache) and
fully cached; the speed-up of the cached rerun is printed.

    python benchmarks/bench_run.py [--data ../shared/data] [--skip-200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from modsab.run.config import load_config
from modsab.run.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ravdess-mini" / "run.toml"


def timed_run(config_path: Path, run_dir: Path, cache_dir: Path, *, limit: int | None = None,
              dataset_path: Path | None = None) -> tuple[float, dict[str, float]]:
    config = load_config(config_path)
    config.run.dir, config.run.cache_dir = run_dir, cache_dir
    if dataset_path is not None:
        config.dataset.path = dataset_path
    config = config.narrowed(limit=limit)
    start = time.perf_counter()
    outcome = run_pipeline(config, progress=False)
    return time.perf_counter() - start, outcome.stage_seconds


def report(name: str, cold: tuple[float, dict[str, float]], warm: tuple[float, dict[str, float]]) -> None:
    total, stages = cold
    print(f"\n{name}: cold run {total:.1f} s, cached rerun {warm[0]:.1f} s, speed-up {total / warm[0]:.1f}x")
    print(f"  {'stage':<14}{'cold s':>9}{'share':>8}{'cached s':>10}")
    for stage, seconds in stages.items():
        print(f"  {stage:<14}{seconds:9.1f}{seconds / total:8.0%}{warm[1].get(stage, 0):10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--skip-200", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modsab-bench-run-"))
    try:
        cache = work / "cache-example"
        cold = timed_run(EXAMPLE, work / "example", cache)
        warm = timed_run(EXAMPLE, work / "example", cache)
        report("example (49 clips, 6 agents)", cold, warm)
        speech = args.data / "ravdess" / "speech_16k"
        if not args.skip_200 and speech.is_dir():
            cache = work / "cache-200"
            cold = timed_run(EXAMPLE, work / "r200", cache, limit=200, dataset_path=speech)
            warm = timed_run(EXAMPLE, work / "r200", cache, limit=200, dataset_path=speech)
            report("RAVDESS 200 clips (6 agents)", cold, warm)
        diagnosis = json.loads((work / "example" / "diagnosis.json").read_text())
        print("\nexample fused top-1:", round(diagnosis["fusion_topk"]["1"], 3))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
