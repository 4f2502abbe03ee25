"""``uniform``: every answer counts the same (the paper's default rule)."""

from modsab.core.fusion import FusionRule
from modsab.registry import fusion_rules

fusion_rules.register("uniform", order=0)(FusionRule)
