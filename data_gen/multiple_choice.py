"""`musicllm data mc`: MuChoMusic-style multiple-choice questions from ground-truth labels.

    musicllm data mc data/corpus/manifest.jsonl                       # test split -> data/corpus/multiple_choice.csv
    musicllm data mc data/corpus/manifest.jsonl --split all --per-clip 6 --seed 1 --out mc.csv
    python -m data_gen.multiple_choice ...

Rows have MuChoMusic's columns (`formats.MC_COLUMNS`), so one harness runs both. Each question
has one correct answer and one distractor of each of MuChoMusic's kinds:
    distractor_1_answer   incorrect but related: a wrong answer to the question (the neighbouring
                          tempo band, the relative or parallel key, a genre next door)
    distractor_2_answer   correct but unrelated: true of the clip, but about another dimension, so
                          it cannot answer the question ("Triple metre (3/4)" under a key question)
    distractor_3_answer   incorrect and unrelated: false of the clip, about another dimension
Related dimensions never serve as each other's unrelated options (key/mode, tempo/metre,
mood/dynamics), so an "unrelated" option can never pass for an answer.

`--distractors same-kind` makes all three distractors wrong answers to the question itself
(other tempo bands, other keys, other genres...), none of them eliminable by wording. MuChoMusic's
mix of kinds lets a model that never hears the audio drop the two unrelated options and score
near 50%; with same-kind options, text alone stays near chance (25%), so accuracy measures
listening. Such rows carry "distractors=same-kind" in `flags`. Mode and metre have fewer than
three wrong answers of their kind (major/minor; 4/4, 3/4, 6/8): their questions keep every wrong
answer of the kind and fill the rest with MuChoMusic's unrelated options, flagged
"distractors=same-kind+padded", so their text-only chance is 1/2 and 1/3 (reports show them per
question type). Other such dimensions (dynamics) are not asked in that mode.

Only ground-truth labels are used, never MIR estimates; an instrument is called absent only
because the clip's label lists every instrument; tempos within 3 BPM of a band edge are not
asked about. Audio paths are relative to the CSV's folder (absolute ones stay absolute).

Answer positions. Like MuChoMusic's, our CSV keeps the correct answer in its own column; a
harness shows the options in the order `option_order(row, seed)` gives. That order puts the
correct answer at (row_hash(row) + seed) % 4. The generator walks a shuffled, balanced cycle of
target positions and, for each question, keeps a wording and choice of distractors whose
row_hash % 4 hits the target, so over a file each of A-D holds the answer a quarter of the time
for every harness seed. On a foreign CSV (MuChoMusic's own) the hash is uniform in expectation.

Text-only guessability, `text_only_flags(row)` (written to `flags` as
"text_only_guessable:<reasons>"):
    longest / shortest  the correct option is the unique longest (shortest), by 15% and by at
                        least 4 characters
    question_overlap    the correct option shares more content words with the question than
                        any distractor does
    text_scorer         a scorer that never hears the audio, scoring each option by how many
                        content words it shares with the other options ("the answer looks like
                        the others") plus twice its overlap with the question, picks it uniquely
The generator tries many wordings and distractor choices per question and keeps one that no
heuristic flags where it can; the flag marks what is left. A correct answer whose words appear
in the question is never written at all.
"""

from __future__ import annotations

import argparse
from collections import Counter
import csv
import hashlib
import os
import random
import re
import sys
from pathlib import Path

from tqdm import tqdm

from data_gen.formats import MC_COLUMNS, FormatError, read_jsonl
from musicllm.text_attributes import canonical_genre
from musicllm.vocabulary import MODES, PITCH_CLASSES, TEMPO_BANDS, tempo_band
from data_gen.write import relocate_audio
from data_gen.writers.phrases import instrument_name, instrument_tokens, may_be_playing, seeded_rng

TRIES = 64  # candidate wordings per question
BOUNDARY_BPM = 3.0
MIN_LENGTH_GAP = 4  # characters: "Sad" vs "Calm" is no length cue, however large the ratio
STOPWORDS = {"a", "an", "the", "of", "in", "on", "is", "are", "it", "its", "this", "that", "to", "and", "or",
             "for", "with", "by", "be", "which", "what", "how", "does", "do", "these", "following", "best"}

