"""Diagnostics beyond the paper vs the foundation pipeline, on the same 1M x 4 x 7 data.

    PYTHONPATH=src python benchmarks/bench_diagnostics.py [--n 1000000] [--bootstrap 1000]

The data come from the synthetic generator (``modsab.data.synth.generate``, arrays, no file
I/O). "foundation" is ``diagnose(pset)`` with default options; "diagnostics" is each
section of ``Diagnosis.extend`` on that result, timed one by one; the ratio is
(foundation + all diagnostics) / foundation. The goal of issue 7 is <= 10x. Wall time
and this process's CPU time are both printed: on a shared machine the CPU-time ratio is
the steadier one.
"""

from __future__ import annotations

import argparse
import time

from modsab.core.diagnosis import diagnose
from modsab.data.synth import SynthConfig, generate
from modsab.registry import diagnostics as registered

DIAGNOSTICS = registered.names()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import sklearn.isotonic  # noqa: F401  (import once, outside the timings)
    import sklearn.linear_model  # noqa: F401

    start = time.perf_counter()
    pset, _ = generate(SynthConfig(n_instances=args.n, scenario="mixed", n_datasets=3, seed=args.seed))
    print(
        f"generated {pset.n_instances} instances x {len(pset.agents)} agents x {len(pset.labels)} labels "
        f"in {time.perf_counter() - start:.1f}s"
    )

    clocks = (time.perf_counter, time.process_time)
    start = [clock() for clock in clocks]
    result = diagnose(pset, bootstrap=args.bootstrap, seed=args.seed)
    foundation = [clock() - s for clock, s in zip(clocks, start, strict=True)]
    print(f"foundation diagnose (defaults): wall {foundation[0]:.2f}s  cpu {foundation[1]:.2f}s")

    total = [0.0, 0.0]
    for name in DIAGNOSTICS:
        start = [clock() for clock in clocks]
        result.extend(name)
        spent = [clock() - s for clock, s in zip(clocks, start, strict=True)]
        total = [t + s for t, s in zip(total, spent, strict=True)]
        print(f"  {name:15s} wall {spent[0]:7.2f}s  cpu {spent[1]:7.2f}s")
    print(f"all diagnostics: wall {total[0]:.2f}s  cpu {total[1]:.2f}s")
    for i, clock in enumerate(("wall", "cpu")):
        print(
            f"ratio (foundation + diagnostics) / foundation, {clock}: {(foundation[i] + total[i]) / foundation[i]:.1f}x"
        )


if __name__ == "__main__":
    main()
