"""Agent kinds of ``[[agents]] kind``, one per module, registered in
:data:`modsab.registry.agent_kinds`: ``llm`` and ``scorer`` (a model called through the
engine: limits, stores, cache, media), ``probe`` and ``precomputed`` (records computed or read
here). A new kind that makes its records itself is one new module with an
:class:`~modsab.agents.kinds._base.AgentKind` whose ``records`` builds them."""
