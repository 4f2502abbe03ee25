"""A non-emotion study with sabotage planted in the input: spoken, written and handwritten digits.

    python examples/digits-ablation/study.py            # ~1 min on 2 cores, offline, deterministic
    python examples/digits-ablation/study.py --out DIR  # default: runs/digits-ablation

Every instance is one digit 0-9 in three streams, all from real data or real tools:

- **image**: a handwritten digit from scikit-learn's bundled copy of the UCI digits (8x8
  pixels, 1,797 images by 43 writers), with pixel noise;
- **audio**: the digit's name spoken by espeak-ng (one of 16 voice / rate / pitch variants),
  mixed with white noise at a random signal-to-noise ratio, as log energies in 16 bands x 4
  time segments (numpy; openSMILE would cost ~0.15 s per clip here, minutes for the set);
- **text**: the digit's name in English, French, German or Spanish with a third of its
  letters replaced at random, as hashed character n-grams.

Half the images (stratified, seeded) train an **early-fusion model** (standard scaler and
logistic regression over the three streams concatenated); the other half is the test set.
On a known quarter of the test instances the **audio stream is swapped** with that of
another test instance of a different digit: the planted sabotage (``truth.jsonl``).

The test set goes through ``modsab run`` as a manifest of trimodal features: three probe
agents (one per stream, cross-fitted), fused and audited as usual, with the counterfactual
(leave-one-out) test; and the model, audited by ablation: ``modsab.ablate`` asks it again
with each stream replaced by its mean (``without:<stream>``) and by another instance's
(``shuffled:<stream>``), and its records reach the run as a precomputed agent. The script
then scores both audits against the planted truth: per (instance, stream), a flag is the
audit saying "this stream caused the wrong answer" (the model: wrong with the stream, right
without it; the agents' fusion: wrong with the agent reading it, right without it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

import modsab  # noqa: E402

STREAMS = ("image", "audio", "text")
WORDS = {
    "en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "fr": ["zero", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"],
    "de": ["null", "eins", "zwei", "drei", "vier", "fuenf", "sechs", "sieben", "acht", "neun"],
    "es": ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"],
}
VOICES = [f"{v}{x}" for v in ("en-us", "en-gb", "en-gb-scotland", "en-029") for x in ("", "+f3")]
RATES = ((140, 35), (185, 65))  # words per minute, pitch
SEED = 0
PLANTED_SHARE = 0.25
IMAGE_NOISE = 0.45
TEXT_NOISE = 0.35
SNR_DB = (-6.0, 12.0)


# -- the three streams ----------------------------------------------------------------------------


def speak(cache: Path) -> dict[tuple[int, int], np.ndarray]:
    """The ten digit names in every voice variant, spoken by espeak-ng (cached as WAV files)."""
    cache.mkdir(parents=True, exist_ok=True)
    variants = [(voice, rate, pitch) for voice in VOICES for rate, pitch in RATES]
    jobs = [(digit, j, *variant) for digit in range(10) for j, variant in enumerate(variants)]

    def one(job):
        digit, j, voice, rate, pitch = job
        path = cache / f"{digit}_{j}.wav"
        if not path.exists():
            tmp = path.with_suffix(".tmp.wav")
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(tmp), WORDS["en"][digit]],
                check=True,
                capture_output=True,
            )
            tmp.replace(path)
        return (digit, j), read_wav(path)

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, jobs))


def read_wav(path: Path) -> np.ndarray:
    """A mono 16-bit PCM WAV file (what espeak-ng writes) as floats in [-1, 1]."""
    import wave

    with wave.open(str(path), "rb") as handle:
        frames = handle.readframes(handle.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0


def band_energies(wave: np.ndarray, rate: int = 22050, bands: int = 16, segments: int = 4) -> np.ndarray:
    """Log energy in ``bands`` log-spaced bands (100 Hz - 8 kHz) over ``segments`` equal parts of
    the voiced frames, centred: a small spectrogram summary of one spoken word."""
    frame, hop = 512, 256
    wave = np.pad(wave, (0, max(0, frame - len(wave))))
    starts = hop * np.arange(1 + (len(wave) - frame) // hop)
    spectrum = np.abs(np.fft.rfft(wave[starts[:, None] + np.arange(frame)] * np.hanning(frame), axis=1)) ** 2
    energy = spectrum.sum(axis=1)
    voiced = energy > energy.max() * 1e-3
    if voiced.sum() >= segments:
        spectrum = spectrum[voiced]
    freqs = np.fft.rfftfreq(frame, 1 / rate)
    edges = np.geomspace(100, 8000, bands + 1)
    pairs = zip(edges[:-1], edges[1:], strict=True)
    band = np.stack([spectrum[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in pairs], axis=1)
    parts = np.array_split(np.log(band + 1e-10), segments)
    features = np.concatenate([part.mean(axis=0) for part in parts])
    return features - features.mean()


def streams(digits: np.ndarray, images: np.ndarray, cache: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The image, audio and text features of every instance."""
    from sklearn.feature_extraction.text import HashingVectorizer

    n = len(digits)
    image = images / 16.0 + rng.normal(scale=IMAGE_NOISE, size=images.shape)
    spoken = speak(cache)
    n_variants = len(VOICES) * len(RATES)
    variant = rng.integers(n_variants, size=n)
    snr = rng.uniform(*SNR_DB, size=n)
    audio = np.empty((n, 64))
    for i in range(n):
        wave = spoken[(int(digits[i]), int(variant[i]))]
        noise = rng.normal(size=wave.shape) * np.sqrt(np.mean(wave**2) / 10 ** (snr[i] / 10))
        audio[i] = band_energies(wave + noise)
    languages = list(WORDS)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    texts = []
    for i in range(n):
        word = np.array(list(WORDS[languages[rng.integers(len(languages))]][digits[i]]))
        swap = rng.random(len(word)) < TEXT_NOISE
        word[swap] = rng.choice(letters, size=int(swap.sum()))
        texts.append("".join(word))
    hashed = HashingVectorizer(analyzer="char_wb", ngram_range=(1, 3), n_features=64, alternate_sign=False)
    text = hashed.transform(texts).toarray()
    return {"image": image, "audio": audio, "text": text}, texts


