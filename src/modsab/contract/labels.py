"""Label sets, synonyms and the label-leakage check.

Every label that enters modsab (gold values, agent candidates, LLM answers) is
normalised here, so the loader, the agents and the descriptors agree on what
"the same label" means:

1. trim and lower-case;
2. if the result is in the label set, keep it;
3. else look it up in the user's synonym map, then in the built-in synonym groups;
   a synonym maps only onto a member of *this* label set, and only when exactly
   one member of its group is there (so ``happy`` becomes ``joy`` for MELD and
   ``joy`` becomes ``happy`` for RAVDESS, and nothing is guessed);
4. otherwise the label is invalid (the caller drops and counts it).

The order of a label set is its tie-break order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from modsab.contract.errors import InputError

#: Built-in equivalence groups of unambiguous emotion label forms, including the
#: three-letter codes of IEMOCAP. Ambiguous neighbours (excited vs joy, calm vs
#: neutral, frustration vs anger) are deliberately separate groups.
SYNONYM_GROUPS: tuple[frozenset[str], ...] = tuple(
    frozenset(group)
    for group in (
        {"joy", "happy", "happiness", "joyful", "joyous", "hap"},
        {"anger", "angry", "ang"},
        {"sadness", "sad", "sorrow", "sorrowful"},
        {"fear", "fearful", "afraid", "scared", "fea", "fearfulness"},
        {"disgust", "disgusted", "dis"},
        {"surprise", "surprised", "sur"},
        {"neutral", "neu", "neutrality"},
        {"calm", "calmness"},
        {"excited", "excitement", "exc"},
        {"frustration", "frustrated", "fru"},
        {"contempt", "contemptuous"},
        {"worry", "worried"},
    )
)

_GROUP_OF: dict[str, frozenset[str]] = {word: group for group in SYNONYM_GROUPS for word in group}

#: Label sets of the datasets modsab ships loaders for; ``--labels meld`` picks one.
PRESETS: dict[str, tuple[str, ...]] = {
    "meld": ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"),
    "ravdess": ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    "iemocap4": ("neutral", "happy", "sad", "angry"),
    "iemocap6": ("neutral", "happy", "sad", "angry", "excited", "frustrated"),
}

#: Fields that hold or name the answer: a loader never puts them among descriptors, and they
#: are never sent to a model, whatever the configuration says. The one list of them.
LABEL_FIELDS = frozenset({"gold", "true_label", "label", "emotion", "fine-grained_summary", "fine_grained_summary"})


def clean(label: str) -> str:
    """Trim and lower-case: the first step of every comparison."""
    return label.strip().lower()


@dataclass(frozen=True)
class LabelSet:
    """An ordered label vocabulary with its synonym resolution.

    ``labels`` order is the tie-break order everywhere in modsab.
    ``synonyms`` is the user's extra map (variant -> label), checked before the
    built-in groups.
    """

    labels: tuple[str, ...]
    synonyms: Mapping[str, str] = field(default_factory=dict)
    source: str = "given"

    def __post_init__(self) -> None:
        cleaned = tuple(clean(label) for label in self.labels)
        if not cleaned:
            raise InputError("the label set is empty", hint="give --labels a,b,c")
        if any(not label for label in cleaned):
            raise InputError("the label set contains an empty label", hint="remove stray commas")
        seen: set[str] = set()
        for label in cleaned:
            if label in seen:
                raise InputError(
                    f"label '{label}' is given twice in the label set",
                    hint="each label once; the order is the tie-break order",
                )
            seen.add(label)
        object.__setattr__(self, "labels", cleaned)
        user = {clean(k): clean(v) for k, v in self.synonyms.items()}
        for variant, target in user.items():
            if target not in seen:
                raise InputError(
                    f"synonym '{variant}' maps to '{target}', which is not in the label set ({', '.join(cleaned)})",
                    hint="fix the synonym map or the label set",
                )
        object.__setattr__(self, "synonyms", user)

    # -- construction -------------------------------------------------------

    @classmethod
    def parse(cls, spec: str, *, synonyms: Mapping[str, str] | None = None) -> LabelSet:
        """Parse ``"a,b,c"`` or a preset name (``meld``, ``ravdess``, ``iemocap4``, ``iemocap6``)."""
        spec = spec.strip()
        if "," not in spec and clean(spec) in PRESETS:
            return cls(PRESETS[clean(spec)], synonyms or {}, source=f"preset {clean(spec)}")
        return cls(tuple(spec.split(",")), synonyms or {})

    @classmethod
    def from_gold(cls, gold: Iterable[str], *, synonyms: Mapping[str, str] | None = None) -> LabelSet:
        """The sorted set of gold values, used when the user gives no label set."""
        values = sorted({clean(g) for g in gold if g is not None and clean(g)})
        if not values:
            raise InputError("no gold labels found, so no label set can be inferred", hint="give --labels a,b,c")
        return cls(tuple(values), synonyms or {}, source="sorted set of gold values")

    # -- lookup --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        return iter(self.labels)

    @cached_property
    def index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def resolve(self, raw: object) -> str | None:
        """Map a raw label to a member of the set, or ``None`` when it is invalid."""
        if not isinstance(raw, str):
            return None
        word = clean(raw)
        if word in self.index:
            return word
        if word in self.synonyms:
            return self.synonyms[word]
        group = _GROUP_OF.get(word)
        if group is None:
            return None
        members = [label for label in self.labels if label in group]
        return members[0] if len(members) == 1 else None

    def code(self, raw: object) -> int:
        """Index of a raw label in the set, ``-1`` when invalid."""
        label = self.resolve(raw)
        return -1 if label is None else self.index[label]

    def codes(self, raws: Sequence[object]) -> list[int]:
        """Vector form of :meth:`code`; callers pass *unique* raw values for speed."""
        return [self.code(raw) for raw in raws]


# -- leakage ---------------------------------------------------------------------

#: Extra inflections that name an emotion in running text (adverbs, nouns).
_LEAK_EXTRAS = frozenset(
    {
        "angrily",
        "sadly",
        "happily",
        "fearfully",
        "joyfully",
        "disgustedly",
        "frightened",
        "terrified",
        "furious",
        "anxious",
        "anxiety",
        "upset",
        "cheerful",
        "delighted",
        "gloomy",
        "depressed",
        "irritated",
        "annoyed",
        "amused",
        "ecstatic",
        "miserable",
        "scornful",
        "contempt",
        "nervous",
        "emotion",
        "emotional",
        "emotions",
        "mood",
    }
)


def leakage_terms(labels: Iterable[str] = (), *, emotion_words: bool = True) -> frozenset[str]:
    """Words that give the answer away: the labels and their synonyms, and (for an emotion
    task, the default) every emotion word modsab knows with its common inflections. A
    descriptor that contains one leaks the answer. Other tasks (sentiment, digits) pass
    ``emotion_words=False``: "angrily" in a transcript does not name a digit."""
    labels = [clean(label) for label in labels]
    terms: set[str] = set(_LEAK_EXTRAS) if emotion_words else set()
    groups = SYNONYM_GROUPS if emotion_words else [_GROUP_OF[label] for label in labels if label in _GROUP_OF]
    for group in groups:
        terms |= {word for word in group if len(word) > 3}  # skip 3-letter codes
    terms |= set(labels)
    plurals = {term + "s" for term in terms if not term.endswith("s")}
    return frozenset(terms | plurals)


@dataclass(frozen=True)
class Leak:
    field: str
    term: str
    context: str


class LeakageChecker:
    """Finds label words in descriptor text (whole words, case-insensitive)."""

    def __init__(self, labels: Iterable[str] = (), *, extra: Iterable[str] = (), emotion_words: bool = True) -> None:
        terms = sorted(leakage_terms(labels, emotion_words=emotion_words) | {clean(e) for e in extra},
                       key=len, reverse=True)
        self.terms = tuple(terms)
        self._pattern = re.compile(r"\b(" + "|".join(map(re.escape, terms)) + r")\b", re.IGNORECASE)

    def find(self, text: object, *, field: str = "text") -> list[Leak]:
        if not isinstance(text, str) or not text:
            return []
        leaks = []
        for match in self._pattern.finditer(text):
            start, end = max(0, match.start() - 30), min(len(text), match.end() + 30)
            leaks.append(Leak(field, match.group(1).lower(), text[start:end]))
        return leaks

    def check(self, fields: Mapping[str, object]) -> list[Leak]:
        """All leaks in a mapping of field name -> text."""
        return [leak for name, value in fields.items() for leak in self.find(value, field=name)]
