"""MuChoMusic-style questions: columns, distractor kinds, balanced positions, no giveaways."""

from __future__ import annotations

import ast
import csv
import json
import random
import re
from collections import Counter
from pathlib import Path

from data_gen.formats import KNOWLEDGE, MC_COLUMNS, REASONING, assign_split
from data_gen.multiple_choice import (
    PositionCycle, correct_position, label_facts, main, make_questions, option_order, options, text_only_flags,
    write_questions,
)
from musicllm.vocabulary import PITCH_CLASSES

GENRES = ["rock", "jazz", "classical chamber", "electronic dance", "folk", "ambient", "latin", "funk"]
MOODS = ["happy", "energetic", "calm", "sad", "tense", "dreamy", "playful", "dark"]
INSTRUMENTS = ["acoustic grand piano", "electric bass (finger)", "drum kit", "violin", "flute", "trumpet"]


def procedural_clip(i: int, rng: random.Random, split: str | None = None) -> dict:
    family = f"fam-{i}"
    return {
        "id": f"proc-{i:05d}", "audio": f"audio/proc-{i:05d}.wav", "duration": 20.0, "source": "procedural",
        "license": "CC0-1.0", "family": family, "split": split or assign_split(family),
        "labels": {
            "tempo_bpm": round(rng.uniform(50, 180), 1), "key": rng.choice(PITCH_CLASSES),
            "mode": rng.choice(["major", "minor"]), "time_signature": rng.choice(["3/4", "4/4", "6/8"]),
            "instruments": rng.sample(INSTRUMENTS, rng.randint(1, 3)), "genre": rng.choice(GENRES),
            "mood": rng.choice(MOODS), "dynamics": rng.choice(["soft", "medium", "loud"]),
            "sections": [{"name": "intro", "start": 0.0, "end": 4.0}, {"name": "verse", "start": 4.0, "end": 12.0},
                         {"name": "chorus", "start": 12.0, "end": 20.0}],
            "drums": True,
        },
        "estimates": {},
    }


def questions(n_clips: int = 100, per_clip: int = 4, seed: int = 0) -> list[dict]:
    rng, positions = random.Random(seed), PositionCycle(random.Random(seed))
    return [row for i in range(n_clips) for row in make_questions(procedural_clip(i, rng), random.Random(i), per_clip, positions)]


def test_rows_have_muchomusic_columns_and_distinct_options():
    rows = questions(30)
    assert len(rows) == 120
    for row in rows:
        assert list(row) == MC_COLUMNS
        assert len({o.lower() for o in options(row)}) == 4
        knowledge, reasoning = ast.literal_eval(row["music_knowledge"]), ast.literal_eval(row["music_reasoning"])
        assert set(knowledge) <= set(KNOWLEDGE) and set(reasoning) <= set(REASONING) and knowledge + reasoning
        assert row["dataset"] == "musicllm-procedural" and row["dataset_identifier"].startswith("proc-")
        assert row["genre"] in GENRES and row["audio"].endswith(".wav")
    kinds = Counter(ast.literal_eval(r["music_knowledge"] if r["music_knowledge"] != "[]" else r["music_reasoning"])[0]
                    for r in rows)
    assert set(kinds) >= {"harmony", "metre and rhythm", "instrumentation", "genre and style", "mood", "structure"}


def test_correct_answer_never_appears_in_the_question():
    for row in questions(100):
        question = set(re.findall(r"[a-z0-9#]+", row["question"].lower()))
        answer = set(re.findall(r"[a-z0-9#]+", row["correct_answer"].lower()))
        assert not question & answer, row


def test_answer_positions_are_balanced_for_any_harness_seed():
    rows = questions(100)
    assert len(rows) == 400
    for seed in (0, 1, 7, 12345):
        positions = Counter(option_order(row, seed).index(row["correct_answer"]) for row in rows)
        assert all(80 <= positions[p] <= 120 for p in range(4)), (seed, positions)


def test_option_order_is_a_deterministic_permutation():
    row = questions(1)[0]
    shown = option_order(row, 3)
    assert sorted(shown) == sorted(options(row)) and shown == option_order(dict(row), 3)
    assert shown.index(row["correct_answer"]) == correct_position(row, 3)
    assert {tuple(option_order(row, s)) for s in range(8)} != {tuple(shown)}