_edges = [0.0] + [upper for upper, _ in TEMPO_BANDS[:-1]]


def _tempo_phrase(name: str, low: float, high: float) -> str:
    """"Fast tempo (126–156 BPM)", "Slow tempo (below 66 BPM)", "Very fast tempo (above 156 BPM)"."""
    span = f"below {high:g}" if low == 0 else f"above {low:g}" if high == float("inf") else f"{low:g}–{high:g}"
    return f"{name.capitalize()} tempo ({span} BPM)"


TEMPO_PHRASES = {name: _tempo_phrase(name, low, high) for (high, name), low in zip(TEMPO_BANDS, _edges)}
BANDS = [name for _, name in TEMPO_BANDS]
METRES = {"3/4": "Triple metre (3/4)", "4/4": "Quadruple metre (4/4)", "6/8": "Compound duple metre (6/8)",
          "2/4": "Duple metre (2/4)"}
DYNAMICS = {"soft": "Mostly soft", "quiet": "Mostly soft", "medium": "Moderate", "moderate": "Moderate",
            "loud": "Mostly loud"}
DYNAMICS_ORDER = ["Mostly soft", "Moderate", "Mostly loud"]
# (valence, arousal): a related wrong mood differs on one axis, an unrelated false one on both.
MOODS = {"happy": (1, 1), "energetic": (1, 1), "playful": (1, 1), "calm": (1, 0), "dreamy": (1, 0),
         "sad": (0, 0), "dark": (0, 0), "tense": (0, 1)}
