"""Caption metrics on known values, and the attribute score on hand-written captions."""

import json

import pytest

from eval.caption_metrics import bleu, caption_metrics, meteor, rouge_l, tokenize
from eval.captioning import attribute_accuracy, load_references, main, summarize_attributes

HYP, REF = "the cat sat on the mat", "the cat is on the mat"


def test_tokens_keep_musical_spellings():
    assert tokenize("A waltz in 3/4, F# minor; hip-hop & R&B at 120 BPM.") == [
        "a", "waltz", "in", "3/4", "f#", "minor", "hip-hop", "r&b", "at", "120", "bpm"]


def test_identical_and_disjoint():
    text = "a calm piano piece in c major"
    assert bleu([text], [[text]]) == pytest.approx([1.0] * 4)
    assert rouge_l([text], [[text]]) == pytest.approx(1.0)
    assert meteor([text], [[text]]) == pytest.approx(1 - 0.5 / 7**3)  # one chunk of 7 words
    assert bleu(["loud drums"], [[text]]) == [0.0] * 4
    assert rouge_l(["loud drums"], [[text]]) == meteor(["loud drums"], [[text]]) == 0.0


def test_hand_computed_example():
    # unigrams 5/6, bigrams 3/5, same length: BLEU-2 = sqrt(5/6 * 3/5)
    scores = bleu([HYP], [[REF]])
    assert scores[0] == pytest.approx(5 / 6) and scores[1] == pytest.approx(0.5**0.5)
    assert scores[2] == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3))  # trigrams: only "on the mat"
    assert scores[3] == 0.0  # no 4-gram matches: no smoothing
    assert rouge_l([HYP], [[REF]]) == pytest.approx(5 / 6)  # LCS "the cat on the mat"
    # 5 matches in 2 chunks ("the cat" | "on the mat"), P = R = 5/6
    assert meteor([HYP], [[REF]]) == pytest.approx(5 / 6 * (1 - 0.5 * (2 / 5) ** 3))
    # the best reference counts; brevity penalty for a short hypothesis
    assert rouge_l([HYP], [["loud drums", REF]]) == pytest.approx(5 / 6)
    assert bleu(["the cat"], [[REF]])[0] == pytest.approx(__import__("math").exp(1 - 6 / 2))
    assert set(caption_metrics([HYP], [[REF]])) == {
        "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR (exact match only)", "ROUGE-L"}


LABELS = {"tempo_bpm": 121.0, "key": "F#", "mode": "minor", "time_signature": "3/4",
          "instruments": ["Acoustic Grand Piano", "Electric Bass (finger)", "drums"], "genre": "hip-hop"}


def statuses(caption, labels=LABELS):
    return {k: v["status"] for k, v in attribute_accuracy(caption, labels).items()}


def test_classical_music_is_right_about_the_corpus_classical_textures():
    # The corpus labels string quartets, orchestras and choirs by texture; all of them are classical music.
    for texture in ("chamber", "orchestral", "choral"):
        assert statuses("This is classical music for strings.", {"genre": texture}) == {"genre": "correct"}
        assert statuses(f"A {texture} piece.", {"genre": texture}) == {"genre": "correct"}
        assert statuses("A folk song.", {"genre": texture}) == {"genre": "wrong"}
    assert statuses("An orchestral piece.", {"genre": "classical"}) == {"genre": "correct"}
    assert statuses("Classical music.", {"genre": "brass band"}) == {"genre": "wrong"}


def test_attribute_accuracy_on_hand_written_captions():
    right = "A hip-hop track in F# minor at 121 BPM, in 3/4, with piano, bass and a drum kit."
    assert statuses(right) == dict.fromkeys(["tempo_bpm", "key", "mode", "time_signature", "instruments", "genre"], "correct")
    assert attribute_accuracy(right, LABELS)["instruments"]["recall"] == 1.0
    wrong = "A slow jazz ballad in A major, four beats to the bar, played on a flute."
    assert statuses(wrong) == {"tempo_bpm": "not_stated", "key": "wrong", "mode": "wrong", "time_signature": "wrong",
                               "instruments": "wrong", "genre": "wrong"}  # "slow" is no tempo without a tempo noun
    assert statuses("It has a slow tempo.")["tempo_bpm"] == "wrong"
    assert statuses("It moves at 124 BPM.", {"tempo_bpm": 127.0})["tempo_bpm"] == "correct"  # other band, within 4%
    assert statuses("It moves at 90 BPM.")["tempo_bpm"] == "wrong"
    assert statuses("Its pace is medium-fast.")["tempo_bpm"] == "correct"
    assert set(statuses("Some music.").values()) == {"not_stated"}
    partial = attribute_accuracy("Piano and a synth pad.", LABELS)["instruments"]
    assert partial == {"status": "correct", "recall": pytest.approx(1 / 3), "precision": 0.5}
    assert statuses("It is in a minor key.", {"mode": "minor"}) == {"mode": "correct"}  # "a minor" is no A minor
    assert statuses("A slow tempo that turns into a fast tempo.", {"tempo_bpm": 60.0})["tempo_bpm"] == "wrong"  # two bands
    assert statuses("Somewhere between 60 and 70 BPM.", {"tempo_bpm": 64.0})["tempo_bpm"] == "correct"


def test_summary_and_scoring_command(tmp_path, capsys):
    rows = [{"id": "c0", "caption": "A hip-hop track at 121 BPM.", "references": ["A hip-hop track at 121 BPM."],
             "labels": LABELS},
            {"id": "c1", "caption": "A jazz tune.", "references": [], "labels": {"genre": "jazz", "tempo_bpm": 60}}]
    summary = summarize_attributes(rows)
    assert summary["genre"] == {"n": 2, "correct": 1.0, "wrong": 0.0, "not_stated": 0.0}
    assert summary["tempo_bpm"]["correct"] == 0.5 and summary["tempo_bpm"]["not_stated"] == 0.5
    out = tmp_path / "caps.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["--out", str(out)]) == 0
    scores = json.loads((tmp_path / "caps.scores.json").read_text())
    run = scores["runs"][0]
    assert scores["kind"] == "captioning" and run["n"] == 2 and run["n_with_references"] == 1
    assert run["metrics"]["BLEU-1"] == pytest.approx(1.0)


def test_references_join_on_the_clip_id(tmp_path):
    records = [{"id": "proc-1:caption:0", "task": "caption", "messages": [{"role": "user", "content": "x"},
                                                                         {"role": "assistant", "content": "ref one"}]},
               {"id": "proc-1:summary:0", "task": "summary", "messages": [{"role": "assistant", "content": "short"}]}]
    path = tmp_path / "captions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert load_references(path, ["caption"]) == {"proc-1": ["ref one"]}
    assert load_references(path, ["caption", "summary"]) == {"proc-1": ["ref one", "short"]}
