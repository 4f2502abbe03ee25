"""``modsab.ablate``: the conditions made by calling the user's model (a plain function, a
scikit-learn pipeline on arrays or on a DataFrame with a text column, a small torch module),
written with ``to_jsonl`` and audited by ``diagnose``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import modsab
from modsab.contract.errors import InputError
from modsab.contract.predictions import load_predictions
from modsab.contract.records import PredictionRecord
from modsab.core.diagnosis import diagnose


def _inputs(n=6):
    rng = np.random.default_rng(0)
    return {"image": rng.normal(size=(n, 3)), "audio": rng.normal(size=(n, 2))}


class Recorder:
    """A model over two labels that remembers what it was called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, data):
        self.calls.append({k: np.array(v) for k, v in data.items()})
        score = 1 / (1 + np.exp(-(data["image"][:, 0] + data["audio"][:, 0])))
        return np.column_stack([score, 1 - score])


def test_conditions_masks_and_batches():
    inputs = _inputs(7)
    model = Recorder()
    records = modsab.ablate(model, inputs, labels=["yes", "no"], mask=("mean", "shuffle"), batch_size=3, seed=4)
    conditions = list(dict.fromkeys(r["condition"] for r in records))
    assert conditions == ["full", "without:image", "shuffled:image", "without:audio", "shuffled:audio"]
    assert len(model.calls) == 5 * 3  # one call per condition and batch of 3 (3 + 3 + 1)
    assert [len(c["image"]) for c in model.calls[:3]] == [3, 3, 1]
    mean_image = np.vstack([c["image"] for c in model.calls[3:6]])
    np.testing.assert_allclose(mean_image, np.broadcast_to(inputs["image"].mean(axis=0), (7, 3)))
    np.testing.assert_array_equal(np.vstack([c["audio"] for c in model.calls[3:6]]), inputs["audio"])  # untouched
    shuffled = np.vstack([c["image"] for c in model.calls[6:9]])
    order = [int(np.flatnonzero((inputs["image"] == row).all(axis=1))[0]) for row in shuffled]
    assert sorted(order) == list(range(7)) and all(o != i for i, o in enumerate(order))  # another instance's
    again = modsab.ablate(Recorder(), inputs, labels=["yes", "no"], mask=("mean", "shuffle"), batch_size=3, seed=4)
    assert again == records  # seeded
    first = PredictionRecord.model_validate(records[0])  # records are contract records
    assert (first.instance_id, first.agent, first.condition) == ("0", "model", "full")
    assert (records[0].condition, records[0].gold, records[0].candidates[0].label) == (
        "full",
        None,
        first.candidates[0].label,
    )
    with pytest.raises(AttributeError):
        _ = records[0].nothing
    p_yes = 1 / (1 + np.exp(-(inputs["image"][0, 0] + inputs["audio"][0, 0])))
    ranked = sorted([("yes", p_yes * 100), ("no", (1 - p_yes) * 100)], key=lambda c: -c[1])
    assert [(c.label, c.confidence) for c in first.candidates] == [(lab, pytest.approx(v)) for lab, v in ranked]


