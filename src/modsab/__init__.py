"""modsab: audit multimodal models one modality at a time.

Every modality runs as an agent that ranks candidate labels; a transparent fusion
combines them; an audit marks, per instance, which agents contributed to the
correct answer and which sabotaged it (Modality Sabotage, arXiv 2511.02794).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from modsab.contract.errors import InputError, ModsabError
from modsab.contract.labels import LabelSet
from modsab.contract.records import Candidate, PredictionRecord

__version__ = "0.1.0"

#: Public names imported on first use, so ``import modsab`` (and the CLI) stays fast.
_LAZY = {
    "load_predictions": "modsab.contract.predictions",
    "PredictionSet": "modsab.contract.predictions",
    "diagnose": "modsab.core.diagnosis",
    "Diagnosis": "modsab.core.diagnosis",
    "FusionRule": "modsab.core.fusion",
    "QualityWeighted": "modsab.core.rules.quality",
    "Role": "modsab.core.audit",
    "ablate": "modsab.masking",
    "to_jsonl": "modsab.masking",
    "AblationSet": "modsab.contract.ablation",
    "Instance": "modsab.contract.instance",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modsab' has no attribute {name!r}")


__all__ = ["Candidate", "InputError", "LabelSet", "ModsabError", "PredictionRecord", "__version__", *_LAZY]
