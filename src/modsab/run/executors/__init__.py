"""Where per-item work runs: in this process / a local process pool, or on a Ray cluster.

An executor maps a *worker factory* over items. The factory is a picklable callable that
builds the worker once per process or actor (so models load once there); the worker turns
one item into one result. Results stream back to the caller as they finish, tagged with the
item's position, and the caller (the driver) stays the only writer of every cache and store:
an executor never touches the disk, so a killed run resumes from what the driver wrote.

Executors register themselves in :data:`modsab.registry.executors` (``[run] executor``);
:func:`make_executor` builds the one a run config asks for.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
R = TypeVar("R")

#: Builds a worker (called once per worker process / actor); must be picklable.
WorkerFactory = Callable[[], Callable[[Any], Any]]
#: Turns the message of a failure outside the worker's own error handling into a result.
Failed = Callable[[str], Any]


class ExecutorSettings(BaseModel):
    """What a run config says about its executor (``[run] executor``, ``ray_address``) plus
    the number of workers of the stage (``[describe] workers``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(1, ge=1, description="worker processes (local) or actors (ray)")
    ray_address: str | None = Field(None, description="an existing Ray cluster; None starts a local one")
    batch_size: int | None = Field(None, ge=1, description="items per actor call (ray); None: about four "
                                   "batches per actor, at most 8 items")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs a Ray actor reserves (ray)")


class Executor(ABC):
    """Maps a worker over items; see the module docstring. Use as a context manager (or call
    :meth:`close`) so processes, actors and a Ray started here are released."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings

    @abstractmethod
    def map(self, make_worker: WorkerFactory, items: Sequence[Any], *, failed: Failed) -> Iterator[tuple[int, Any]]:
        """Yield ``(position in items, result)`` once per item, in completion order. An item
        whose worker raised (or whose process died for good) gets ``failed(message)``."""

    def close(self) -> None:  # noqa: B027  (most executors hold nothing between maps)
        """Release what this executor started (nothing for a pool that lives in :meth:`map`)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def error_message(error: BaseException) -> str:
    """``Type: message``, the text an item's ``worker`` error shows."""
    return f"{type(error).__name__}: {error}"


def make_executor(name: str, settings: ExecutorSettings) -> Executor:
    """The registered executor ``name`` (``local``, ``ray``) with ``settings``."""
    from modsab import registry

    return registry.executors.get(name)(settings)


@contextlib.contextmanager
def command_executor(
    name: str, *, workers: int | None = None, ray_address: str | None = None, option: str = "--executor",
    **settings: Any,
) -> Iterator[Executor | None]:
    """The executor a command's ``--executor`` / ``--workers`` / ``--ray-address`` ask for,
    released at the end; ``None`` for one local worker (the command runs in this process, as
    without the options). ``workers=None`` on Ray: one actor per CPU of the cluster."""
    from modsab import registry
    from modsab.contract.errors import InputError
    from modsab.core.options import registered_name

    try:
        registered_name(registry.executors, name)
    except ValueError as error:
        raise InputError(f"{option}: {error}", hint="use --executor local or --executor ray") from None
    if ray_address is not None and name != "ray":
        raise InputError("--ray-address applies to --executor ray only", hint="add --executor ray")
    if name == "local" and (workers or 1) <= 1:
        yield None
        return
    with contextlib.ExitStack() as stack:
        if name == "ray" and workers is None:  # connect first, to count the cluster's CPUs
            from modsab.run.executors.ray import cluster_cpus, ray_session

            stack.enter_context(ray_session(ExecutorSettings(ray_address=ray_address)))
            workers = cluster_cpus()
        yield stack.enter_context(make_executor(name, ExecutorSettings(workers=workers or 1, ray_address=ray_address,
                                                                       **settings)))


__all__ = ["Executor", "ExecutorSettings", "Failed", "WorkerFactory", "command_executor", "error_message",
           "make_executor"]
