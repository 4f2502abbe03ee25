"""``precomputed``: an agent whose answers a user already has, read from a predictions file
(the contract format); ``options.source_agent`` picks another agent name in that file."""

from __future__ import annotations

from typing import Any

from modsab.agents.kinds._base import AgentKind, KindInputs
from modsab.contract.errors import InputError
from modsab.registry import agent_kinds


def precomputed_records(agent, study: KindInputs | None = None) -> list[dict[str, Any]]:
    """The agent's records from its file, renamed to the agent."""
    from modsab.contract.predictions import records, resolve_path

    path = resolve_path(agent.path)
    out = []
    for line, raw in records(path):
        if isinstance(raw, dict) and raw.get("agent") in (agent.name, agent.options.get("source_agent")):
            out.append(dict(raw, agent=agent.name))
        elif isinstance(raw, Exception):
            raise InputError(str(raw), path=path, line=line)
    if not out:
        raise InputError(f"no records for agent '{agent.name}'", path=path, hint="check the agent name")
    return out



agent_kinds.register("precomputed", order=3)(
    AgentKind(help="answers read from a predictions file you already have", options=("source_agent",),
              records=precomputed_records)
)
