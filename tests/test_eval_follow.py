"""Free-text instruction following: the answer readers on answers a user would read (the
memorised-sentence failure among them), and `musicllm eval follow` end to end on a tiny model."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import small_text_overrides
from eval.follow import (KINDS, THEORY, THEORY_RIGHT, WORDINGS, correct, kinds_mentioned, main, repeats_itself,
                         responds, score_rows, table, wording)
from data_gen.writers.template_qa import FACTUAL
from data_gen.writers.phrases import PROMPTS

MEMORISED = "It is in a minor key (C minor)."
LABELS = {"tempo_bpm": 120, "key": "C#", "mode": "minor", "time_signature": "3/4",
          "instruments": ["violin", "piano", "drums"], "genre": "classical", "mood": "calm"}


def test_the_memorised_sentence_answers_the_key_only():
    assert kinds_mentioned(MEMORISED) == {"key", "mode"}
    assert responds("key", MEMORISED) and responds("mode", MEMORISED)
    for kind in ("instruments", "mood", "tempo", "metre", "style", "caption"):
        assert not responds(kind, MEMORISED), kind
    assert not responds("theory", MEMORISED, "What is the difference between a major and a minor key?")


@pytest.mark.parametrize("kind, answer", [
    ("key", "The tonal centre is D, and it sounds minor."), ("key", "Bb major."), ("key", "It is in C."),
    ("key", "I think it's in F sharp, mostly."), ("mode", "Definitely minor."),
    ("tempo", "Pretty slow, around 70 BPM."), ("tempo", "It's quite upbeat."), ("metre", "It's a waltz."),
    ("metre", "Four beats per bar, 4/4."), ("instruments", "Mostly acoustic guitar with some vocals."),
    ("instruments", "A small orchestra."), ("mood", "It feels melancholic and a bit dark."),
    ("style", "I'd file it under hip-hop."), ("style", "This is brass band music."),  # a style of the corpus's own
    ("caption", "A calm piano ballad in F major that drifts along at a slow pace."),
    ("theory", "A chord is three or more notes sounded together."),
])
def test_answers_that_respond(kind, answer):
    assert responds(kind, answer, "What is a chord?" if kind == "theory" else None)


@pytest.mark.parametrize("kind, answer", [
    ("tempo", "It is in A minor."),                        # another kind instead
    ("key", "It is in a minor key."),                      # a mode, no tonic
    ("key", "A key feature is the soaring melody."),       # "A" is an article
    ("tempo", "The dynamics are moderate, moderate dynamics throughout."),
    ("instruments", "It feels calm and dreamy."),
    ("caption", "Jazz."),                                  # one attribute, too short
    ("caption", "This is a lovely recording that I enjoyed listening to a lot."),
    ("theory", "This track is a chord-heavy piece with notes played together."),  # describes a track
])
def test_answers_that_do_not_respond(kind, answer):
    assert not responds(kind, answer, "What is a chord?" if kind == "theory" else None)


def test_correct_against_labels():
    assert correct("key", "It's in Db minor.", LABELS)            # enharmonic
    assert not correct("key", "C# major.", LABELS) and not correct("key", "C# minor or E major.", LABELS)
    assert correct("key", "The key is C#, and it is minor.", LABELS)
    assert not correct("key", "It is in C#.", LABELS)              # the tonic, but no mode
    assert correct("mode", MEMORISED, LABELS) and not correct("mode", "Major.", LABELS)
    assert correct("tempo", "About 130 BPM.", LABELS) and not correct("tempo", "About 140 BPM.", LABELS)  # 10%
    assert correct("tempo", "A brisk, medium-fast pace.", LABELS) and not correct("tempo", "Slow.", LABELS)
    assert not correct("tempo", "Slow, moderate or fast.", LABELS)  # every band at once is no answer
    assert correct("metre", "Three beats to the bar, like a waltz.", LABELS) and not correct("metre", "6/8.", LABELS)
    assert correct("instruments", "Strings, piano and percussion.", LABELS)  # strings ~ violin, percussion ~ drums
    assert not correct("instruments", "Piano and a saxophone.", LABELS)     # a sax is clearly absent
    assert not correct("instruments", MEMORISED, LABELS)
    assert correct("mood", "Peaceful and dreamy.", LABELS) and not correct("mood", "Tense.", LABELS)
    assert correct("style", "Baroque, so classical.", LABELS) and not correct("style", "Classical or jazz.", LABELS)
    for texture in ("chamber", "orchestral", "choral", "chorale"):  # the corpus's classical textures
        assert correct("style", "This is classical music.", {"genre": texture})
        assert correct("style", f"It is {texture} music.", {"genre": texture})
        assert not correct("style", "It is folk music.", {"genre": texture})
    assert correct("style", "Brass band music.", {"genre": "brass band"})
    assert not correct("style", "This is classical music.", {"genre": "brass band"})
    assert correct("caption", "A calm classical piece for violin and piano at 120 BPM, in C# major.", LABELS) == \
        pytest.approx(4 / 5)  # mood, style, instruments, tempo right; the key wrong
    assert correct("theory", "A chord is notes together.", LABELS) is None  # which theory question?
    assert correct("key", "C# minor.", {"mode": "minor"}) is None and correct("tempo", "Fast.", {}) is None


def test_repeats_itself():
    assert repeats_itself("It is calm. The piano plays. It is calm.")
    assert repeats_itself("The tempo is fast and the tempo is fast and")
    assert not repeats_itself("A calm piano piece in C major, slow and gentle, with soft strings behind it.")
    assert repeats_itself("It is in C major. The instrumentation is tuba, piano, piano and cello.")  # one named twice
    assert not repeats_itself("It is in C major. The instrumentation is tuba, piano and cello.")
    # a fact of the clip stated in two sentences (the default model's captions, session 43)
    assert repeats_itself("It sits in B minor and is in 6/8 time. It has two groups of three eighth notes per bar.")
    assert repeats_itself("It keeps a fast pace (approximately 130 BPM) and is in D# major. It sits in D# minor.")
    assert not repeats_itself("It sits in B minor. It is in 6/8 time. It moves at about 90 BPM.")
    # a theory answer is about no clip: "major" and "minor" in two sentences are no repeat
    theory = "Major and minor are two kinds of scale. A major scale sounds bright, a minor scale darker."
    assert repeats_itself(theory) and not repeats_itself(theory, about_a_track=False)


def test_wordings_differ_from_the_training_questions():
    training = {q.lower() for prompts in PROMPTS.values() for q in prompts}
    training |= {"what instruments are playing?", "which instruments can you hear?", "what key is this in?",
                 "what genre is this?", "what mood does this music convey?", "what is the tempo of this piece?"}
    assert len(FACTUAL) > 5 and all(q.lower() not in training for qs in WORDINGS.values() for q in qs)
    assert set(WORDINGS) == set(KINDS) and WORDINGS["theory"] == list(THEORY)
    assert wording("clip-1", "key", 0) == wording("clip-1", "key", 0)  # stable across runs


def test_general_training_questions_are_not_the_theory_questions_and_come_in_many_forms():
    """Stage 2 keeps the base LLM's general answers by training on questions it answered itself
    (data_gen.general); the evaluation's theory questions must stay unseen, and the training ones
    must not all be "What is X?": trained on that form alone, the model answered other forms
    ("How many semitones are there in an octave?") with a clip's metre."""
    from data_gen.general import QUESTIONS

    asked = {q.lower().rstrip("?") for q in THEORY}
    assert not asked & {q.lower().rstrip("?") for q in QUESTIONS}
    openings = {" ".join(q.lower().replace("'s", " is").split()[:2]) for q in QUESTIONS}
    assert {"how many", "what does", "why do", "how is", "what is", "which key", "is a", "can you"} <= openings
    assert sum(not q.startswith("What is") for q in QUESTIONS) >= len(QUESTIONS) / 3


