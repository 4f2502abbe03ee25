import json

import pytest

from modsab.agents.answer import AnswerError, answer_schema, extract_json, parse_answer
from modsab.contract.labels import LabelSet

MELD = LabelSet.parse("meld")


def answer(*candidates, quality=80):
    return json.dumps(
        {
            "candidates": [{"label": lab, "confidence": c} for lab, c in candidates],
            "primary_label": candidates[0][0] if candidates else None,
            "quality": quality,
            "issues": [],
            "reason": "r",
        }
    )


def test_plain_answer_is_sorted_and_resolved():
    parsed = parse_answer(answer(("Happy", 40), ("anger", 90)), MELD)
    assert [(c.label, c.confidence) for c in parsed.candidates] == [("anger", 90), ("joy", 40)]
    assert parsed.primary_label == "anger" or parsed.primary_label == "joy"
    assert parsed.quality == 80


def test_fenced_and_prose_and_trailing_comma():
    text = "Sure! Here it is:\n```json\n" + answer(("sad", 70))[:-1] + ",}\n```\nHope it helps."
    assert parse_answer(text, MELD).candidates[0].label == "sadness"


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("", "empty"),
        ("   ", "empty"),
        ('{"candidates": [{"label": "joy", "conf', "truncated"),
        ("no json here", "no complete JSON"),
        ('{"candidates": []}', "candidates"),
        ('{"candidates": [{"label": "joy", "confidence": 150}]}', "confidence"),
    ],
)
def test_unusable_answers_say_why(text, fragment):
    with pytest.raises(AnswerError, match=fragment):
        parse_answer(text, MELD)


def test_out_of_set_labels_only_fail_but_mixed_keep_raw_label():
    with pytest.raises(AnswerError, match="no candidate label is in the label set"):
        parse_answer(answer(("confusion", 80), ("concern", 30)), MELD)
    parsed = parse_answer(answer(("confusion", 80), ("happy", 30)), MELD)
    assert [c.label for c in parsed.candidates] == ["confusion", "joy"]


def test_whole_json_answer_inside_a_label_is_unwrapped():
    inner = answer(("fear", 77))
    parsed = parse_answer(json.dumps({"candidates": [{"label": inner, "confidence": 50}]}), MELD)
    assert [(c.label, c.confidence) for c in parsed.candidates] == [("fear", 77)]


def test_duplicate_labels_after_synonyms_keep_the_first():
    parsed = parse_answer(answer(("joy", 60), ("happy", 90)), MELD)
    assert [(c.label, c.confidence) for c in parsed.candidates] == [("joy", 60)]


def test_schema_lists_labels():
    schema = answer_schema(MELD)
    assert schema["properties"]["primary_label"]["enum"] == list(MELD.labels)
    assert extract_json('x {"a": "}"} y') == {"a": "}"}