def test_distractor_kinds():
    clip = procedural_clip(0, random.Random(0))
    clip["labels"].update(key="A", mode="minor", tempo_bpm=140.0, instruments=["acoustic grand piano"])
    facts = label_facts(clip["labels"], random.Random(0))
    true_facts = {f for _, _, t, _ in facts.values() for f in t}
    false_facts = {f for _, _, _, f_ in facts.values() for f in f_}
    rows = make_questions(clip, random.Random(0), per_clip=9)
    key = next(r for r in rows if r["correct_answer"] == "A minor")
    assert key["distractor_1_answer"] in {"C major", "A major"}  # relative or parallel key
    tempo = next(r for r in rows if r["correct_answer"].startswith("Fast tempo"))
    assert tempo["distractor_1_answer"].split()[0] in {"Medium-fast", "Very"}  # a neighbouring band
    for row in rows:
        assert row["distractor_2_answer"] in true_facts  # true of the clip, but about something else
        assert row["distractor_3_answer"] in false_facts
        assert row["distractor_2_answer"] not in facts_of_question(row, facts)


def facts_of_question(row: dict, facts: dict) -> set[str]:
    return {f for correct, _, t, _ in facts.values() if correct == row["correct_answer"] for f in t}


def test_only_ground_truth_and_no_borderline_tempo():
    estimated = {"id": "e", "audio": "a.wav", "duration": 5.0, "source": "user", "license": "x",
                 "estimates": {"tempo_bpm": 120.0, "key": "C", "mode": "major", "genre": "rock"}}
    assert make_questions(estimated, random.Random(0)) == []
    clip = procedural_clip(0, random.Random(0))
    clip["labels"]["tempo_bpm"] = 97.0  # 1 BPM from the moderate / medium-fast edge
    rows = make_questions(clip, random.Random(0), per_clip=9)
    assert rows and not any("tempo" in r["correct_answer"] for r in rows)


def test_text_only_heuristics():
    row = {"question": "Which instrument plays the melody?", "correct_answer": "A solo violin playing the melody line",
           "distractor_1_answer": "Flute", "distractor_2_answer": "Calm mood", "distractor_3_answer": "Rock style"}
    assert set(text_only_flags(row)) >= {"longest", "question_overlap", "text_scorer"}
    fair = {"question": "Which key is this piece in?", "correct_answer": "F# minor", "distractor_1_answer": "F# major",
            "distractor_2_answer": "Calm mood", "distractor_3_answer": "Harp part"}
    assert text_only_flags(fair) == []
    flagged = [r for r in questions(50) if r["flags"]]
    assert len(flagged) < 20 and all(r["flags"].startswith("text_only_guessable:") for r in flagged)