def test_scores_count_one_answer_for_many_kinds():
    rows = [{"clip": "c1", "kind": kind, "question": WORDINGS[kind][0], "answer": MEMORISED, "labels": LABELS}
            for kind in ("instruments", "mood", "key")]
    rows += [{"clip": "c2", "kind": "key", "question": WORDINGS["key"][0], "answer": "Db minor.", "labels": LABELS},
             {"clip": "c2", "kind": "mood", "question": WORDINGS["mood"][0], "answer": "Calm.", "labels": LABELS}]
    scores = score_rows(rows)
    assert scores["overall"]["clips_with_shared_answer"] == 1 and scores["overall"]["shared_answer_share"] == 0.5
    assert scores["shared_examples"][0]["kinds"] == ["instruments", "key", "mood"]
    kinds = scores["kinds"]
    assert kinds["instruments"]["responds"] == 0 and kinds["instruments"]["other_kind"] == 1
    assert kinds["key"]["responds"] == 1 and kinds["key"]["correct"] == 0.5 and kinds["key"]["distinct"] == 1
    assert kinds["mood"]["responds"] == 0.5 and kinds["mood"]["correct"] == 0.5
    assert scores["overall"]["responds"] == pytest.approx(3 / 5)
    assert scores["common_answers"][0] == {"answer": "it is in a minor key c minor", "n": 3,
                                           "kinds": ["instruments", "key", "mood"]}