# Spellings of the procedural corpus and of the issue both; a genre sharing a word with the true
# one ("classical" / "classical chamber") is never offered as wrong, nor one of the same family:
# the corpus's classical textures are classical music, so "Classical" is no wrong answer about a
# choir or an orchestra (nor "Orchestral" about a classical piece).
GENRE_NEIGHBOURS = {
    "rock": ["funk", "folk", "metal"], "pop": ["rock", "funk", "folk"], "jazz": ["funk", "latin", "blues"],
    "classical": ["folk", "ambient", "opera"], "classical chamber": ["folk", "ambient", "opera"],
    "electronic": ["funk", "hip hop", "ambient"], "electronic dance": ["funk", "hip hop", "ambient"],
    "folk": ["classical", "rock", "country"], "ambient": ["classical", "electronic", "folk"],
    "latin": ["jazz", "funk", "pop"], "funk": ["jazz", "rock", "latin"], "hip hop": ["funk", "pop", "electronic"],
    "hip-hop": ["funk", "pop", "electronic"],
    # the corpus's textures (data_gen/procedural/textures.py)
    "orchestral": ["brass band", "ambient", "folk"], "solo piano": ["jazz", "ambient", "folk"],
    "choral": ["folk", "ambient", "brass band"], "brass band": ["jazz", "orchestral", "folk"],
    "chorale": ["brass band", "folk", "ambient"], "chamber": ["folk", "brass band", "ambient"],
    "unaccompanied": ["folk", "chamber", "solo piano"],
}
GENRES = sorted(set(GENRE_NEIGHBOURS) | {g for n in GENRE_NEIGHBOURS.values() for g in n})
# The genres that musicllm.text_attributes reads as classical (the corpus's classical textures), and
# solo piano, whose corpus pieces are classical too though "solo piano" names no genre in a text.
CLASSICAL_FAMILY = {g for g in GENRES if canonical_genre(g) == "classical"} | {"solo piano"}
# Families for "incorrect but related" instruments; a candidate is used only when
# `may_be_playing` rules out that the clip has it under another name.
INSTRUMENT_FAMILIES = [
    ["piano", "electric piano", "harpsichord", "organ", "celesta", "accordion"],
    ["acoustic guitar", "electric guitar", "banjo", "mandolin"], ["electric bass", "acoustic bass", "synth bass"],
    ["violin", "cello", "strings", "harp"], ["trumpet", "trombone", "french horn"],
    ["flute", "clarinet", "oboe", "saxophone", "bassoon"],
    ["drums", "congas", "timpani", "marimba", "vibraphone", "steel drums"], ["synth pad", "synth lead"], ["choir"],
]
QUESTIONS = {
    "tempo": ["How would you describe the pace of this music?", "What best describes the speed of this track?",
              "Which description fits the beat rate of this recording?"],
    "key": ["Which key is this piece in?", "What is the home key of this music?", "In which key is this track played?"],
    "mode": ["Which tonality does the harmony lean towards?", "What kind of scale is the harmony built on?"],
    "metre": ["What is the time signature of this piece?", "How are the beats grouped in each bar?",
              "Which time signature does this music use?"],
    "instrument": ["Which of these instruments can be heard?", "Which instrument is played in this recording?",
                   "Which of the following is part of the ensemble?"],
    "genre": ["Which style best describes this music?", "What genre does this track belong to?",
              "How would you classify this piece stylistically?"],
    "mood": ["What mood does this music convey?", "Which word best captures the feeling of this piece?",
             "What is the emotional character of this track?"],
    "dynamics": ["What is the overall volume level of the playing?",
                 "How would you describe the dynamic level of the performance?"],
    "structure": ["In what order do the parts of this piece unfold?", "Which sequence matches the form of this track?"],
}
# Another writer's questions, for the out-of-distribution split (`--held-out-wordings`; the quickstart's
# data/mc_ood.csv): none of them is asked in training (QUESTIONS above, template_qa.py, phrases.PROMPTS),
# so a model that learnt the training questions' strings gets no help from them.
HELD_OUT_QUESTIONS = {
    "tempo": ["If you tapped along, how quick would the beat feel?", "Which of these matches how briskly the music goes?",
              "Going by the pulse, how would you rate its speed?"],
    "key": ["Where does this music feel at home, harmonically?", "Which tonal centre, with its scale, do you hear?",
            "Going by the chords, which of these is the tonic and scale?"],
    "mode": ["Judging by the chords, which scale colour does the music have?",
             "Listening to the harmony, which of these describes its scale?"],
    "metre": ["Counting along, how do the beats fall into bars?", "Which beat pattern would a conductor use here?",
              "Tap your foot: which meter does it settle into?"],
    "instrument": ["Which sound source would you spot in this mix?", "One of these is heard in the recording. Which?",
                   "Pick the one you can make out here."],
    "genre": ["If you filed this in a record shop, which section would it go in?",
              "Which category would a listener put this under?", "What tradition does this recording come from?"],
    "mood": ["How would this make a listener feel?", "Which feeling does the recording leave you with?",
             "Which word sums up its atmosphere?"],
    "dynamics": ["How loud is the playing, on the whole?", "Which describes how hard the musicians play?"],
    "structure": ["How is this track laid out from start to end?", "Which running order of sections fits what you hear?"],
}
DIMENSIONS = {  # dimension -> (music_knowledge, music_reasoning), in formats.KNOWLEDGE / REASONING words
    "tempo": (["metre and rhythm"], []), "key": (["harmony"], []), "mode": (["harmony"], []),
    "metre": (["metre and rhythm"], []), "instrument": (["instrumentation"], []), "genre": ([], ["genre and style"]),
    "mood": ([], ["mood"]), "dynamics": (["performance"], []), "structure": (["structure"], []),
}
RELATED = [{"key", "mode"}, {"tempo", "metre"}, {"mood", "dynamics"}]
PADDED = {"mode", "metre"}  # too few same-kind answers: padded with unrelated options (see the docstring)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9#]+", text.lower())) - STOPWORDS


def gives_away(question: str, answer: str) -> bool:
    return bool(words(question) & words(answer))


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# ---- what the labels say: per dimension, the question's answer and the clip's true/false facts ----

def _tempo(labels):
    bpm = labels.get("tempo_bpm")
    if not isinstance(bpm, (int, float)) or any(abs(bpm - e) < BOUNDARY_BPM for e in _edges[1:]):
        return None
    i = BANDS.index(tempo_band(bpm))
    related = [TEMPO_PHRASES[BANDS[j]] for j in (i - 1, i + 1) if 0 <= j < len(BANDS)]
    false = [TEMPO_PHRASES[b] for j, b in enumerate(BANDS) if abs(j - i) >= 2]
    return TEMPO_PHRASES[BANDS[i]], related, [TEMPO_PHRASES[BANDS[i]]], false