def test_cli_writes_the_test_split_with_audio_beside_the_csv(tmp_path):
    rng = random.Random(0)
    clips = [procedural_clip(i, rng, split=["train", "test"][i % 2]) for i in range(10)]
    (tmp_path / "corpus").mkdir()
    manifest = tmp_path / "corpus" / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(c) + "\n" for c in clips))
    from musicllm.cli import main as cli_main

    out = tmp_path / "eval" / "mc.csv"
    assert cli_main(["data", "mc", str(manifest), "--out", str(out), "--per-clip", "3"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15 and list(rows[0]) == MC_COLUMNS
    assert {r["dataset_identifier"] for r in rows} == {c["id"] for c in clips if c["split"] == "test"}
    assert all((out.parent / r["audio"]).resolve() == (tmp_path / "corpus" / "audio" /
                                                      f"{r['dataset_identifier']}.wav").resolve() for r in rows)
    first = out.read_text()
    assert main([str(manifest), "--out", str(out), "--per-clip", "3"]) == 0 and out.read_text() == first
    # Clips are synthesised in parallel, so the manifest's line order varies from run to run:
    # the questions must not (every seeded choice follows the clip ids).
    manifest.write_text("".join(json.dumps(c) + "\n" for c in reversed(clips)))
    assert main([str(manifest), "--out", str(out), "--per-clip", "3", "--balance-answers"]) == 0
    balanced = out.read_text()
    manifest.write_text("".join(json.dumps(c) + "\n" for c in clips))
    assert main([str(manifest), "--out", str(out), "--per-clip", "3", "--balance-answers"]) == 0
    assert out.read_text() == balanced
    assert main([str(manifest), "--split", "all"]) == 0
    assert Path(tmp_path / "corpus" / "multiple_choice.csv").exists()


def test_a_missing_manifest_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    missing = tmp_path / "corpus" / "manifest.jsonl"
    assert main([str(missing), "--out", str(tmp_path / "mc.csv")]) == 2
    assert f"{missing}: no such manifest" in capsys.readouterr().err
    assert not (tmp_path / "mc.csv").exists()


def test_other_spellings_of_the_truth_are_never_wrong_options():
    # The procedural corpus says "drums", "alto sax", "strings", "classical", "hip-hop".
    from data_gen.writers.phrases import may_be_playing

    present = ["drums", "alto sax", "strings", "warm pad"]
    for i, genre in enumerate(["classical", "hip-hop", "electronic", "pop"] * 10):
        clip = procedural_clip(i, random.Random(i))
        clip["labels"].update(instruments=present, genre=genre)
        for row in make_questions(clip, random.Random(i), per_clip=9):
            for option in options(row)[1:]:
                if option != row["distractor_2_answer"] and option.endswith(" in the ensemble"):
                    assert not may_be_playing(option.removesuffix(" in the ensemble").lower(), present), option
                if row["music_reasoning"] == "['genre and style']" and option != row["distractor_2_answer"]:
                    assert not set(option.lower().split()) & set(genre.replace("-", " ").split()), option
            if row["music_knowledge"] == "['instrumentation']":
                assert not may_be_playing(row["distractor_1_answer"].lower(), present)


def test_classical_music_is_never_a_wrong_answer_about_a_classical_texture():
    # "Classical" is no wrong answer about a choir or an orchestra, nor "Orchestral" about a classical piece.
    from data_gen.multiple_choice import CLASSICAL_FAMILY, answer_vocabulary

    rng = random.Random(5)
    clips = [procedural_clip(i, rng) for i in range(140)]
    for i, clip in enumerate(clips):
        clip["labels"]["genre"] = ["classical", "orchestral", "choral", "chamber", "solo piano", "rock", "jazz"][i % 7]
    vocabulary = answer_vocabulary(clips, random.Random(0))
    asked = Counter()
    for clip in clips:
        for kind in ("same-kind", "muchomusic"):
            for row in make_questions(clip, random.Random(clip["id"]), per_clip=9, distractors=kind, vocabulary=vocabulary):
                truth = row["correct_answer"].lower()
                if row["music_reasoning"] != "['genre and style']" or truth not in CLASSICAL_FAMILY:
                    continue
                asked[truth] += 1
                wrong = [o.lower().removesuffix(" style") for o in options(row)[1:] if o != row["distractor_2_answer"]]
                assert not set(wrong) & CLASSICAL_FAMILY, (truth, wrong)
    assert set(asked) == {"classical", "orchestral", "choral", "chamber", "solo piano"}, asked


def test_same_kind_distractors_answer_the_question_and_come_from_the_corpus():
    from data_gen.multiple_choice import answer_vocabulary

    rng = random.Random(3)
    clips = [procedural_clip(i, rng) for i in range(120)]
    vocabulary = answer_vocabulary(clips, random.Random(0))
    rows = [row for clip in clips for row in make_questions(clip, random.Random(clip["id"]), per_clip=6,
                                                             distractors="same-kind", vocabulary=vocabulary)]
    assert len(rows) > 300 and all("distractors=same-kind" in row["flags"] for row in rows)
    tempo_rows = [r for r in rows if "BPM" in r["correct_answer"]]
    assert tempo_rows and all("BPM" in option for r in tempo_rows for option in options(r))
    key_pattern = re.compile(rf"^({'|'.join(map(re.escape, PITCH_CLASSES))}) (major|minor)$")
    key_rows = [r for r in rows if key_pattern.match(r["correct_answer"])]
    assert key_rows and all(key_pattern.match(option) for r in key_rows for option in options(r))
    # No option is wrong merely because no clip ever has it: text alone cannot drop it.
    correct = {r["correct_answer"] for r in rows}
    distractors = Counter(d for r in rows if "padded" not in r["flags"] for d in options(r)[1:])
    never_correct = sum(n for d, n in distractors.items() if d not in correct)
    assert never_correct / sum(distractors.values()) < 0.1
    # Mode and metre have too few wrong answers of their kind: every one of them is offered, the
    # rest are unrelated facts, and the row says so. Dynamics is not asked this way.
    mode_rows = [r for r in rows if r["correct_answer"] in {"Major", "Minor"}]
    assert mode_rows and all("distractors=same-kind+padded" in r["flags"] for r in mode_rows)
    assert all({"Major", "Minor"} <= set(options(r)) for r in mode_rows)
    metre_rows = [r for r in rows if r["music_knowledge"] == "['metre and rhythm']" and "BPM" not in r["correct_answer"]]
    assert metre_rows and all(sum("metre" in o.lower() for o in options(r)) == 3 for r in metre_rows)
    assert not [r for r in rows if r["correct_answer"].lower().endswith("dynamics") or "dynamic" in r["question"].lower()]


def test_same_kind_distractors_follow_answer_frequencies():
    """A common answer is offered as a distractor in proportion to how often it is right, so its
    wording gives less away than with uniform distractors (on a skewed corpus, as real ones are)."""
    from data_gen.multiple_choice import answer_vocabulary

    rng = random.Random(5)
    clips = [procedural_clip(i, rng) for i in range(300)]
    for clip in clips:  # most clips rock and happy
        if rng.random() < 0.6:
            clip["labels"].update(genre="rock", mood="happy")
    vocabulary = answer_vocabulary(clips, random.Random(0))
    uniform = {dim: Counter(dict.fromkeys(answers, 1)) for dim, answers in vocabulary.items()}

    def precision_of_rock(vocab) -> float:
        rows = [row for clip in clips for row in make_questions(clip, random.Random(clip["id"]), per_clip=8,
                                                                 distractors="same-kind", vocabulary=vocab)]
        shown = [r for r in rows if "Rock" in options(r)]
        return sum(r["correct_answer"] == "Rock" for r in shown) / len(shown)

    assert precision_of_rock(vocabulary) < precision_of_rock(uniform) - 0.1


def test_balanced_answers_leave_no_common_answer_to_guess(tmp_path):
    """On a corpus where most clips are in 4/4 and in one tempo band, `--balance-answers` asks about
    each metre and band about equally often, so naming the common answer no longer pays."""
    rng = random.Random(7)
    clips = [procedural_clip(i, rng, split="test") for i in range(300)]
    for clip in clips:
        if rng.random() < 0.7:
            clip["labels"].update(time_signature="4/4", tempo_bpm=round(rng.uniform(100, 120), 1))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(c) + "\n" for c in clips))

    def share_of_most_common(flags: list[str]) -> dict[str, float]:
        out = tmp_path / f"mc{len(flags)}.csv"
        assert main([str(manifest), "--out", str(out), "--per-clip", "9", "--distractors", "same-kind", *flags]) == 0
        rows = list(csv.DictReader(out.open()))
        shares = {}
        for name, test in (("metre", lambda r: "metre" in r["correct_answer"]),
                           ("tempo", lambda r: "BPM" in r["correct_answer"])):
            answers = Counter(r["correct_answer"] for r in rows if test(r))
            shares[name] = max(answers.values()) / sum(answers.values())
        return shares

    skewed, balanced = share_of_most_common([]), share_of_most_common(["--balance-answers"])
    assert skewed["metre"] > 0.7 and balanced["metre"] < 0.45
    assert skewed["tempo"] > 0.6 and balanced["tempo"] < 0.35


