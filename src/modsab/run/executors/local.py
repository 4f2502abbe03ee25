"""``[run] executor = "local"``: in this process for one worker, else a pool of spawned
processes (each builds its worker once, in the pool's initializer)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from modsab.registry import executors
from modsab.run.executors import Executor, Failed, WorkerFactory, error_message

_WORKER: Any = None


def _init_worker(make_worker: WorkerFactory) -> None:
    global _WORKER
    _WORKER = make_worker()


def _call_worker(item: Any) -> Any:
    assert _WORKER is not None, "the pool's initializer did not run"
    return _WORKER(item)


@executors.register("local", order=0)
class LocalExecutor(Executor):
    """One worker: items in order, here. More: a spawn-context process pool, results as they
    finish; on Ctrl-C or an error what has not started is dropped, what finished is kept."""

    def map(self, make_worker: WorkerFactory, items: Sequence[Any], *, failed: Failed) -> Iterator[tuple[int, Any]]:
        if not items:
            return
        if self.settings.workers <= 1:
            work = make_worker()
            for position, item in enumerate(items):
                yield position, work(item)
            return
        import multiprocessing

        pool = ProcessPoolExecutor(max_workers=self.settings.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(make_worker,))
        try:
            futures = {pool.submit(_call_worker, item): position for position, item in enumerate(items)}
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as error:  # a worker that died (e.g. a decoder crash)
                    result = failed(error_message(error))
                yield futures[future], result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
