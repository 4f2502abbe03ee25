"""A task is configuration: ``[task]`` words the prompts; the built-in emotion task keeps
today's prompts and cache keys to the byte (pinned here), any other task changes them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from modsab.agents.backends import OpenAIBackend
from modsab.agents.engine import AgentRunner
from modsab.agents.inputs import DEFAULT_FIELDS, Instance
from modsab.agents.prompts import PromptSet
from modsab.agents.store import RunStore
from modsab.contract.labels import LabelSet


class ScorerShape:
    """What the runner reads of a scorer backend to build its messages (no model is loaded:
    rendering is all that is pinned here; the run tests below use the real scorer)."""

    kind = "scorer"
    base_url = "local://llama.cpp/SmolLM2-135M-Instruct.Q4_1.gguf"
    model = "local:smollm2-scorer"


#: sha256[:16] of the messages and the full cache key of each emotion agent, measured on
#: the code before tasks existed: a drift here would orphan every user's cache.
PINNED = {
    "chat/text": ("8a8c084063292a11", "12442606506943abe06cef9f2e9c667742cbf52fec858ccf6cc71ff4a7f9d79c"),
    "chat/audio": ("85511d591e12a851", "f79d225f6dd3aa7aee1fa0fb87ed22dd6516efe5a1b16d4bf652062b52c9e09d"),
    "chat/vision": ("aa384f19ca179cc6", "7be1bf2d75acca2cccb72cda0386875b5dbb4c3ca12eb3d4ce44d87f022cb347"),
    "chat/tav": ("20fb044e2951154c", "4cc8fcde86a1c19ac102f36ffdcd3aac6093eadc578195ea11233a98fc916b44"),
    "scorer/text": ("549e49b02e198e0a", "cb12bb11dc42a5d971147c1a00539ee0671b9c8673efb18ada089f7fbce8be29"),
    "scorer/audio": ("019f9c03bcfe9c42", "8a33e61724414e9779c5e5eede5999571604e356bbcfe53660865f6489662495"),
    "scorer/vision": ("64b18629d1ed2368", "d7fbd97e3a12b26a644f233128516ae06603dd0c2fa2fe5fbd4fc250b1eb06b8"),
    "scorer/tav": ("7fdb42954554317a", "72790a1471ba4764572ab4fa30da4f0675588b149053b5b66d21b807f68a6bd5"),
}
PINNED_REPAIR = "4b90be06ba00b405"
PINNED_USER_VERSION = "user-ca96468cd481"


def _digest(messages) -> str:
    return hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:16]


def _rendered(tmp_path: Path, **runner_options) -> dict[str, tuple[str, str]]:
    instance = Instance("i1", {name: f"{name} value" for name in DEFAULT_FIELDS["tav"]}, gold="joy")
    out: dict[str, tuple[str, str]] = {}
    chat = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="gpt-4o-mini", api_key=None)
    for backend in (chat, ScorerShape()):
        store = RunStore(tmp_path / backend.kind)
        try:
            runner = AgentRunner(backend, store, labels=LabelSet.parse("meld"), **runner_options)
            for agent in ("text", "audio", "vision", "tav"):
                messages, params = runner.messages(instance, agent)
                out[f"{backend.kind}/{agent}"] = (_digest(messages), runner._key(messages, params))
            if backend.kind == "chat":
                out["repair"] = (_digest(runner.repair_messages(messages, "raw", "bad")), "")
        finally:
            store.close()
    return out


def test_the_emotion_prompts_and_cache_keys_are_todays(tmp_path):
    rendered = _rendered(tmp_path)
    assert {key: value for key, value in rendered.items() if key != "repair"} == PINNED
    assert rendered["repair"][0] == PINNED_REPAIR


def test_a_user_prompt_folder_keeps_its_version(tmp_path):
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "text.txt").write_text("Say: $labels\n$descriptors\n")
    assert PromptSet.load(folder).version == PINNED_USER_VERSION