def test_instrument_options_are_right_about_a_quarter_of_the_times_they_are_shown():
    """When most clips have a bass, a bass is right whenever asked about and can be a wrong
    answer only in the few clips without one: it is asked about less often (in proportion), or
    a model that never hears the audio learns to pick the bass (it was right 62% of the times
    it was shown)."""
    from data_gen.multiple_choice import answer_vocabulary, instrument_odds

    rng = random.Random(11)
    clips = [procedural_clip(i, rng) for i in range(400)]
    for clip in clips:  # three clips in four have one of two basses
        if rng.random() < 0.75:
            others = [name for name in clip["labels"]["instruments"] if "bass" not in name.lower()]
            clip["labels"]["instruments"] = others + [rng.choice(["Acoustic Bass", "Electric Bass (finger)"])]
    odds = instrument_odds(clips)
    vocabulary = answer_vocabulary(clips, random.Random(0), odds)
    rows = [row for clip in clips for row in make_questions(clip, random.Random(clip["id"]), per_clip=8,
                                                             dimensions=["instrument"], distractors="same-kind",
                                                             vocabulary=vocabulary, odds=odds)]
    shown, right = Counter(o for r in rows for o in options(r)), Counter(r["correct_answer"] for r in rows)
    precision = {o: right[o] / n for o, n in shown.items() if n >= 30}
    assert len(rows) > 250 and {"Acoustic bass", "Fingered electric bass"} <= set(precision)
    assert max(precision.values()) < 0.45, sorted(precision.items(), key=lambda kv: -kv[1])[:3]


def test_held_out_wordings_are_never_training_questions(tmp_path):
    # the out-of-distribution split's questions (the quickstart's data/mc_ood.csv) are another writer's
    from data_gen.multiple_choice import HELD_OUT_QUESTIONS, QUESTIONS
    from data_gen.writers.phrases import PROMPTS
    from data_gen.writers.template_qa import QUESTIONS as QA_QUESTIONS

    trained = {q for table in (QUESTIONS, QA_QUESTIONS, PROMPTS) for wordings in table.values() for q in wordings}
    held_out = {q for wordings in HELD_OUT_QUESTIONS.values() for q in wordings}
    assert set(HELD_OUT_QUESTIONS) == set(QUESTIONS) and not held_out & trained
    rng = random.Random(0)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(procedural_clip(i, rng)) + "\n" for i in range(20)))
    rows = write_questions(manifest, tmp_path / "ood.csv", per_clip=4, split="all", held_out_wordings=True)
    assert len(rows) >= 60 and all(row["question"] in held_out for row in rows)
    assert len({row["question"] for row in rows}) >= 15  # every dimension's wordings in use
    assert main([str(manifest), "--split", "all", "--held-out-wordings", "--out", str(tmp_path / "cli.csv")]) == 0
    with open(tmp_path / "cli.csv", newline="") as f:
        assert {row["question"] for row in csv.DictReader(f)} <= held_out
