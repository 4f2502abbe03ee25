"""Fusion rules, one per module, each registered in :data:`modsab.registry.fusion_rules`.

A rule's name is a ``--weights`` value (and ``[fusion] weights`` in a run config), and
every rule with ``in_comparison = True`` is a strategy of the ``fusion_compare``
diagnostic, in registration order. Adding a rule is one new module here that subclasses
:class:`~modsab.core.fusion.FusionRule` and registers it; the property tests that hold
every fast path to its reference pick it up from the registry.
"""