def test_zero_callable_only_and_fields():
    inputs = _inputs(4)
    model = Recorder()
    records = modsab.ablate(
        model,
        inputs,
        streams=["audio"],
        labels=[1, 0],
        mask=lambda values, rng: values * 0 + 5,
        only=True,
        gold=[1, 0, 0, 1],
        instance_ids=["a", "b", "c", "d"],
        dataset="toy",
        agent="e2e",
    )
    assert list(dict.fromkeys(r["condition"] for r in records)) == ["full", "without:audio", "only:audio"]
    np.testing.assert_array_equal(model.calls[1]["audio"], np.full((4, 2), 5.0))
    np.testing.assert_array_equal(model.calls[2]["image"], np.full((4, 3), 5.0))  # only audio left
    np.testing.assert_array_equal(model.calls[2]["audio"], inputs["audio"])
    assert {(r["instance_id"], r["gold"], r["dataset"], r["agent"]) for r in records[:4]} == {
        ("a", "1", "toy", "e2e"),
        ("b", "0", "toy", "e2e"),
        ("c", "0", "toy", "e2e"),
        ("d", "1", "toy", "e2e"),
    }
    zero = Recorder()
    modsab.ablate(zero, inputs, labels=["yes", "no"], mask="zero")
    np.testing.assert_array_equal(zero.calls[1]["image"], np.zeros((4, 3)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": "blur"}, "unknown mask"),
        ({"mask": ("mean", "zero")}, "same condition"),
        ({"streams": ["video"]}, "not in inputs"),
        ({"labels": ["yes", "yes"]}, "distinct"),
        ({"gold": ["yes"] * 5}, "gold has 5 values"),
        ({"gold": ["maybe"] * 6}, "not among the labels"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_are_input_errors(kwargs, message):
    options = {"labels": ["yes", "no"], **kwargs}
    with pytest.raises(InputError, match=message):
        modsab.ablate(Recorder(), _inputs(6), **options)


def test_bad_model_outputs_are_input_errors():
    with pytest.raises(InputError, match="shape"):
        modsab.ablate(lambda d: np.ones((len(d["image"]), 3)) / 3, _inputs(), labels=["yes", "no"])
    with pytest.raises(InputError, match="outside"):
        modsab.ablate(lambda d: np.full((len(d["image"]), 2), 3.0), _inputs(), labels=["yes", "no"])
    with pytest.raises(InputError, match="different numbers"):
        modsab.ablate(Recorder(), {"image": np.zeros((3, 2)), "audio": np.zeros((4, 2))}, labels=["yes", "no"])


def _digits_like(n=240, seed=0):
    """Three classes; the image stream carries the label, the audio stream noise, the text a word."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    image = np.eye(3)[y] * 2 + rng.normal(scale=0.6, size=(n, 3))
    audio = rng.normal(size=(n, 4))
    words = np.array(["one", "two", "three"])[y]
    return y, image, audio, words


def test_a_scikit_learn_pipeline_on_arrays_end_to_end(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y, image, audio, _ = _digits_like()
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(np.hstack([image, audio]), y)
    records = modsab.ablate(
        lambda d: pipe.predict_proba(np.hstack([d["image"], d["audio"]])),
        {"image": image, "audio": audio},
        labels=pipe.classes_,
        gold=y,
        agent="e2e",
        mask=("mean", "shuffle"),
    )
    path = modsab.to_jsonl(records, tmp_path / "model.jsonl")
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"instance_id", "agent", "gold", "candidates", "condition"}  # unset fields left out
    section = diagnose(path, labels="0,1,2", bootstrap=100).to_dict()["ablation"]
    e2e = section["models"]["e2e"]
    full = pipe.predict_proba(np.hstack([image, audio])).argmax(axis=1)
    assert e2e["top1_full"] == pytest.approx(np.mean(full == y))
    without = pipe.predict_proba(np.hstack([np.broadcast_to(image.mean(axis=0), image.shape), audio])).argmax(axis=1)
    image_entry = e2e["streams"]["image"]
    assert image_entry["top1_without"] == pytest.approx(np.mean(without == y))
    assert image_entry["causal_sabotage_rate"] == pytest.approx(np.mean((full != y) & (without == y)))
    assert image_entry["causal_contribution_rate"] == pytest.approx(np.mean((full == y) & (without != y)))
    assert image_entry["flip_rate"] == pytest.approx(np.mean(full != without))
    assert image_entry["top1_drop"] > 0.4  # the image carries the label
    assert image_entry["shuffled"]["perceptual_score"] > 0.4
    assert abs(e2e["streams"]["audio"]["top1_drop"]) < 0.1  # audio is noise


def test_a_scikit_learn_pipeline_on_a_dataframe_with_a_text_column(tmp_path):
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    y, image, audio, words = _digits_like()
    frame = pd.DataFrame(image, columns=["i0", "i1", "i2"]).assign(caption=words, a0=audio[:, 0])
    frame.index = [f"x{i}" for i in range(len(frame))]
    pipe = make_pipeline(
        ColumnTransformer([("img", "passthrough", ["i0", "i1", "i2"]), ("txt", CountVectorizer(), "caption")]),
        LogisticRegression(max_iter=500),
    ).fit(frame, y)
    records = modsab.ablate(
        pipe.predict_proba,
        frame,
        streams={"image": ["i0", "i1", "i2"], "text": ["caption"], "audio": ["a0"]},
        labels=pipe.classes_,
        gold=y,
    )
    assert records[0]["instance_id"] == "x0"  # the DataFrame's index
    without_text = [r for r in records if r["condition"] == "without:text"]
    blank = frame.assign(caption="")
    expected = pipe.predict_proba(blank).max(axis=1) * 100
    np.testing.assert_allclose([r["candidates"][0]["confidence"] for r in without_text], expected)
    section = diagnose(modsab.to_jsonl(records, tmp_path / "m.jsonl"), labels="0,1,2", bootstrap=0)
    streams = section.to_dict()["ablation"]["models"]["model"]["streams"]
    assert set(streams) == {"image", "text", "audio"}
    assert streams["audio"]["flip_rate"] < streams["text"]["flip_rate"]


def test_a_torch_module_that_ignores_a_stream_has_every_rate_zero(tmp_path):
    torch = pytest.importorskip("torch")
    y, image, audio, _ = _digits_like(120)

    class Fusion(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.image = torch.nn.Linear(3, 3)
            self.audio = torch.nn.Linear(4, 3)
            with torch.no_grad():
                self.image.weight.copy_(torch.eye(3) * 3)
                self.image.bias.zero_()
                self.audio.weight.zero_()  # the model ignores audio entirely
                self.audio.bias.zero_()

        def forward(self, image, audio):
            return torch.softmax(self.image(image) + self.audio(audio), dim=1)

    net = Fusion().eval()

    def predict(d):
        with torch.no_grad():
            return net(
                torch.as_tensor(d["image"], dtype=torch.float32), torch.as_tensor(d["audio"], dtype=torch.float32)
            )

    records = modsab.ablate(
        predict, {"image": image, "audio": audio}, labels=[0, 1, 2], gold=y, mask=["zero", "shuffle"]
    )
    section = diagnose(modsab.to_jsonl(records, tmp_path / "t.jsonl"), labels="0,1,2", bootstrap=50).to_dict()
    audio_entry = section["ablation"]["models"]["model"]["streams"]["audio"]
    for key in ("causal_sabotage_rate", "causal_contribution_rate", "flip_rate", "top1_drop"):
        assert audio_entry[key] == 0
    assert audio_entry["shuffled"]["perceptual_score"] == 0 and audio_entry["shuffled"]["flip_rate"] == 0
    assert section["ablation"]["ci"]["models.model.streams.audio.causal_sabotage_rate"] == [0.0, 0.0]
    assert section["ablation"]["models"]["model"]["streams"]["image"]["top1_drop"] > 0.3


def test_records_load_back_exactly(tmp_path):
    inputs = _inputs(5)
    records = modsab.ablate(Recorder(), inputs, labels=["yes", "no"], gold=["yes", "no", "no", "yes", "no"])
    path = modsab.to_jsonl(records, tmp_path / "r.jsonl")
    pset = load_predictions(path, labels="yes,no")
    assert pset.agents == () and pset.ablation.columns == (
        ("model", "full"),
        ("model", "without:audio"),  # canonical order: full, then each removal by stream name
        ("model", "without:image"),
    )
    proba = Recorder()(inputs)
    np.testing.assert_allclose(pset.ablation.scores[:, 0], proba, rtol=0, atol=1e-12)
    modsab.to_jsonl([{"instance_id": "z", "agent": "t", "candidates": [], "gold": "yes"}], path, append=True)
    assert load_predictions(path, labels="yes,no").agents == ("t",)