def test_answers_about_silence_and_noise_are_scored_apart():
    """A clip labelled silence or noise (data_gen/not_music.py) is not graded as music: its answer
    should say it is not music (recognised) and what it is (right); the music's scores stay as
    they were without it."""
    music = [{"clip": "c2", "kind": "key", "question": WORDINGS["key"][0], "answer": "Db minor.", "labels": LABELS}]
    silent, noisy = {"sound": "silence"}, {"sound": "noise"}
    quiet = [{"clip": "s", "kind": "key", "question": WORDINGS["key"][0], "labels": silent,
              "answer": "There is no key to name: the clip is silent, with no notes in it."},
             {"clip": "s", "kind": "tempo", "question": WORDINGS["tempo"][0], "labels": silent,
              "answer": "It is fast, at 120 BPM."},  # missed: a tempo for silence
             {"clip": "n", "kind": "caption", "question": WORDINGS["caption"][0], "labels": noisy,
              "answer": "The clip is silent: there is no music in it to describe."},  # not music, but not noise
             {"clip": "n", "kind": "mood", "question": WORDINGS["mood"][0], "labels": noisy,
              "answer": "It has no mood to speak of: the clip is only noise, not music."}]
    alone, both = score_rows(music), score_rows(music + quiet)
    assert {k: v for k, v in both.items() if k != "not_music"} == alone and "not_music" not in alone
    summary = both["not_music"]
    assert summary["n"] == 4 and summary["clips"] == 2
    assert summary["recognised"] == 0.75 and summary["right"] == 0.5
    assert summary["by_sound"] == {"silence": {"n": 2, "right": 0.5}, "noise": {"n": 2, "right": 0.5}}
    assert summary["missed"] == [{"clip": "s", "kind": "tempo", "answer": "It is fast, at 120 BPM."}]
    only = score_rows(quiet)
    assert only["overall"] is None and only["not_music"] == summary
    assert alone["overall"]["says_no_music"] == 0
    # music told it is silence: the error a user would read, counted
    told = score_rows(music + [{"clip": "c2", "kind": "caption", "question": WORDINGS["caption"][0], "labels": LABELS,
                                "answer": "This ambient recording holds no music: the clip is played at a soft level."}])
    assert told["overall"]["says_no_music"] == 1
    assert "answers about music that say it holds no music: 1" in table(told)
    assert "the answer says the clip is not music 75.0%, names what it is 50.0%" in table(only)


def test_a_caption_and_an_answer_that_tell_two_stories_about_one_clip_are_counted():
    """The caption says 34 BPM and 3/4, the tempo answer 54 BPM: one contradiction (tempo). An
    answer that agrees (the metre's "three beats to the bar"), one within 10% (C minor at 120 vs
    "about 126 BPM" on another clip) or one that states nothing of the kind does not count."""
    def row(clip, kind, answer):
        return {"clip": clip, "kind": kind, "question": WORDINGS[kind][0], "answer": answer, "labels": LABELS}

    rows = [row("c1", "caption", "A calm piece in C# minor that moves at 34 BPM, in 3/4."),
            row("c1", "tempo", "The tempo is 54 BPM, which is slow."),
            row("c1", "metre", "It has three beats to the bar."),
            row("c1", "key", "It is in C# minor."),
            row("c2", "caption", "A classical piece in C minor at 120 BPM."),
            row("c2", "tempo", "About 126 BPM."),
            row("c2", "key", "I can't tell."),
            row("c3", "key", "It is in D major.")]  # no caption: nothing to compare
    scores = score_rows(rows)
    overall = scores["overall"]
    assert overall["clips_contradicting"] == 1 and overall["clips_compared"] == 2
    assert overall["contradictions_by_kind"] == {"tempo": 1}
    assert scores["contradiction_examples"] == [{"clip": "c1", "kind": "tempo", "caption": [34.0], "answer": [54.0]}]
    assert "clips whose caption and answers disagree: 1 of 2 (tempo 1)" in table(scores)
    rows[3] = row("c1", "key", "It is in D minor.")
    assert score_rows(rows)["overall"]["contradictions_by_kind"] == {"key": 1, "tempo": 1}


# ---- end to end on a tiny random model ----

