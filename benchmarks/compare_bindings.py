"""The offline label scorer on two llama.cpp bindings, call by call: xllamacpp (the binding
of the offline agents) against llama-cpp-python 0.3.36 (the one before it, compiled at
install), on the prompts a run stored.

    PYTHONPATH=src python benchmarks/compare_bindings.py RUN_DIR [RUN_DIR...] [--model local:smollm2-scorer]
        [--threads 1] [--limit N] [--out calls.jsonl]
    PYTHONPATH=src python benchmarks/compare_bindings.py --descriptions meld_annotation.json --limit 40

Reads every scorer request of the runs' agent stores (``agents/*/run.sqlite``, or a
``run.sqlite``), or renders the four scorer agents' prompts for the first ``--limit``
instances of a descriptions file as the agents' runner does (labels ``meld``), asks both
bindings in turn (so both see the same machine load) and prints:
how many answers (the JSON the agent stores) are identical, how many primary labels and
rounded confidences differ and by how much, the largest difference of a calibrated
probability, and seconds per call of each. The reference below is the scorer of
llama-cpp-python as it was (full-vocabulary float32 logits, float64 log-softmax).
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modsab.agents import local


class ReferenceScorer(local.LocalScorerBackend):
    """The scorer as it was on llama-cpp-python 0.3.36 (its ``_label_logprobs`` verbatim)."""

    def __init__(self, name: str, path: Path, *, n_ctx: int, threads: int) -> None:
        from llama_cpp import Llama

        self.model, self.path = f"local:{name}", path
        self.base_url = f"local://llama.cpp/{path.name}"
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                         verbose=False, logits_all=False)
        self._priors = {}

    def _label_logprobs(self, prompt: str, labels: Sequence[str]) -> list[float]:
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


class ReferenceChat(local.LocalChatBackend):
    """The chat backend as it was on llama-cpp-python 0.3.36 (``create_chat_completion``)."""

    def __init__(self, name: str, path: Path, *, n_ctx: int, threads: int) -> None:
        from llama_cpp import Llama

        self.model, self.path, self.base_url = f"local:{name}", path, f"local://llama.cpp/{path.name}"
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                         verbose=False, logits_all=False)

    def _complete(self, messages, params, response_format):
        schema = (response_format or {}).get("schema") or (response_format or {}).get("json_schema", {}).get("schema")
        format_ = {"type": "json_object", "schema": schema} if schema else response_format
        result = self.llm.create_chat_completion(messages=messages, response_format=format_,
                                                 temperature=params.get("temperature", 0.0),
                                                 max_tokens=params.get("max_tokens", 400), seed=params.get("seed"))
        return result["choices"][0]["message"].get("content") or ""


class NewChat(local.LocalChatBackend):
    def __init__(self, name: str, path: Path, *, n_ctx: int, threads: int) -> None:
        self.model, self.path, self.base_url = f"local:{name}", path, local.base_url(path)
        self.llm = local.LlamaServer(path, n_ctx=n_ctx, threads=threads)


def _parsed(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def compare_chat(descriptions: Path, limit: int, threads: int, max_tokens: int) -> None:
    """The chat backend (``local:smollm2``, JSON constrained to the answer schema) on both bindings."""
    from modsab.agents.answer import answer_schema
    from modsab.agents.backends import response_formats
    from modsab.contract.labels import LabelSet

    labels = LabelSet.parse("meld")
    requests = rendered_requests(descriptions, limit, kind="chat")
    path = local.smollm2_path()
    ref = ReferenceChat("smollm2", path, n_ctx=4096, threads=threads)
    new = NewChat("smollm2", path, n_ctx=4096, threads=threads)
    response_format = response_formats(answer_schema(labels))[0]
    same, same_json, seconds = 0, 0, {"llama-cpp-python": [], "xllamacpp": []}
    for where, body in requests:
        params = {**body["params"], "max_tokens": max_tokens}
        texts = {}
        for label, backend in (("llama-cpp-python", ref), ("xllamacpp", new)):
            started = time.perf_counter()
            result = backend._complete(body["messages"], params, response_format)
            seconds[label].append(time.perf_counter() - started)
            texts[label] = result if isinstance(result, str) else result.text
        a, b = texts["llama-cpp-python"], texts["xllamacpp"]
        same += a == b
        parsed = _parsed(a) == _parsed(b) and _parsed(a) is not None
        same_json += parsed
        print(f"  {where}: {'same' if a == b else 'same JSON' if parsed else 'differs'}")
        if a != b:
            print(f"    llama-cpp-python: {a[:160]!r}\n    xllamacpp:        {b[:160]!r}")
    print(f"chat answers identical: {same} / {len(requests)}; the same JSON: {same_json} / {len(requests)}")
    for label, values in seconds.items():
        print(f"s/call {label:17s}: median {statistics.median(values):.3f}")


class NewScorer(local.LocalScorerBackend):
    def __init__(self, name: str, path: Path, *, n_ctx: int, threads: int) -> None:
        self.model, self.path, self.base_url = f"local:{name}", path, local.base_url(path)
        self.llm = local.LlamaServer(path, n_ctx=n_ctx, threads=threads)
        self._priors, self._label_tokens = {}, {}


def stored_requests(runs: Sequence[Path]) -> list[tuple[str, dict]]:
    """(store/instance, request) of every scorer call the runs stored, in a fixed order."""
    found = []
    for run in runs:
        stores = sorted(run.glob("agents/*/run.sqlite")) or sorted(run.glob("run.sqlite"))
        for store in stores:
            with sqlite3.connect(store) as db:
                for key, request in db.execute("SELECT cache_key, request FROM calls ORDER BY cache_key"):
                    body = json.loads(request)
                    if "content_free" in body.get("params", {}):
                        found.append((f"{store.parent.name}/{key[:8]}", body))
    unique = {json.dumps(body, sort_keys=True): (name, body) for name, body in found}
    return list(unique.values())


def rendered_requests(descriptions: Path, limit: int, kind: str = "scorer") -> list[tuple[str, dict]]:
    """The requests of agents text, audio, vision and tav on the first ``limit`` instances."""
    import tempfile

    from modsab.agents.engine import AgentRunner
    from modsab.agents.inputs import load_descriptors
    from modsab.agents.store import RunStore
    from modsab.contract.labels import LabelSet

    class Shape:  # what the runner reads of a backend to render its messages
        base_url, model = "local://", "local:smollm2"

    Shape.kind = kind

    found = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp))
        try:
            runner = AgentRunner(Shape(), store, labels=LabelSet.parse("meld"))
            for instance in load_descriptors(descriptions)[:limit]:
                for agent in ("text", "audio", "vision", "tav"):
                    rendered = runner.messages(instance, agent)
                    if rendered:
                        found.append((f"{agent}/{instance.instance_id}", {"messages": rendered[0],
                                                                           "params": rendered[1]}))
        finally:
            store.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--descriptions", type=Path, help="render prompts for this descriptions file")
    parser.add_argument("--model", default="local:smollm2-scorer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--chat", action="store_true", help="compare the chat backend (local:smollm2) instead")
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args()
    if args.chat:
        compare_chat(args.descriptions, args.limit or 5, args.threads, args.max_tokens)
        return
    name = args.model.removeprefix("local:")
    path = local.LOCAL_MODELS[name].locate()
    if args.descriptions:
        requests, source = rendered_requests(args.descriptions, args.limit or 40), str(args.descriptions)
    else:
        requests, source = stored_requests(args.runs)[: args.limit or None], ", ".join(map(str, args.runs))
    print(f"{len(requests)} scorer calls from {source}; model {path.name}, "
          f"{args.threads} thread(s)")
    loaded = {}
    for label, cls in (("llama-cpp-python", ReferenceScorer), ("xllamacpp", NewScorer)):
        started = time.perf_counter()
        loaded[label] = cls(name, path, n_ctx=4096, threads=args.threads)
        print(f"  load {label}: {time.perf_counter() - started:.2f} s")
    ref, new = loaded["llama-cpp-python"], loaded["xllamacpp"]
    seconds = {"llama-cpp-python": [], "xllamacpp": []}
    rows = []
    for where, body in requests:
        messages, params = body["messages"], body["params"]
        labels, blank = tuple(params["labels"]), params.get("content_free")
        answers, probs = {}, {}
        for label, backend in (("llama-cpp-python", ref), ("xllamacpp", new)):
            started = time.perf_counter()
            probs[label] = backend.probabilities(messages[-1]["content"], labels, blank)
            seconds[label].append(time.perf_counter() - started)
            answers[label] = backend.answer(labels, probs[label], calibrated=bool(blank))
        a, b = answers["llama-cpp-python"], answers["xllamacpp"]
        conf_a = {c["label"]: c["confidence"] for c in a["candidates"]}
        conf_b = {c["label"]: c["confidence"] for c in b["candidates"]}
        rows.append({
            "call": where, "same": a == b, "same_primary": a["primary_label"] == b["primary_label"],
            "same_order": [c["label"] for c in a["candidates"]] == [c["label"] for c in b["candidates"]],
            "conf_diff": max(abs(conf_a[k] - conf_b[k]) for k in conf_a),
            "n_conf_diff": sum(conf_a[k] != conf_b[k] for k in conf_a),
            "prob_diff": max(abs(x - y) for x, y in zip(probs["llama-cpp-python"], probs["xllamacpp"], strict=True)),
            "reference": a, "xllamacpp": b,
        })
    n = len(rows)
    print(f"answers identical:            {sum(r['same'] for r in rows)} / {n}")
    print(f"primary label the same:       {sum(r['same_primary'] for r in rows)} / {n}")
    print(f"label order the same:         {sum(r['same_order'] for r in rows)} / {n}")
    largest = max((r["conf_diff"] for r in rows), default=0)
    print(f"calls with a confidence off:  {sum(r['n_conf_diff'] > 0 for r in rows)} / {n} "
          f"({sum(r['n_conf_diff'] for r in rows)} confidences, largest {largest})")
    print(f"largest |probability diff|:   {max((r['prob_diff'] for r in rows), default=0):.3g} "
          f"(median {statistics.median([r['prob_diff'] for r in rows]) if rows else 0:.3g})")
    for label, values in seconds.items():
        values = values[1:] or values  # the first call also computes the calibration prior
        print(f"s/call {label:17s}: mean {statistics.mean(values):.3f}, median {statistics.median(values):.3f}")
    ratio = statistics.median(seconds["xllamacpp"]) / statistics.median(seconds["llama-cpp-python"])
    print(f"ratio xllamacpp / llama-cpp-python (median): {ratio:.2f}")
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