def _key(labels):
    tonic, mode = labels.get("key"), labels.get("mode")
    if tonic not in PITCH_CLASSES or mode not in MODES:
        return None
    i = PITCH_CLASSES.index(tonic)
    relative = f"{PITCH_CLASSES[(i + 3) % 12]} major" if mode == "minor" else f"{PITCH_CLASSES[(i + 9) % 12]} minor"
    parallel = f"{tonic} {'major' if mode == 'minor' else 'minor'}"
    near = {f"{tonic} {mode}", relative, parallel}
    false = [f"Key of {k}" for k in (f"{p} {m}" for p in PITCH_CLASSES for m in MODES) if k not in near]
    return f"{tonic} {mode}", [relative, parallel], [f"Key of {tonic} {mode}"], false


def _mode(labels):
    mode = labels.get("mode")
    if mode not in MODES:
        return None
    other = "major" if mode == "minor" else "minor"
    return cap(mode), [cap(other)], [f"{cap(mode)} tonality"], [f"{cap(other)} tonality"]


def _metre(labels):
    ts = labels.get("time_signature")
    if ts not in METRES:
        return None
    others = [phrase for t, phrase in METRES.items() if t != ts and t != "2/4"]
    return METRES[ts], others, [METRES[ts]], others


def clip_instruments(labels: dict) -> list[str] | None:
    present = labels.get("instruments")
    if not isinstance(present, list) or not present or not all(isinstance(p, str) for p in present):
        return None
    return sorted({instrument_name(p) for p in present})


def ensembles(clips) -> list[list[str]]:
    """Each clip's instruments (clips without a usable instrument list left out)."""
    return [p for p in (clip_instruments(c.get("labels") or {}) for c in clips) if p]


def offerable(name: str, ensembles: list[list[str]]) -> int:
    """How many of the ensembles could offer instrument `name` as a wrong answer."""
    return sum(not may_be_playing(name, present) for present in ensembles)


def instrument_odds(clips) -> dict[str, float]:
    """instrument -> (clips that could offer it as a wrong answer) / (clips that have it). Almost
    every clip has a bass, so a bass can rarely be a wrong answer: it is asked about that much
    less often, or "the bass" would be right whenever offered (a prior a model learns without
    hearing anything)."""
    groups = ensembles(clips)
    names = sorted({name for present in groups for name in present})
    return {name: offerable(name, groups) / sum(name in present for present in groups) for name in names}


def asked_instrument_weights(present: list[str], odds: dict[str, float] | None) -> list[float]:
    """How likely each of a clip's instruments is to be the one asked about (they sum to 1)."""
    weights = [odds.get(p, 1.0) + 1e-3 if odds else 1.0 for p in present]
    return [w / sum(weights) for w in weights]


def _instrument(labels, rng, odds=None):
    present = clip_instruments(labels)
    if present is None:
        return None
    absent = [x for family in INSTRUMENT_FAMILIES for x in family if not may_be_playing(x, present)]
    asked = rng.choices(present, asked_instrument_weights(present, odds))[0]
    # The asked instrument's family: one whose members' head nouns ("piano", "horn") it shares.
    family = next((f for f in INSTRUMENT_FAMILIES
                   if any(instrument_tokens(m.split()[-1]) & instrument_tokens(asked) for m in f)), [])
    related = [x for x in family if x in absent] or absent
    true, false = [f"{cap(p)} in the ensemble" for p in present], [f"{cap(x)} in the ensemble" for x in absent]
    return cap(asked), [cap(x) for x in related], true, false


def _genre(labels):
    genre = labels.get("genre")
    if not isinstance(genre, str) or not genre.strip():
        return None
    genre = genre.strip().lower().replace("-", " ")
    family = CLASSICAL_FAMILY if genre in CLASSICAL_FAMILY else {genre}
    other = [g for g in GENRES if not words(g) & words(genre) and g not in family]
    related = [g for g in GENRE_NEIGHBOURS.get(genre, []) if g in other] or other
    false = [g for g in other if g not in related]
    return cap(genre), [cap(g) for g in related], [f"{cap(genre)} style"], [f"{cap(g)} style" for g in false]


