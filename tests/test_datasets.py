"""Dataset loaders: each reports what it skipped and why."""

from __future__ import annotations

import json

import pytest

from modsab.contract.errors import InputError
from modsab.contract.labels import LeakageChecker
from modsab.data.loaders import ClipDescriptions, Iemocap, Manifest, Meld, Ravdess, load_dataset


def make_iemocap(root):
    """A small fixture in the exact layout of the IEMOCAP release."""
    session = root / "Session1"
    (session / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (session / "dialog" / "transcriptions").mkdir(parents=True)
    utterances = {
        "Ses01F_impro01_F000": ("neu", "Excuse me."),
        "Ses01F_impro01_M000": ("fru", "Do you have your forms?"),
        "Ses01F_impro01_F001": ("exc", "Yeah, I got it!"),
        "Ses01F_impro01_M001": ("xxx", "Let me see them."),
        "Ses01F_impro01_F002": ("ang", "Why?"),
        "Ses01F_impro01_M002": ("sad", "Missing wav here."),
    }
    header = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
    lines, script = [header], []
    for i, (utt, (code, text)) in enumerate(utterances.items()):
        lines.append(f"[{6.29 + i:.4f} - {8.23 + i:.4f}]\t{utt}\t{code}\t[2.5000, 2.5000, 2.5000]\n")
        lines.append(f"C-E1:\t{code.title()};\t()\n\n")
        script.append(f"{utt} [{6.29 + i:08.4f}-{8.23 + i:08.4f}]: {text}\n")
        if not utt.endswith("M002"):
            wav = session / "sentences" / "wav" / "Ses01F_impro01" / f"{utt}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            wav.write_bytes(b"RIFF")
    (session / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text("".join(lines))
    (session / "dialog" / "transcriptions" / "Ses01F_impro01.txt").write_text("".join(script))
    return root


def test_iemocap_four_classes_merge_excited(tmp_path):
    loaded = Iemocap(make_iemocap(tmp_path)).load()
    got = {i.instance_id: i.gold for i in loaded.instances}
    assert got == {"Ses01F_impro01_F000": "neutral", "Ses01F_impro01_F001": "happy", "Ses01F_impro01_F002": "angry"}
    reasons = {s.item: s.reason for s in loaded.skipped}
    assert "not in the 4-class map" in reasons["Ses01F_impro01_M000"]  # frustrated
    assert "'xxx'" in reasons["Ses01F_impro01_M001"]
    assert reasons["Ses01F_impro01_M002"].startswith("missing file")
    first = next(i for i in loaded.instances if i.instance_id == "Ses01F_impro01_F000")
    assert first.transcript == "Excuse me." and first.speaker == "Ses01F" and first.split == "Session1"
    assert first.audio_path.name == "Ses01F_impro01_F000.wav"


def test_iemocap_six_classes(tmp_path):
    loaded = Iemocap(make_iemocap(tmp_path), classes=6).load()
    got = {i.instance_id: i.gold for i in loaded.instances}
    assert got["Ses01F_impro01_M000"] == "frustrated" and got["Ses01F_impro01_F001"] == "excited"
    assert list(loaded.labels) == ["neutral", "happy", "sad", "angry", "excited", "frustrated"]


def test_iemocap_without_sessions(tmp_path):
    with pytest.raises(InputError, match="no Session"):
        Iemocap(tmp_path).load()


def test_manifest_paths_labels_and_descriptors(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    rows = [
        {"instance_id": "x1", "gold": "Happy", "audio_path": "a.wav", "speaker": "s1", "note": "[1, 2]"},
        {"instance_id": "x2", "gold": "boredom", "audio_path": "a.wav"},
        {"instance_id": "x3", "gold": "sad", "audio_path": "missing.wav"},
        {"instance_id": "x4", "gold": "sad", "transcript": "hi", "true_label": "sad"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    loaded = Manifest(path, labels="ravdess").load()
    assert [i.instance_id for i in loaded.instances] == ["x1", "x4"]
    assert loaded.instances[0].gold == "happy" and loaded.instances[0].audio_path == tmp_path / "a.wav"
    assert loaded.instances[0].descriptors == {"note": "1; 2"}
    assert "true_label" not in loaded.instances[1].descriptors
    assert loaded.skipped_by_reason() == {"unknown label": 1, "missing file": 1}


def test_manifest_duplicate_id_names_lines(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("instance_id,gold\na,joy\na,joy\n")
    with pytest.raises(InputError, match="appears twice") as info:
        Manifest(path).load()
    assert ":3" in str(info.value)


def test_meld_csvs(data_dir):
    loaded = Meld(data_dir / "meld").load()
    assert len(loaded.instances) == 2610 and not loaded.skipped
    first = loaded.instances[0]
    assert first.instance_id == "dia0_utt0" and first.gold == "surprise" and first.speaker == "Mark"
    every = Meld(data_dir / "meld", splits=("train", "dev", "test")).load()
    assert len(every.instances) == 13708
    assert len({i.instance_id for i in every.instances}) == 13708  # ids unique across splits


def test_meld_clip_folder_reports_missing_clips(data_dir, tmp_path):
    (tmp_path / "dia0_utt0.mp4").write_bytes(b"")
    loaded = Meld(data_dir / "meld", clips=tmp_path, limit=3).load()
    assert loaded.instances[0].video_path == tmp_path / "dia0_utt0.mp4"
    assert loaded.instances[1].video_path is None
    assert any("missing file" in n.reason for n in loaded.notes)


def test_clip_descriptions_never_pass_the_label(data_dir):
    loaded = ClipDescriptions(data_dir / "meld_descriptions" / "meld_annotation.json").load()
    assert len(loaded.instances) == 191
    first = loaded.instances[0]
    assert first.instance_id == "dia233_utt4"
    assert "fine-grained_summary" not in first.descriptors and "true_label" not in first.descriptors
    assert first.descriptors["visual_expression_description"].startswith("slightly Cheek Raiser; ")
    assert sorted({i.gold for i in loaded.instances}) == sorted(loaded.labels)


def test_clip_descriptions_parse_literal_strings_safely(tmp_path):
    row = {
        "video_id": "dia1_utt1.mp4",
        "true_label": "joy",
        "visual_expression_description": "['a', 'b']",
        "raw_AU_values_at_peak": "{'AU01': 0.5}",
        "transcript": "__import__('os').system('echo hi')",
    }
    path = tmp_path / "d.json"
    path.write_text(json.dumps([row]))
    inst = ClipDescriptions(path).load().instances[0]
    assert inst.descriptors["visual_expression_description"] == "a; b"
    assert inst.descriptors["raw_AU_values_at_peak"] == "AU01: 0.5"
    assert inst.transcript == row["transcript"]  # never evaluated


def test_ravdess_names(data_dir):
    loaded = Ravdess(data_dir / "ravdess").load()
    assert len(loaded.instances) == 1443
    by_id = {i.instance_id: i for i in loaded.instances}
    av = by_id["01-01-01-01-01-01-01"]
    assert av.video_path is not None and av.gold == "neutral"
    angry = by_id["03-01-05-02-01-01-01"]
    assert angry.gold == "angry" and angry.meta["intensity"] == "strong" and angry.speaker == "actor01"
    assert {i.gold for i in loaded.instances} == set(loaded.labels)


def test_ravdess_limit_and_split(data_dir):
    loaded = load_dataset("ravdess", data_dir / "ravdess" / "speech_16k", split="actor03", limit=5)
    assert len(loaded.instances) == 5 and all(i.speaker == "actor03" for i in loaded.instances)


def test_unknown_loader():
    with pytest.raises(InputError, match="unknown dataset loader"):
        load_dataset("coco", ".")


def test_leakage_checker_finds_label_words_in_meld_descriptions(data_dir):
    loaded = ClipDescriptions(data_dir / "meld_descriptions" / "meld_annotation.json").load()
    checker = LeakageChecker(loaded.labels)
    leaks = [leak for i in loaded.instances for leak in checker.check({"audio": i.descriptors["audio_description"]})]
    assert leaks, "the MELD audio descriptions are known to name emotions"
