"""What an agent kind is: its options, whether it calls a model, and how it makes records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from modsab.contract.labels import LabelSet
from modsab.contract.task import Task


@dataclass(frozen=True)
class KindInputs:
    """What a kind that makes its own records gets from the study: the descriptor table,
    the instances, the label set, the cache folder, the task (its streams) and the run's
    executor (:mod:`modsab.run.executors`; None: this process), where model fits may run."""

    descriptors: pd.DataFrame
    instances: list[Any]
    labels: LabelSet
    cache_dir: Path
    task: Task | None = None
    executor: Any = None


@dataclass(frozen=True)
class AgentKind:
    """One agent kind. ``calls_a_model``: answered by a model through the engine (limits,
    ``reads`` fields, run store, cache); ``media``: may send media parts; ``options``: the keys
    its ``options`` table may hold; ``records(agent, inputs)``: the contract records of an
    agent of this kind, for kinds that do not call a model."""

    help: str
    options: tuple[str, ...] = ()
    calls_a_model: bool = False
    media: bool = False
    records: Callable[..., list[dict[str, Any]]] | None = None