def _mood(labels):
    mood = labels.get("mood")
    if not isinstance(mood, str) or mood.lower() not in MOODS:
        return None
    v, a = MOODS[mood.lower()]
    related = [m for m, (v2, a2) in MOODS.items() if (v2 != v) + (a2 != a) == 1]
    false = [m for m, (v2, a2) in MOODS.items() if v2 != v and a2 != a]
    mood = mood.lower()
    return cap(mood), [cap(m) for m in related], [f"{cap(mood)} mood"], [f"{cap(m)} mood" for m in false]


def _dynamics(labels):
    phrase = DYNAMICS.get(str(labels.get("dynamics", "")).strip().lower())
    if phrase is None:
        return None
    i = DYNAMICS_ORDER.index(phrase)
    related = [DYNAMICS_ORDER[j] for j in (i - 1, i + 1) if 0 <= j < 3]
    fact = f"{phrase.split()[-1].capitalize()} dynamics"
    false = [f"{DYNAMICS_ORDER[2 - i].split()[-1].capitalize()} dynamics"] if i != 1 else []
    return phrase, related, [fact], false


def _structure(labels):
    sections = labels.get("sections")
    if not isinstance(sections, list) or not all(isinstance(s, dict) and s.get("name") for s in sections):
        return None
    names = [str(s["name"]).lower() for s in sections]
    if len(set(names)) < 2:
        return None
    seq = lambda ns: cap(" – ".join(ns))  # noqa: E731
    variants = []
    for i in range(len(names) - 1):
        if names[i] != names[i + 1]:
            variants.append(names[:i] + [names[i + 1], names[i]] + names[i + 2:])
    variants += [names[:-1], names + ["bridge" if "bridge" not in names else "coda"]]
    related = list(dict.fromkeys(seq(v) for v in variants if v != names and len(v) > 1))
    return seq(names), related, [f"{seq(names)} form"], []


SPECS = {"tempo": _tempo, "key": _key, "mode": _mode, "metre": _metre, "instrument": _instrument, "genre": _genre,
         "mood": _mood, "dynamics": _dynamics, "structure": _structure}


def label_facts(labels: dict, rng: random.Random, odds: dict[str, float] | None = None) -> dict[str, tuple]:
    """dimension -> (correct answer, related wrong answers, true facts, false facts). `odds`
    (`instrument_odds` of the corpus) weighs which of the clip's instruments is asked about."""
    out = {}
    for dim, spec in SPECS.items():
        result = spec(labels, rng, odds) if dim == "instrument" else spec(labels)
        if result is not None:
            out[dim] = result
    return out


# ---- option order, text-only heuristics ----

def options(row: dict) -> list[str]:
    return [row["correct_answer"], row["distractor_1_answer"], row["distractor_2_answer"], row["distractor_3_answer"]]


