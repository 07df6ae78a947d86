"""Silence and noise: clips that are not music, and the answers that say so (data_gen/not_music.py).

What users rely on: a silent file, a hiss or a hum is answered as what it is, whatever they ask;
the training data that teaches it holds every such sound in each split, at the levels its labels
state, and answers each kind of question with its own sentence.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_gen import not_music
from data_gen.formats import read_jsonl, validate_conversation
from data_gen.writers.phrases import PROMPTS
from data_gen.writers.template_qa import QUESTIONS
from eval.follow import WORDINGS


def rms_db(samples: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(samples.astype(np.float64) ** 2)) + 1e-12)


def low_share(samples: np.ndarray, sample_rate: int) -> float:
    """The share of the power below 500 Hz."""
    power = np.abs(np.fft.rfft(samples)) ** 2
    return float(power[np.fft.rfftfreq(len(samples), 1 / sample_rate) < 500].sum() / power.sum())


def test_every_sound_is_in_each_split_at_the_level_its_labels_state(tmp_path):
    rows = not_music.synthesize(tmp_path, clips=18, seconds=(2.0, 3.0))
    manifest = [json.loads(line, parse_constant=pytest.fail) for line in (tmp_path / "manifest.jsonl").open()]
    assert manifest == rows and len(rows) == 18  # strict JSON: no -Infinity for digital silence
    for split in ("train", "valid", "test"):
        held = [r for r in rows if r["split"] == split]
        assert sorted(r["labels"]["sound_detail"] for r in held) == sorted(d for _, d in not_music.SOUNDS), split
    low = {}
    for row in rows:
        samples, rate = sf.read(tmp_path / row["audio"], dtype="float32")
        assert rate == 22050 and 2.0 <= row["duration"] <= 3.0 and samples.ndim == 1
        labels = row["labels"]
        if labels["sound_detail"] == "digital":
            assert labels["sound"] == "silence" and not samples.any() and labels["rms_dbfs"] is None
            continue
        # 16-bit FLAC: a room tone of -90 dBFS is a sample or two of 65536
        assert rms_db(samples) == pytest.approx(labels["rms_dbfs"], abs=3.0), row["id"]
        low_db, high_db = not_music.ROOM_TONE_DB if labels["sound"] == "silence" else not_music.NOISE_DB
        assert low_db <= labels["rms_dbfs"] <= high_db
        low.setdefault(labels["sound_detail"], []).append(low_share(samples, rate))
    # white noise spreads its power over the band, brown puts it in the bass, pink between, hum all low
    mean = {detail: float(np.mean(shares)) for detail, shares in low.items()}
    assert mean["white"] < 0.1 < mean["pink"] < mean["brown"] and mean["hum"] > 0.9
    again = not_music.synthesize(tmp_path / "again", clips=18, seconds=(2.0, 3.0))
    assert again == rows  # the same options, the same clips
    assert np.array_equal(sf.read(tmp_path / "again" / rows[3]["audio"])[0], sf.read(tmp_path / rows[3]["audio"])[0])


def test_each_question_gets_its_own_answer_saying_what_the_clip_is(tmp_path):
    not_music.synthesize(tmp_path / "not_music", clips=12, seconds=(1.0, 1.5))
    out = tmp_path / "data" / "not_music.jsonl"
    count = not_music.conversations(tmp_path / "not_music" / "manifest.jsonl", out)
    records = list(read_jsonl(out))
    train = [r for r in read_jsonl(tmp_path / "not_music" / "manifest.jsonl") if r["split"] == "train"]
    assert count == len(records) == len(train) * (len(not_music.ANSWERS) + 1) == 6 * 7
    sound = {r["id"]: r["labels"]["sound"] for r in train}
    training_questions = {q for qs in QUESTIONS.values() for q in qs} | set(PROMPTS["caption"])
    evaluation_questions = {q for qs in WORDINGS.values() for q in qs}
    rhythm_questions = set(QUESTIONS["tempo"]) | set(QUESTIONS["metre"])
    by_clip = {}
    for record in records:
        validate_conversation(record)
        assert (out.parent / record["audio"][0]).is_file()  # relative to the file, as training reads it
        label = sound[record["clip_id"]]
        for asked, said in zip(record["messages"][::2], record["messages"][1::2]):
            question = asked["content"].removeprefix("<|audio|>\n")
            assert question in training_questions and question not in evaluation_questions
            # never the tempo or the metre: they taught the LLM to misread the music's (README, AH)
            assert question not in rhythm_questions, question
            answer = said["content"]
            assert ("silent" in answer) == (label == "silence") and ("noise" in answer) == (label == "noise"), answer
            by_clip.setdefault(record["clip_id"], []).append(answer)
        if record["task"] == "dialogue":
            assert len(record["messages"]) == 2 * not_music.DIALOGUE_TURNS
    for clip, answers in by_clip.items():  # a clip's single questions: one answer per kind, no two alike
        assert len(set(answers)) == len(not_music.ANSWERS), clip


def test_too_few_clips_or_no_train_clips_are_errors_that_say_so(tmp_path, capsys):
    assert not_music.main(["--out", str(tmp_path / "few"), "--clips", "3"]) == 2
    assert "--clips 3: at least 6" in capsys.readouterr().err
    not_music.synthesize(tmp_path / "one", clips=6)  # one block: the test split only
    with pytest.raises(ValueError, match="no train clips"):
        not_music.conversations(tmp_path / "one" / "manifest.jsonl", tmp_path / "c.jsonl")
