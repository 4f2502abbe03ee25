"""``[run] executor = "ray"``: a pool of Ray actors, each building its worker once (for
describe: Whisper, openSMILE and MediaPipe) and taking batches of items.

``ray`` is imported only here, when this executor is built. ``ray_address`` names an
existing cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); without it a local
Ray is started and shut down again by :meth:`RayExecutor.close`.

Fault tolerance: an actor that dies (its node killed, its process crashed) is dropped and
the batches it held go back to the queue for the surviving actors, so every item still
gets exactly one result; when no actor survives, a fresh one is started (Ray places it on
any node with room). A batch is tried at most :data:`MAX_ATTEMPTS` times; then its items
get the failure message as their result. Each death is logged (``modsab.ray``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from modsab.contract.errors import InputError
from modsab.registry import executors
from modsab.run.executors import Executor, ExecutorSettings, Failed, WorkerFactory, error_message

log = logging.getLogger("modsab.ray")

#: Attempts of one batch before its items are given up (an actor death each time).
MAX_ATTEMPTS = 4
#: Batches queued on one actor at once: one running, one waiting, so no actor idles for a round trip.
DEPTH = 2
#: Seconds to wait for a replacement actor when every actor has died.
REPLACE_TIMEOUT = 300.0
#: Object store of a Ray started here (results are small JSON-like records).
LOCAL_OBJECT_STORE = 256 * 1024**2


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("[run] executor = \"ray\" needs the ray package", item="key 'run.executor'",
                         hint="pip install 'modsab[ray]' (ray==2.60.0), or use executor = \"local\"") from None
    return ray


#: Environment that changes numeric results: Ray sets OMP_NUM_THREADS to the actor's CPUs,
#: and a BLAS or OpenMP pool of another size sums in another order (Whisper's log-mel
#: features, its int8 matrix products). The actor takes the driver's values (or none) instead.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _driver_threads() -> dict[str, Any]:
    """This process's thread variables and the thread counts of its loaded BLAS / OpenMP
    pools: what a local worker process (which inherits them) computes with."""
    try:
        from threadpoolctl import threadpool_info

        pools = {info["internal_api"]: info["num_threads"] for info in threadpool_info()}
    except ImportError:
        pools = {}
    return {"env": {name: os.environ.get(name) for name in THREAD_VARIABLES}, "pools": pools}


def set_thread_variables(threads: dict[str, Any]) -> None:
    """Put the driver's thread variables (from :func:`_driver_threads`) in this process."""
    for name, value in threads["env"].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


class _BatchWorker:
    """The actor: builds the worker once, then maps it over each batch it is sent. A worker
    exception becomes ``(False, message)`` for that item (the batch goes on).

    Before the worker is built the driver's thread settings are put in place: pool sizes for
    the libraries loaded already, variables for those not loaded yet; the variables again
    before every batch (Ray sets its own before each task, and models may load lazily on
    the first item, reading them then)."""

    def __init__(self, factory: bytes, threads: dict[str, Any]) -> None:
        import pickle

        self._threads = threads
        self._set_variables()
        self._set_pools()
        self._work = pickle.loads(factory)()

    def _set_variables(self) -> None:
        set_thread_variables(self._threads)

    def _set_pools(self) -> None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return
        for pool in ThreadpoolController().lib_controllers:
            wanted = self._threads["pools"].get(pool.internal_api)
            if wanted is not None and pool.num_threads != wanted:
                pool.set_num_threads(wanted)

    def ready(self) -> bool:
        return True

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def run(self, batch: list[tuple[int, Any]]) -> list[tuple[int, bool, Any]]:
        self._set_variables()
        out = []
        for position, item in batch:
            try:
                out.append((position, True, self._work(item)))
            except Exception as error:
                out.append((position, False, error_message(error)))
        return out


def connect(ray: Any, settings: ExecutorSettings) -> bool:
    """Connect this process to ``settings.ray_address``, or start a local Ray; nothing when it
    is connected already (a caller's ``ray.init``, :func:`ray_session`). True when it connected."""
    if ray.is_initialized():
        return False
    address = settings.ray_address
    common = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
    if address:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise InputError(f"cannot connect to the Ray cluster at {address}: {error}", item="key 'run.ray_address'",
                             hint="start one with `ray start --head`, or leave ray_address out for a local "
                                  "Ray") from None
    else:
        cpus = max(os.cpu_count() or 1, math.ceil(settings.workers * settings.cpus_per_worker))
        ray.init(num_cpus=cpus, object_store_memory=LOCAL_OBJECT_STORE, **common)
    return True


@contextlib.contextmanager
def ray_session(settings: ExecutorSettings) -> Iterator[None]:
    """One Ray connection (or local Ray) for a whole run: describe and the agents' actors
    share it instead of each starting their own; shut down at the end if started here."""
    ray = _import_ray()
    connected = connect(ray, settings)
    try:
        yield
    finally:
        if connected:
            ray.shutdown()


def cluster_cpus() -> int:
    """The CPUs of the cluster this process is connected to (at least 1)."""
    ray = _import_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@executors.register("ray", order=1)
