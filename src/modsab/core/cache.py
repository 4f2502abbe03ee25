"""Remember arrays derived from one :class:`PredictionSet` within a run of diagnostics.

Several diagnostics need the same derived arrays (every agent's top label, the integer
percent codes, cross-fitted recalibration); on a million instances each costs seconds.
Entries are keyed by the identity of the set's score array *and hold that array*, so
an entry can never be mistaken for another set's; only the last few are kept. In-place
edits of a set's arrays are not seen: make a new array instead.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from modsab.core import audit
from modsab.contract.predictions import PredictionSet

_ENTRIES: dict[tuple, tuple[np.ndarray, Any]] = {}
MAX_ENTRIES = 16


def remember(pset: PredictionSet, key: Hashable, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per (set, key) among the last :data:`MAX_ENTRIES` entries."""
    full = (id(pset.scores), id(pset.gold), key)
    entry = _ENTRIES.get(full)
    if entry is not None and entry[0] is pset.scores:
        return entry[1]
    value = compute()
    if len(_ENTRIES) >= MAX_ENTRIES:
        _ENTRIES.pop(next(iter(_ENTRIES)))
    _ENTRIES[full] = (pset.scores, value)
    return value


def agent_top(pset: PredictionSet, agents: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`modsab.core.audit.agent_top` of ``agents``, remembered."""
    agents = list(agents)

    def compute():
        if agents == list(range(len(pset.agents))):
            return audit.agent_top(pset.scores, pset.candidate)
        return audit.agent_top(pset.scores[:, agents], pset.candidate[:, agents])

    return remember(pset, ("agent_top", tuple(agents)), compute)
