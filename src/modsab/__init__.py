"""modsab: audit multimodal models one modality at a time.

Every modality runs as an agent that ranks candidate labels; a transparent fusion
combines them; an audit marks, per instance, which agents contributed to the
correct answer and which sabotaged it (Modality Sabotage, arXiv 2511.02794).
"""

from modsab.errors import InputError, ModsabError
from modsab.labels import LabelSet
from modsab.schema import Candidate, PredictionRecord

__version__ = "0.1.0"

__all__ = ["Candidate", "InputError", "LabelSet", "ModsabError", "PredictionRecord", "__version__"]