# -- the study --------------------------------------------------------------------------------------


def probe(C: float = 1.0):
    """One stream's agent: logistic regression with sigmoid calibration, the recipe of
    modsab's probe agents (``kind = "probe"``)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    base = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=SEED))
    return CalibratedClassifierCV(base, method="sigmoid", cv=3)


def build(out: Path, *, probes: str = "train") -> dict:
    """Data, model, planted sabotage, the model's ablation records and the run config.

    ``probes="train"``: the probe agents learn on the same clean training half as the model
    (precomputed agents); ``"crossfit"``: modsab's probe agents learn from the manifest's
    features, cross-fitted on the (planted) test instances themselves."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(SEED)
    digits = load_digits()
    features, texts = streams(digits.target, digits.data, out / "speech", rng)
    index = np.arange(len(digits.target))
    train, test = train_test_split(index, test_size=0.5, stratify=digits.target, random_state=SEED)
    test = np.sort(test)
    y = digits.target

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))
    model.fit(np.hstack([features[s][train] for s in STREAMS]), y[train])

    # plant: a quarter of the test instances hear another test instance's digit (a different one)
    planted = np.sort(rng.choice(len(test), size=int(round(PLANTED_SHARE * len(test))), replace=False))
    test_features = {s: features[s][test].copy() for s in STREAMS}
    donors = []
    for position in planted:
        others = np.flatnonzero(y[test] != y[test][position])
        donor = int(rng.choice(others))
        donors.append(donor)
        test_features["audio"][position] = features["audio"][test][donor]
    ids = [f"d{int(i):04d}" for i in test]
    truth = [
        {"instance_id": ids[p], "stream": "audio", "donor": ids[d], "heard": int(y[test][d])}
        for p, d in zip(planted, donors, strict=True)
    ]

    out.mkdir(parents=True, exist_ok=True)
    (out / "truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth), encoding="utf-8")
    import pandas as pd

    columns = {s: [f"{s[:3]}_{j:02d}" for j in range(test_features[s].shape[1])] for s in STREAMS}
    manifest = pd.DataFrame({"instance_id": ids, "gold": [str(v) for v in y[test]], "dataset": "digits"})
    for s in STREAMS:
        manifest = pd.concat([manifest, pd.DataFrame(np.round(test_features[s], 6), columns=columns[s])], axis=1)
    manifest["caption"] = [texts[i] for i in test]  # shown in the report; the text probe reads txt_*
    manifest.to_csv(out / "manifest.csv", index=False)

    records = modsab.ablate(
        lambda d: model.predict_proba(np.hstack([d[s] for s in STREAMS])),
        test_features,
        labels=model.classes_,
        gold=y[test],
        instance_ids=ids,
        dataset="digits",
        agent="early_fusion",
        mask=("mean", "shuffle"),
        seed=SEED,
    )
    modsab.to_jsonl(records, out / "early_fusion.jsonl")

    if probes == "train":
        from modsab.agents.probes import probe_records

        rows = []
        for s in STREAMS:
            fitted = probe().fit(features[s][train], y[train])
            proba = fitted.predict_proba(test_features[s])
            labels = [str(c) for c in fitted.classes_]
            rows += probe_records(ids, proba, labels, agent=f"{s}_probe", gold=[str(v) for v in y[test]])
        modsab.to_jsonl(rows, out / "probes.jsonl")
        agents = "".join(
            f'\n[[agents]]\nname = "{s}_probe"\nkind = "precomputed"\npath = "probes.jsonl"\n' for s in STREAMS
        )
    else:
        agents = "".join(
            f'\n[[agents]]\nname = "{s}_probe"\nkind = "probe"\nfeatures = {json.dumps(columns[s])}\n' for s in STREAMS
        )
    (out / "run.toml").write_text(
        "# Written by examples/digits-ablation/study.py: three probe agents on the manifest's features, fused and\n"
        "# audited; the early-fusion model's answers under conditions (modsab.ablate) as a precomputed agent.\n"
        '[run]\ndir = "run"\n\n[dataset]\nloader = "manifest"\npath = "manifest.csv"\nlabels = "0,1,2,3,4,5,6,7,8,9"\n'
        f"{agents}\n"
        '[[agents]]\nname = "early_fusion"\nkind = "precomputed"\npath = "early_fusion.jsonl"\n\n'
        '[audit]\nbootstrap = 1000\nseed = 0\ndiagnostics = ["causal"]\n',
        encoding="utf-8",
    )
    return {
        "n_test": len(test),
        "n_planted": len(planted),
        "train_top1": float(model.score(np.hstack([features[s][train] for s in STREAMS]), y[train])),
    }


def _bootstrap(flags: np.ndarray, planted: np.ndarray, resamples: int = 1000, seed: int = 0):
    """Precision and recall of ``flags[n, S]`` against ``planted[n, S]``, each with a percentile
    interval over instances resampled with replacement."""
    rng = np.random.default_rng(seed)
    per = np.column_stack([(flags & planted).sum(1), flags.sum(1), planted.sum(1)]).astype(float)
    draws = rng.multinomial(len(per), np.full(len(per), 1 / len(per)), size=resamples) @ per
    with np.errstate(invalid="ignore", divide="ignore"):
        precision, recall = draws[:, 0] / draws[:, 1], draws[:, 0] / draws[:, 2]
    total = per.sum(0)

    def interval(values):
        values = values[np.isfinite(values)]
        return [round(float(v), 3) for v in np.percentile(values, [2.5, 97.5])] if values.size else [None, None]

    return {
        "flagged": int(total[1]),
        "planted": int(total[2]),
        "hits": int(total[0]),
        "precision": round(float(total[0] / total[1]), 3) if total[1] else None,
        "precision_ci": interval(precision),
        "recall": round(float(total[0] / total[2]), 3) if total[2] else None,
        "recall_ci": interval(recall),
    }


def score(out: Path) -> dict:
    """Both audits against the planted truth, per (instance, stream)."""
    import pandas as pd

    table = pd.read_parquet(out / "run" / "instances.parquet")
    diagnosis = json.loads((out / "run" / "diagnosis.json").read_text(encoding="utf-8"))
    truth = {t["instance_id"] for t in map(json.loads, (out / "truth.jsonl").read_text().splitlines())}
    planted = np.column_stack([table["instance_id"].isin(truth) & (s == "audio") for s in STREAMS])
    model = np.column_stack([table[f"early_fusion.without:{s}.causal"] == "saboteur" for s in STREAMS])
    agents = np.column_stack([table[f"{s}_probe.causal"] == "saboteur" for s in STREAMS])
    model_wrong = (table["early_fusion.full.top"] != table["gold"]).to_numpy()
    fusion_wrong = ~table["hit_at_1"].to_numpy()
    ablation = diagnosis["ablation"]
    model_rates = {s: ablation["models"]["early_fusion"]["streams"][s]["causal_sabotage_rate"] for s in STREAMS}
    agent_rates = {s: ablation["fusion"]["agents"][f"{s}_probe"]["causal_sabotage_rate"] for s in STREAMS}
    scores = {}
    for name, flags, wrong, rates in (
        ("ablation (model)", model, model_wrong, model_rates),
        ("causal (agents' fusion)", agents, fusion_wrong, agent_rates),
    ):
        entry = _bootstrap(flags, planted)
        effective = planted & wrong[:, None]  # planted where the answer was in fact wrong
        entry["recall_where_wrong"] = round(float((flags & effective).sum() / effective.sum()), 3)
        entry["wrong_planted"] = int(effective.sum())
        entry["stream_named"] = max(rates, key=lambda s: rates[s] or 0)
        entry["causal_sabotage_rate"] = {s: round(r, 3) for s, r in rates.items()}
        scores[name] = entry
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    return scores


def print_scores(scores: dict, facts: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    table = Table(title="Planted audio swaps against both audits, per (instance, stream)", title_justify="left")
    headers = (
        "audit",
        "names",
        "causal sabotage image / audio / text",
        "flagged",
        "planted",
        "precision [95% CI]",
        "recall [95% CI]",
        "recall where wrong",
    )
    for header in headers:
        table.add_column(header, justify="left" if header in ("audit", "names") else "right")
    for name, e in scores.items():
        rates = " / ".join(f"{e['causal_sabotage_rate'][s]:.3f}" for s in STREAMS)
        table.add_row(
            name,
            e["stream_named"],
            rates,
            str(e["flagged"]),
            str(e["planted"]),
            f"{e['precision']:.3f} [{e['precision_ci'][0]:.3f}, {e['precision_ci'][1]:.3f}]",
            f"{e['recall']:.3f} [{e['recall_ci'][0]:.3f}, {e['recall_ci'][1]:.3f}]",
            f"{e['recall_where_wrong']:.3f} of {e['wrong_planted']}",
        )
    console.print(table)
    console.print(
        f"{facts['n_test']} test instances, {facts['n_planted']} with another digit's audio planted; "
        "'recall where wrong': over the planted instances whose answer (model / fusion) was wrong"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/digits-ablation"), help="where everything goes")
    parser.add_argument("--quiet", action="store_true", help="only the scores table")
    parser.add_argument(
        "--probes",
        choices=("train", "crossfit"),
        default="train",
        help="train: probes learn on the model's clean training half; crossfit: modsab's probe agents "
        "cross-fitted on the planted test instances",
    )
    args = parser.parse_args(argv)
    from modsab.run.config import load_config
    from modsab.run.pipeline import run_pipeline
    from modsab.views.terminal import print_summary

    start = time.perf_counter()
    facts = build(args.out, probes=args.probes)
    outcome = run_pipeline(load_config(args.out / "run.toml"), log=None if args.quiet else print, progress=False)
    if not args.quiet:
        print_summary(outcome.diagnosis)
    scores = score(args.out)
    print_scores(scores, facts)
    print(f"done in {time.perf_counter() - start:.0f} s; run directory {args.out / 'run'}")
    return scores


if __name__ == "__main__":
    main()