def row_hash(row: dict) -> int:
    text = "\x1f".join([row["question"], *options(row)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def option_order(row: dict, seed: int = 0) -> list[str]:
    """The four options in display order (A-D) for a harness run with `seed`."""
    h = row_hash(row)
    shown = options(row)[1:]
    random.Random(f"{h}:{seed}").shuffle(shown)
    shown.insert((h + seed) % 4, row["correct_answer"])
    return shown


def correct_position(row: dict, seed: int = 0) -> int:
    """Index (0 = A) of the correct answer in `option_order(row, seed)`."""
    return (row_hash(row) + seed) % 4


def text_only_flags(row: dict) -> list[str]:
    """Reasons a model could pick the correct option without hearing anything (see the docstring)."""
    opts, q = options(row), words(row["question"])
    flags, lengths = [], [len(o) for o in opts]
    others = sorted(lengths[1:])
    if lengths[0] >= max(1.15 * others[-1], others[-1] + MIN_LENGTH_GAP):
        flags.append("longest")
    if lengths[0] <= min(others[0] / 1.15, others[0] - MIN_LENGTH_GAP):
        flags.append("shortest")
    overlaps = [len(words(o) & q) for o in opts]
    if overlaps[0] > max(overlaps[1:]):
        flags.append("question_overlap")
    scores = [sum(len(words(o) & words(p)) for j, p in enumerate(opts) if j != i) + 2 * overlaps[i]
              for i, o in enumerate(opts)]
    if scores[0] > max(scores[1:]):
        flags.append("text_scorer")
    return flags


class PositionCycle:
    """Target answer positions: shuffled blocks of 0-3, so any prefix is balanced to within one."""

    def __init__(self, rng: random.Random):
        self.rng, self.queue = rng, []

    def take(self) -> int:
        if not self.queue:
            self.queue = [0, 1, 2, 3]
            self.rng.shuffle(self.queue)
        return self.queue.pop()

    def give_back(self, position: int) -> None:
        self.queue.append(position)


# ---- questions ----

# The phrasing spec functions give a false fact to stand under another dimension's question;
# without it, the fact is a wrong answer of its own dimension's kind ("Key of D major" -> "D major").
FACT_AFFIXES = re.compile(r"^Key of |( style| mood| in the ensemble| tonality| dynamics| form)$")
DISTRACTOR_KINDS = ("muchomusic", "same-kind")


def answer_vocabulary(clips, rng: random.Random, odds: dict[str, float] | None = None) -> dict[str, Counter]:
    """dimension -> answer -> its weight as a same-kind distractor: how often it is the answer of
    a question, divided by how many clips could offer it as a wrong answer. Then every answer is
    offered as a distractor about three times as often as it is right, so an option's wording
    says nothing about whether it is right: none is wrong merely because no clip has it
    ("Metal"), and a common answer is a distractor in proportion. (With the plain frequency as
    weight, and instruments asked at random, "Acoustic bass" was right 41 times in 53.)"""
    answered: dict[str, Counter] = {}  # dimension -> answer -> questions it answers (expected)
    for clip in clips:
        for dim, (correct, _, _, _) in label_facts(clip.get("labels") or {}, rng).items():
            if dim != "instrument":
                answered.setdefault(dim, Counter())[correct] += 1
    # dimension -> answer -> clips that could offer it as a wrong answer (those it is not true of)
    wrong_in = {dim: {answer: len(clips) - n for answer, n in counts.items()} for dim, counts in answered.items()}
    groups = ensembles(clips)
    for present in groups:
        for name, share in zip(present, asked_instrument_weights(present, odds)):
            answered.setdefault("instrument", Counter())[cap(name)] += share
    wrong_in["instrument"] = {name: offerable(name.lower(), groups) for name in answered.get("instrument", {})}
    return {dim: Counter({answer: n / max(1, wrong_in[dim][answer]) for answer, n in counts.items()})
            for dim, counts in answered.items()}


def same_kind_wrong_answers(dim: str, facts: dict, vocabulary: dict | None = None) -> list[str]:
    """Wrong answers to a `dim` question, phrased like its correct answer; related ones first;
    with a vocabulary, only answers some clip of the corpus has."""
    correct, related, true, false = facts[dim]
    if dim == "instrument" and vocabulary and "instrument" in vocabulary:
        present = [FACT_AFFIXES.sub("", t).lower() for t in true]
        candidates = [v for v in sorted(vocabulary["instrument"]) if not may_be_playing(v.lower(), present)]
    else:
        candidates = [*related, *(FACT_AFFIXES.sub("", f) for f in false)]
        if vocabulary and dim in vocabulary:
            candidates = [c for c in candidates if c in vocabulary[dim]]
    return [c for c in dict.fromkeys(candidates) if c.lower() != correct.lower()]


def _pick_distractors(dim: str, facts: dict, rng: random.Random, kind: str,
                      vocabulary: dict | None = None) -> list[str] | None:
    correct, related, _, _ = facts[dim]
    if kind == "same-kind":
        # Uniformly from the wrong answers: always including a neighbour (the relative key, the
        # next tempo band) would give the answer away as "the option whose neighbour is there".
        wrong = same_kind_wrong_answers(dim, facts, vocabulary)
        if len(wrong) < 3:
            return _padded(dim, facts, wrong, rng) if dim in PADDED else None
        counts = (vocabulary or {}).get(dim, {})
        picks = []
        for _ in range(3):  # weighted sampling without replacement
            weights = [counts.get(w, 1) for w in wrong]
            picks.append(wrong.pop(rng.choices(range(len(wrong)), weights)[0]))
        return picks
    true, false = _unrelated(dim, facts)
    if not (related and true and false):
        return None
    return [rng.choice(related), rng.choice(true), rng.choice(false)]


def _unrelated(dim: str, facts: dict) -> tuple[list[str], list[str]]:
    """Facts about other dimensions than `dim` (and its related ones): (true ones, false ones)."""
    excluded = next((group for group in RELATED if dim in group), {dim})
    true = [f for d, (_, _, t, _) in facts.items() if d not in excluded for f in t]
    false = [f for d, (_, _, _, f_) in facts.items() if d not in excluded for f in f_]
    return true, false


def _padded(dim: str, facts: dict, wrong: list[str], rng: random.Random) -> list[str] | None:
    """Every same-kind wrong answer, then unrelated true and false facts up to three distractors."""
    true, false = _unrelated(dim, facts)
    fillers = [rng.choice(pool) for pool in (true, false) if pool][: 3 - len(wrong)]
    return [*wrong, *fillers] if len(wrong) + len(fillers) == 3 else None


def _choose(base: dict, dim: str, facts: dict, rng: random.Random, target: int | None,
            kind: str = "muchomusic", vocabulary: dict | None = None, wordings: dict = QUESTIONS) -> dict | None:
    correct = facts[dim][0]
    questions = [q for q in wordings[dim] if not gives_away(q, correct)]
    if not questions or _pick_distractors(dim, facts, random.Random(0), kind, vocabulary) is None:
        return None
    kind_flag = "same-kind+padded" if kind == "same-kind" and dim in PADDED else "same-kind"
    best, best_cost = None, None
    for _ in range(TRIES):
        picks = _pick_distractors(dim, facts, rng, kind, vocabulary)
        if len({o.lower() for o in [correct, *picks]}) < 4:
            continue
        row = {**base, "question": rng.choice(questions), "correct_answer": correct,
               "distractor_1_answer": picks[0], "distractor_2_answer": picks[1], "distractor_3_answer": picks[2]}
        flags = text_only_flags(row)
        cost = 2 * (target is not None and row_hash(row) % 4 != target) + bool(flags)
        if best_cost is None or cost < best_cost:
            marks = (["text_only_guessable:" + ",".join(flags)] if flags else []) + \
                    ([f"distractors={kind_flag}"] if kind == "same-kind" else [])
            best, best_cost = {**row, "flags": ";".join(marks)}, cost
        if cost == 0:
            break
    return best


def make_questions(clip: dict, rng: random.Random, per_clip: int = 4, positions: PositionCycle | None = None,
                   dimensions: list[str] | None = None, distractors: str = "muchomusic",
                   vocabulary: dict | None = None, odds: dict[str, float] | None = None,
                   wordings: dict = QUESTIONS) -> list[dict]:
    """Up to `per_clip` questions on different dimensions of `clip`, from its ground-truth labels,
    worded from `wordings` (QUESTIONS, or HELD_OUT_QUESTIONS).

    `positions` steers the answer positions of `option_order` (balanced over all calls sharing it);
    without it they are left to the row hash. `dimensions` limits which dimensions are asked."""
    facts = label_facts(clip.get("labels", {}) or {}, rng, odds)
    asked = [d for d in SPECS if d in facts and (dimensions is None or d in dimensions)]
    rng.shuffle(asked)
    genre = (clip.get("labels") or {}).get("genre")
    rows = []
    for dim in asked:
        if len(rows) >= per_clip:
            break
        knowledge, reasoning = DIMENSIONS[dim]
        base = {"dataset": f"musicllm-{clip.get('source', 'unknown')}", "dataset_identifier": clip["id"],
                "genre": genre if isinstance(genre, str) else "", "music_knowledge": repr(knowledge),
                "music_reasoning": repr(reasoning), "audio": clip["audio"]}
        target = positions.take() if positions else None
        row = _choose(base, dim, facts, rng, target, distractors, vocabulary, wordings)
        if row is None:
            if positions:
                positions.give_back(target)
            continue
        rows.append({column: row.get(column, "") for column in MC_COLUMNS})
    return rows


def balanced_dimensions(clips: list[dict], rng: random.Random) -> dict[str, list[str]]:
    """clip id -> the dimensions to ask about it, so that no answer is much more often right than
    the others: a question whose answer is common in these clips is kept with probability
    median count / its count. On a skewed corpus (most clips in 4/4, few slow ones) a model that
    never hears the audio would otherwise score well by naming the common answer.
    Instrument questions are all kept (which instrument is asked is chosen later, per clip)."""
    facts = {c["id"]: label_facts(c.get("labels") or {}, random.Random(0)) for c in clips}
    counts: dict[str, Counter] = {}
    for per_dim in facts.values():
        for dim, (answer, *_) in per_dim.items():
            counts.setdefault(dim, Counter())[answer] += 1
    medians = {dim: sorted(c.values())[len(c) // 2] for dim, c in counts.items()}
    return {cid: [dim for dim, (answer, *_) in per_dim.items()
                  if dim == "instrument" or rng.random() < medians[dim] / counts[dim][answer]]
            for cid, per_dim in facts.items()}


def write_csv(rows: list[dict], path: Path) -> None:
    """All at once through a temporary file: a killed run leaves the old CSV, never half a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_questions(manifest: Path, out: Path, per_clip: int = 4, seed: int = 0, split: str = "test",
                    distractors: str = "muchomusic", balance_answers: bool = False,
                    held_out_wordings: bool = False) -> list[dict]:
    """Multiple-choice questions on `manifest`'s clips of `split` ("all": every clip), written to the
    CSV `out` (whole or not at all), worded from HELD_OUT_QUESTIONS with `held_out_wordings`;
    returns the rows. Raises FileNotFoundError for a missing manifest (read_jsonl reads none as
    empty), FormatError/KeyError for a bad one."""
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no such manifest")
    # In id order: the seeded choices below follow the clips, so any order of the manifest's
    # lines gives the same questions
    everything = sorted(read_jsonl(manifest), key=lambda c: c["id"])
    clips = {c["id"]: c for c in everything if split == "all" or c.get("split") == split}
    positions, rows = PositionCycle(seeded_rng("mc-positions", seed)), []
    odds = instrument_odds(everything)
    vocabulary = answer_vocabulary(everything, seeded_rng("mc-vocabulary", seed), odds)
    asked = balanced_dimensions(list(clips.values()), seeded_rng("mc-balance", seed)) if balance_answers else {}
    for clip in tqdm(clips.values(), unit="clip", desc="questions"):
        clip = {**clip, "audio": relocate_audio(clip["audio"], manifest.parent, out.parent)}
        rows += make_questions(clip, seeded_rng("mc", seed, clip["id"]), per_clip, positions,
                               dimensions=asked.get(clip["id"]), distractors=distractors, vocabulary=vocabulary,
                               odds=odds, wordings=HELD_OUT_QUESTIONS if held_out_wordings else QUESTIONS)
    write_csv(rows, out)
    flagged = sum(1 for r in rows if "text_only_guessable" in r["flags"])
    print(f"{len(rows)} questions on {len(clips)} clips ({split} split) -> {out}; "
          f"{flagged} flagged text_only_guessable")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musicllm data mc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path, help="clip manifest (JSONL) with ground-truth labels")
    parser.add_argument("--out", type=Path, help="CSV to write (default: multiple_choice.csv beside the manifest)")
    parser.add_argument("--per-clip", type=int, default=4, metavar="N",
                        help="questions per clip, on different dimensions (default 4)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of wordings, distractors and positions (default 0)")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test", "all"],
                        help="clips of this split only (default test: questions on held-out material)")
    parser.add_argument("--distractors", choices=DISTRACTOR_KINDS, default="muchomusic",
                        help="muchomusic: one distractor of each MuChoMusic kind (default); same-kind: three "
                             "wrong answers to the question itself, so text alone cannot eliminate any")
    parser.add_argument("--balance-answers", action="store_true",
                        help="ask fewer questions whose answer is common among these clips, so that every "
                             "answer of a dimension is right about equally often (for test sets)")
    parser.add_argument("--held-out-wordings", action="store_true",
                        help="word the questions as another writer would (HELD_OUT_QUESTIONS, never used in "
                             "training: for out-of-distribution sets)")
    args = parser.parse_args(argv)
    try:
        write_questions(args.manifest, args.out or args.manifest.parent / "multiple_choice.csv", args.per_clip,
                        args.seed, args.split, args.distractors, args.balance_answers, args.held_out_wordings)
    except FileNotFoundError as err:
        print(f"musicllm data mc: {err}", file=sys.stderr)
        return 2
    except (FormatError, KeyError) as err:
        print(f"musicllm data mc: {args.manifest}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
