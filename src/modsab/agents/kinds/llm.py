"""``llm`` (a chat model answers with ranked labels, JSON) and ``scorer`` (label
log-probabilities of a local model): both call a model through the engine."""

from modsab.agents.kinds._base import AgentKind
from modsab.registry import agent_kinds

agent_kinds.register("llm", order=0)(
    AgentKind(help="a chat model on an OpenAI-compatible endpoint or offline", calls_a_model=True, media=True)
)
agent_kinds.register("scorer", order=1)(
    AgentKind(help="label log-probabilities of an offline model (calibrated)", calls_a_model=True)
)