class RayExecutor(Executor):
    """See the module docstring. The actors live until :meth:`close` (or until :meth:`map`
    is called with another worker factory), so :meth:`warm` can start them ahead of time.
    :meth:`map` starts no actor that would get no item (``workers`` at most, one per item),
    and tops a smaller pool up to that."""

    def __init__(self, settings: ExecutorSettings) -> None:
        super().__init__(settings)
        self._ray = _import_ray()
        self._connected_here = False
        self._factory: WorkerFactory | None = None
        self._actors: list[Any] = []
        self._actor_class: Any = None
        #: actors that died during this executor's life (the cluster test reads it)
        self.deaths = 0

    # -- the cluster and the actors --------------------------------------------------------

    def _connect(self) -> None:
        if self._actor_class is None:
            self._actor_class = self._ray.remote(num_cpus=self.settings.cpus_per_worker, max_restarts=0)(_BatchWorker)
        self._connected_here = connect(self._ray, self.settings) or self._connected_here

    def _new_actor(self) -> Any:
        import pickle

        return self._actor_class.remote(pickle.dumps(self._factory), _driver_threads())

    def warm(self, make_worker: WorkerFactory) -> None:
        """Start the actors for ``make_worker`` and wait until each has built its worker."""
        self._connect()
        if self._factory != make_worker or not self._actors:
            self._drop_actors()
            self._factory = make_worker
            self._actors = [self._new_actor() for _ in range(self.settings.workers)]
        self._ray.get([actor.ready.remote() for actor in self._actors])

    def nodes_of_actors(self) -> list[str]:
        """The Ray node id of each live actor (for tests and logs)."""
        return self._ray.get([actor.node.remote() for actor in self._actors])

    def _drop_actors(self) -> None:
        for actor in self._actors:
            with contextlib.suppress(Exception):  # already gone with its node
                self._ray.kill(actor, no_restart=True)
        self._actors = []

    def close(self) -> None:
        if not self._ray.is_initialized():
            return
        self._drop_actors()
        if self._connected_here:  # a local Ray stops; a cluster only loses this driver
            self._ray.shutdown()
            self._connected_here = False

    # -- the work ---------------------------------------------------------------------------

    def _batch_size(self, n: int) -> int:
        if self.settings.batch_size:
            return self.settings.batch_size
        return max(1, min(8, math.ceil(n / (4 * self.settings.workers))))

    def map(self, make_worker: WorkerFactory, items: Sequence[Any], *, failed: Failed) -> Iterator[tuple[int, Any]]:
        if not items:
            return
        ray = self._ray
        self._connect()
        if self._factory != make_worker or not self._actors:
            self._drop_actors()
            self._factory = make_worker
        wanted = min(self.settings.workers, len(items))  # no actor without an item (five folds on a big cluster)
        self._actors += [self._new_actor() for _ in range(wanted - len(self._actors))]
        size = self._batch_size(len(items))
        indexed = list(enumerate(items))
        queue: deque[tuple[list[tuple[int, Any]], int]] = deque(
            (indexed[start:start + size], 1) for start in range(0, len(indexed), size))
        in_flight: dict[Any, tuple[Any, list[tuple[int, Any]], int]] = {}
        load = {id(actor): 0 for actor in self._actors}
        done: set[int] = set()
        try:
            while queue or in_flight:
                for actor in list(self._actors):
                    while queue and load[id(actor)] < DEPTH:
                        batch, attempt = queue.popleft()
                        in_flight[actor.run.remote(batch)] = (actor, batch, attempt)
                        load[id(actor)] += 1
                if not in_flight:  # every actor died: start one where Ray finds room
                    actor = self._new_actor()
                    try:
                        ray.get(actor.ready.remote(), timeout=REPLACE_TIMEOUT)
                    except ray.exceptions.RayError as error:
                        for batch, _attempt in queue:
                            for position, _item in batch:
                                yield position, failed(f"no Ray actor could be started: {error_message(error)}")
                        return
                    self._actors.append(actor)
                    load[id(actor)] = 0
                    continue
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                actor, batch, attempt = in_flight.pop(ready[0])
                load[id(actor)] -= 1
                try:
                    results = ray.get(ready[0])
                except ray.exceptions.RayTaskError as error:  # not the worker's code: the batch failed as a whole
                    results = [(position, False, error_message(error)) for position, _item in batch]
                except ray.exceptions.RayError as error:  # the actor or its node died
                    self._bury(actor)
                    log.warning("ray: an actor died (%s); its batch of %d items goes back to the queue (attempt %d)",
                                type(error).__name__, len(batch), attempt + 1)
                    if attempt >= MAX_ATTEMPTS:
                        results = [(position, False, f"gave up after {attempt} attempts: {error_message(error)}")
                                   for position, _item in batch]
                    else:
                        queue.appendleft((batch, attempt + 1))
                        continue
                for position, ok, value in results:
                    if position in done:  # a batch retried after its first result was already taken
                        continue
                    done.add(position)
                    yield position, value if ok else failed(value)
        finally:  # on Ctrl-C or an error: what is in flight is abandoned; the actors stay for reuse
            for ref in in_flight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)

    def _bury(self, actor: Any) -> None:
        """Drop a dead actor from the pool (its other batches fail the same way and come back)."""
        if actor in self._actors:
            self.deaths += 1
            self._actors.remove(actor)
            with contextlib.suppress(Exception):
                self._ray.kill(actor, no_restart=True)


__all__ = ["RayExecutor", "cluster_cpus", "connect", "ray_session"]
