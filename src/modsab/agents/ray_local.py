"""The offline models (``local:<name>``, llama.cpp) on Ray actors: ``[run] executor = "ray"``.

Each actor loads the model once and answers one call at a time, exactly as the in-process
backend does (:mod:`modsab.agents.local`: same prompt, same threads, same arithmetic), so
the answers are the same. The engine stays in the driver: it keeps several calls in
flight (``concurrency``), awaits each actor call as a coroutine, and alone writes the run
store and the response cache, under the keys the in-process backend uses (the same
``model`` and ``base_url``). An actor that dies is replaced and the call is a transient
failure the engine retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modsab.agents.backends import Completion, TransientError
from modsab.run.executors import ExecutorSettings, error_message


class _ModelActor:
    """One loaded offline model; ``complete`` is the in-process backend's own method."""

    def __init__(self, model: str, threads: dict[str, Any]) -> None:
        from modsab.agents.local import local_backend
        from modsab.run.executors.ray import set_thread_variables

        set_thread_variables(threads)  # before llama.cpp loads (it reads them then)

        self._backend = local_backend(model)

    def ready(self) -> bool:
        return True

    def complete(self, messages: list[dict[str, Any]], params: dict[str, Any],
                 response_format: dict[str, Any] | None) -> Completion:
        return self._backend._complete(messages, params, response_format)


class RayLocalBackend:
    """The ``ray`` backend: ``settings.workers`` actors of one offline model."""

    accepts = frozenset({"text"})

    def __init__(self, model: str, settings: ExecutorSettings) -> None:
        from modsab.agents.local import LOCAL_MODELS, base_url, local_backend
        from modsab.run.executors.ray import _driver_threads, _import_ray, connect

        name = model.removeprefix("local:")
        if name not in LOCAL_MODELS:
            local_backend(model)  # the in-process backend's error for an unknown model
        spec = LOCAL_MODELS[name]
        path = spec.locate()  # assembled here once, so the actors find it ready
        self.kind = spec.kind
        self.model = f"local:{name}"
        self.base_url = base_url(path)  # as in-process: the cache keys are the same
        self._ray = _import_ray()
        self._connected_here = connect(self._ray, settings)  # False inside a run's ray_session
        self._class = self._ray.remote(num_cpus=settings.cpus_per_worker, max_restarts=0)(_ModelActor)
        self._threads = _driver_threads()
        self._actors = [self._class.remote(self.model, self._threads) for _ in range(settings.workers)]
        self._busy = {id(actor): 0 for actor in self._actors}
        self._ray.get([actor.ready.remote() for actor in self._actors])

    async def complete(self, messages, params: Mapping[str, Any], response_format) -> Completion:
        actor = min(self._actors, key=lambda a: self._busy[id(a)])
        self._busy[id(actor)] += 1
        ray = self._ray
        try:
            return await actor.complete.remote(list(messages), dict(params), response_format)
        except ray.exceptions.RayTaskError as error:  # the model's own error (e.g. PermanentError)
            raise error.cause if isinstance(error.cause, Exception) else error from None
        except ray.exceptions.RayError as error:  # the actor or its node died: a fresh one, and retry
            self._replace(actor)
            raise TransientError(f"Ray actor lost: {error_message(error)}") from None
        finally:
            self._busy[id(actor)] = self._busy.get(id(actor), 1) - 1

    def _replace(self, actor: Any) -> None:
        if actor in self._actors:
            self._actors.remove(actor)
            fresh = self._class.remote(self.model, self._threads)
            self._actors.append(fresh)
            self._busy[id(fresh)] = 0

    async def aclose(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        self._actors = []
        if self._connected_here:
            self._ray.shutdown()