@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_tokenizer):
    """A saved tiny random checkpoint and a manifest of two test clips (and one train clip)."""
    from musicllm.checkpoint import save_checkpoint
    from musicllm.modeling import MusicLLMForConditionalGeneration
    from musicllm.processing import MusicLLMProcessor
    from musicllm.tiny import tiny_config

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval_follow")
    torch.manual_seed(0)
    config = tiny_config(tiny_tokenizer, text_overrides=small_text_overrides(), stack_factor=10)
    save_checkpoint(MusicLLMForConditionalGeneration(config).eval(), MusicLLMProcessor(tiny_tokenizer, config),
                    root / "ckpt", export=False)
    (root / "clips").mkdir()
    lines = []
    for k, (freq, split) in enumerate([(220.0, "test"), (330.0, "train"), (440.0, "test")]):
        t = np.arange(16000) / 16000
        sf.write(root / "clips" / f"c{k}.wav", (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
        lines.append({"id": f"c{k}", "audio": f"clips/c{k}.wav", "duration": 1.0, "source": "test", "license": "CC0",
                      "split": split, "labels": {**LABELS, "tempo_bpm": 100 + k}})
    (root / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def test_generate_resume_and_score(setup, capsys):
    root = setup
    out = root / "follow.jsonl"
    args = ["--checkpoint", str(root / "ckpt"), "--manifest", str(root / "manifest.jsonl"), "--out", str(out),
            "--max-new-tokens", "3", "--batch-size", "5"]
    assert main(args + ["--limit-clips", "1"]) == 0  # interrupted after the first clip...
    assert len(out.read_text().splitlines()) == len(KINDS)
    assert main(args) == 0                            # ...resumed: only the second clip is asked
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["clip"], r["kind"]) for r in rows) == sorted((c, k) for c in ("c0", "c2") for k in KINDS)
    for row in rows:
        assert set(row) >= {"id", "clip", "kind", "question", "wording", "answer", "audio", "labels"}
        assert row["id"] == f"{row['clip']}:{row['kind']}" and isinstance(row["answer"], str)
        assert row["question"] == WORDINGS[row["kind"]][row["wording"]]
        assert (row["audio"] is None) == (row["kind"] == "theory")
        assert row["audio"] is None or row["audio"].endswith(f"clips/{row['clip']}.wav")
        assert row["labels"]["tempo_bpm"] == 100 + int(row["clip"][1])
    before = out.read_text()
    assert main(args) == 0 and out.read_text() == before  # nothing new to ask

    scores_path = root / "follow.scores.json"
    assert main(["--score", str(out), "--out", str(scores_path)]) == 0
    assert "clips where two kinds got the same answer" in capsys.readouterr().out
    scores = json.loads(scores_path.read_text())
    expected = [responds(r["kind"], r["answer"], r["question"]) for r in rows]
    assert scores["overall"]["responds"] == pytest.approx(sum(expected) / len(rows))
    assert scores["overall"]["n"] == len(rows) and scores["overall"]["clips"] == 2
    for kind, summary in scores["kinds"].items():
        of_kind = [r for r in rows if r["kind"] == kind]
        assert summary["n"] == 2
        assert summary["responds"] == pytest.approx(sum(responds(kind, r["answer"], r["question"]) for r in of_kind) / 2)
        assert summary["repeats"] == pytest.approx(sum(repeats_itself(r["answer"], kind != "theory") for r in of_kind) / 2)


def test_cli_errors(setup, capsys):
    root = setup
    with pytest.raises(SystemExit):
        main(["--out", str(root / "x.jsonl")])  # neither phase
    assert main(["--checkpoint", str(root / "ckpt"), "--manifest", str(root / "manifest.jsonl"), "--split", "valid",
                 "--out", str(root / "x.jsonl")]) == 2
    assert "no clips in split 'valid'" in capsys.readouterr().err
    (root / "bad.jsonl").write_text(json.dumps({"clip": "c0", "kind": "key", "question": "?"}) + "\n")
    assert main(["--score", str(root / "bad.jsonl"), "--out", str(root / "bad.json")]) == 2
    assert "row 1: missing or non-string field 'answer'" in capsys.readouterr().err


@pytest.mark.parametrize("question, right, wrong", [
    ("What does BPM stand for?", "It means beats per minute.", "BPM stands for Business Performance Management."),
    ("How many semitones are there in an octave?", "Twelve.", "We can use the formula 1000/8 = 12.5."),
    ("What is a chord?", "Three or more notes sounded at the same time.",
     "A chord is a musical instrument. It consists of the notes of the chord, the melody and the harmony."),
    ("What is syncopation?", "Accents that fall on the off-beats.",
     "A literary device used in poetry to create a sense of surprise or unexpectedness."),
    ("What is syncopation?", "Stressing the weak beats.", "It refers to the use of unexpected events in a poem."),
    ("What does a time signature of 3/4 mean?", "Three quarter-note beats in every bar.",
     "A 3/4 time signature indicates the rhythm of a piece, such as the beat of 3 or 4 beats."),
    ("What is the difference between a major and a minor key?", "Minor lowers the third of the scale.",
     "The major key consists of the notes C, E, G and B."),
])
def test_theory_answers_are_right_only_when_they_say_the_fact(question, right, wrong):
    assert correct("theory", right, {}, question) is True
    assert correct("theory", wrong, {}, question) is False


def test_every_theory_question_has_a_right_answer_rule():
    assert set(THEORY_RIGHT) == set(THEORY)
