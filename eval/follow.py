"""Instruction following in free text: does each answer respond to what was asked?

    musicllm eval follow --checkpoint CKPT --manifest manifest.jsonl --split test --out follow.jsonl   # phase 1
    musicllm eval follow --checkpoint CKPT --manifest M --out follow.jsonl --limit-clips 50 --kinds key tempo
    musicllm eval follow --score follow.jsonl --out follow.scores.json                                   # phase 2
    python -m eval.follow ...                                                                            # the same

Multiple-choice log-likelihood can hide a model that answers every question with one memorised
sentence ("What instruments?" -> "It is in a minor key (C minor)."). Here each held-out clip is
asked one question of every kind, in words the template writer never uses in training
(data_gen/writers), and the free answers are read the way a user reads them:
    responds    the answer has evidence of the kind asked (a key when asked the key, ...), whatever
                else it says; other_kind: it does not, but states another kind instead
    correct     what it states agrees with the clip's labels (rows whose labels say; a caption
                scores the share of its facts that are right); correct_when_responds: the same
                over the answers that respond
    distinct    distinct answers / answers per kind (theory: / distinct questions, since it is asked
                without audio), and the clips where two kinds got the same answer
    contradicts the clips whose caption states a key, mode, tempo or metre that the answer to that
                question about the same clip does not (a tempo 10% apart or more): a user who
                asks both reads two stories about one track
    repeats     answers that repeat a sentence or a 4-word n-gram, name one thing twice in a list,
                or (about a clip) state its tempo, key, mode or metre in two sentences
    not_music   clips labelled silence or noise (data_gen/not_music.py) are scored apart: does the
                answer say the clip is not music (recognised), and what it is (right)
Kinds: instruments, key, mode, tempo, metre, mood, style, caption, and theory (a general music
question asked WITHOUT audio: it responds with a keyword of its own, and is right when it says
what THEORY_RIGHT wants, "beats per minute" for BPM). Answers are greedy with the
engines' frequency penalty on the answer's own tokens and their block on repeated 4-token runs, as
the servers decode (--frequency-penalty and --no-repeat-ngram set others).

Phase 1 rows: {id "<clip>:<kind>", clip, kind, question, wording, answer, audio (None for
theory), labels, model, max_new_tokens, frequency_penalty, no_repeat_ngram}; (clip, kind) pairs
already in --out are skipped, so a rerun writes only what is missing. Phase 2 reads only that file.

The readers are rules over words (documented word lists below), not understanding: negation
("not in C major") is not seen, a tonic must be a capital letter ("a minor key" is a mode), and
an answer is right only when what it states fits the labels. This module knows nothing about
multiple choice.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from data_gen.formats import FormatError, JsonlWriter, read_jsonl
from data_gen.procedural.mood import MOODS
from data_gen.procedural.styles import INSTRUMENT_NAMES
from musicllm.lists import repeated_list_item
from musicllm.vocabulary import tempo_band
from data_gen.writers.phrases import may_be_playing
from musicllm.text_attributes import (GENRES, INSTRUMENTS, bpms_in, canonical_genre, canonical_instrument, facts_stated, keys_in,
                             mentions, modes_in, says_no_music, sharp_tonic)

ATTRIBUTE_KINDS = ("instruments", "key", "mode", "tempo", "metre", "mood", "style")
KINDS = ATTRIBUTE_KINDS + ("caption", "theory")
# Deliberately unlike the training questions (template_qa.py, phrases.PROMPTS, multiple_choice.QUESTIONS):
# a model that only learnt those strings should not pass.
WORDINGS = {
    "instruments": ["Name the instruments in this recording.", "Tell me what's playing here, instrument-wise.",
                    "Which instruments make up the sound here?"],
    "key": ["What's the tonal center — which key?", "What key should I play along in?",
            "Name the key of this music."],
    "mode": ["Would you call this major or minor?", "Major or minor: which one is it?",
             "Is the harmony here on the major side or the minor side?"],
    "tempo": ["How quick or slow is this recording?", "Roughly how many beats per minute does this go at?",
              "How would you characterise the speed here?"],
    "metre": ["Is it in duple or triple time?", "What meter would you count this in?",
              "How would you count the beats of a bar here?"],
    "mood": ["What feeling does this track give off?", "What's the emotional vibe here?",
             "How does listening to this make you feel?"],
    "style": ["What genre would you file this under?", "What kind of music is this, genre-wise?",
              "If you had to tag this with one genre, which would it be?"],
    "caption": ["Describe this track.", "Paint me a picture of this music in a few sentences.",
                "Write a short blurb about this recording for a playlist."],
}
# Theory questions (no audio), each with the words an answer to it would use; the question's own
# words are left out, so echoing "major" back to "major or minor?" is no evidence.
THEORY = {question: words.split("|") for question, words in {
    "What is the difference between a major and a minor key?":
        "third|interval|semitone|half step|half-step|scale|brighter|darker|happy|sad|lowered|flattened|raised",
    "What does a time signature of 3/4 mean?": "beat|beats|bar|bars|measure|measures|quarter|crotchet|waltz|count",
    "What is a chord?": "notes|pitches|tones|together|simultaneously|at once|triad|harmony",
    "What does BPM stand for?": "beats per minute|minute",
    "What is syncopation?": "off-beat|offbeat|off the beat|accent|accents|weak beat|weak beats|unexpected|emphasis",
    "How many semitones are there in an octave?": "twelve|12",
}.items()}
WORDINGS["theory"] = list(THEORY)
# What a right answer to each theory question says (a keyword above only shows it is on topic):
# "A chord is a musical instrument ... the notes of the chord" has "notes" and is wrong.
THEORY_RIGHT = {question: re.compile(pattern, re.IGNORECASE) for question, pattern in {
    "What is the difference between a major and a minor key?":
        r"\bthird\b|\b(?:bright|happ|cheer|joy)\w*\b.{0,120}\b(?:dark|sad|melanchol|somb)\w*"
        r"|\b(?:dark|sad|melanchol|somb)\w*\b.{0,120}\b(?:bright|happ|cheer|joy)\w*",
    "What does a time signature of 3/4 mean?": r"\b(?:three|3)\s+(?!or\b)(?:[\w-]+\s+){0,2}beats?\b",
    "What is a chord?": r"\b(?:two|three|several|multiple|more|different)\b[^.]{0,40}\b(?:notes|pitches|tones)\b"
                        r"[^.]{0,60}\b(?:together|simultaneously|at once|at the same time)\b",
    "What does BPM stand for?": r"\bbeats per minute\b",
    "What is syncopation?": r"\boff-?\s?beats?\b|\bweak (?:beat|part)s?\b|\bbetween the beats\b"
                            r"|\b(?:accent|stress|emphasi)\w*\b[^.]{0,60}\bbeats?\b",
    "How many semitones are there in an octave?": r"(?<![\d.])(?:12|twelve)(?![\d.]\d)",
}.items()}

# ---- word lists: what counts as evidence of each kind ----
# Tempo words -> the musicllm.vocabulary bands they fit ("fast" also fits "very fast").
TEMPO_WORDS = {word: set(bands.split(",")) for bands, words in {
    "slow": "very slow|slow|slowly|slow-paced|largo|lento|adagio", "slow,moderate": "leisurely|unhurried",
    "moderate": "andante|moderate|moderato|walking pace", "moderate,medium-fast": "medium|mid-tempo",
    "medium-fast": "medium-fast|moderately fast|allegretto",
    "medium-fast,fast": "upbeat|uptempo|up-tempo|brisk|lively|allegro|quick",
    "fast,very fast": "fast|fast-paced|rapid|vivace", "very fast": "very fast|presto|frantic",
}.items() for word in words.split("|")}
NOT_TEMPO = re.compile(r"\b(?:moderate|medium|slow|fast)\s+(?:dynamics|volume|loudness|level|intensity|build|fade)\b"
                       r"|\b(?:dynamics|volume|loudness)\s+(?:is|are|stays?|remains?)\s+(?:\w+\s+)?"
                       r"(?:moderate|medium)\b",
                       re.IGNORECASE)  # "moderate dynamics" says nothing about the tempo
METRE_WORDS = {  # words -> the time signatures they fit
    "waltz": {"3/4"}, "triple": {"3/4"}, "compound triple": {"9/8"}, "compound quadruple": {"12/8"},
    "compound duple": {"6/8"}, "compound": {"6/8", "9/8", "12/8"}, "duple": {"2/4", "4/4", "6/8"},
    "quadruple": {"4/4"}, "common time": {"4/4"}, "cut time": {"2/2"}, "two groups of three": {"6/8"},
}
_SIGNATURE = re.compile(r"(?<![\d/])(\d{1,2})\s*/\s*(2|4|8|16)(?![\d/])")
_BEATS_PER_BAR = re.compile(r"\b(two|three|four|six|[2346])\s+(?:\w+\s+)?beats?\s+(?:per|to the|to a|in each|in a|"
                            r"in every|a|each)\s+(?:bar|measure)", re.IGNORECASE)
BEATS_METRE = {"two": {"2/4", "6/8"}, "three": {"3/4"}, "four": {"4/4"}, "six": {"6/8"}}
# Collective names -> the instruments (musicllm.text_attributes' canonical names) they may stand for.
_WINDS, _KEYS = "flute clarinet oboe bassoon saxophone", "piano organ synth harpsichord clavinet celesta"
INSTRUMENT_GROUPS = {name: members.split() for name, members in {
    "orchestra": "strings brass horn harp timpani " + _WINDS, "woodwinds": _WINDS, "woodwind": _WINDS,
    "keyboard": _KEYS, "keyboards": _KEYS, "rhythm section": "drums bass guitar piano", "vocal": "choir",
    "singers": "choir", "rapper": "choir", "rapping": "choir", "ukulele": "guitar", "sitar": "sitar", "tabla": "drums",
}.items()}
# Words naming an instrument -> its canonical name: musicllm.text_attributes' words, the corpus' own names
# (data_gen.procedural.styles: "nylon-string guitar" -> "guitar"), and the collective names.
INSTRUMENT_WORDS = {w: c for c, (_, words) in INSTRUMENTS.items() for w in words}
INSTRUMENT_WORDS |= {n: canonical_instrument(n) for n in INSTRUMENT_NAMES.values() if n not in INSTRUMENT_WORDS}
INSTRUMENT_WORDS |= {g: g for g in INSTRUMENT_GROUPS}
MOOD_SYNONYMS = {  # the label's class (data_gen.procedural.mood.MOODS) -> other words that say it
    "happy": "cheerful joyful joyous uplifting sunny upbeat", "playful": "fun light-hearted whimsical bouncy",
    "sad": "melancholic melancholy sorrowful mournful somber sombre gloomy wistful",
    "calm": "peaceful relaxed relaxing serene tranquil soothing mellow gentle chill",
    "energetic": "lively driving exciting powerful vigorous high-energy", "dreamy": "ethereal floaty hazy hypnotic",
    "tense": "suspenseful anxious nervous urgent uneasy", "dark": "ominous brooding sinister menacing eerie mysterious",
}
OTHER_MOODS = ("romantic nostalgic triumphant epic aggressive angry hopeful reflective contemplative bittersweet "
               "haunting sentimental emotional moody solemn dramatic intense").split()  # no label says these
MOOD_WORDS = {w: m for m in MOODS for w in [m, *MOOD_SYNONYMS.get(m, "").split()]} | {w: w for w in OTHER_MOODS}
STYLE_WORDS = {g: list(words) for g, words in GENRES.items()}  # musicllm.text_attributes' genres, plus:
for _genre, _extra in {"classical": "baroque", "jazz": "bebop|big band",
                       "latin": "samba|tango|reggaeton|cumbia|bossa", "hip hop": "trap|boom bap", "rock": "grunge",
                       "electronic": "dance music|trance|dubstep|drum and bass|synthwave", "folk": "bluegrass|celtic",
                       "punk": "punk", "gospel": "gospel", "new age": "new age", "world": "world music",
                       "lo-fi": "lo-fi|lofi", "soundtrack": "soundtrack|cinematic|film score",
                       # the procedural corpus's own styles that name no genre above
                       "brass band": "brass band", "solo piano": "solo piano",
                       "unaccompanied": "unaccompanied|a cappella"}.items():
    STYLE_WORDS.setdefault(_genre, []).extend(_extra.split("|"))
STYLE_OF = {w: g for g, words in STYLE_WORDS.items() for w in words}
# Key evidence without "major"/"minor": a tonic after "key"/"tonic" in the same sentence ("the key is D").
_KEY_THEN_TONIC = re.compile(r"\b(?i:key|tonic|tonal cent(?:er|re)|home note)\b[^.?!A-Z]{0,24}?"
                             r"(?<![\w#])([A-G])(?:\s*(#|♯|b|♭)|\s*-?\s*(sharp|flat))?(?![\w#♯♭])")
# A tonic named alone as what "it" is in, at the end of a clause: "It is in C." answers "What key?"
_IN_TONIC = re.compile(r"\b(?i:it|this|that)(?:'s| is)(?: (?i:probably|most likely|set))? in "
                       r"([A-G])(?:\s*(#|♯|b|♭)|\s*-?\s*(sharp|flat))?(?=\s*(?:[.,;!?]|$))")
# An answer about a particular recording is no theory answer, however many keywords it has.
TRACK_TALK = re.compile(r"\bthis (?:track|piece|song|recording|clip|tune|excerpt|music)\b|\bI (?:can )?hear\b"
                        r"|\bit(?:'s| is)(?: probably| most likely)? "
                        r"(?:(?:set )?in (?:an? )?(?:[A-G]\b|major|minor|\d/\d)"
                        r"|played on|performed on)"
                        r"|\bit (?:feels|sounds like|seems|moves at)\b"
                        r"|\bthe (?:tempo|key|mood|instrumentation|genre) (?:is|seems)\b", re.IGNORECASE)


@functools.lru_cache(maxsize=64)
def _alternation(phrases: tuple[str, ...]) -> re.Pattern:
    # Longest first: where "very fast" matches, the "fast" inside it is not found again.
    longest_first = sorted(phrases, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, longest_first)) + r")(?!\w)")


def _found(text: str, phrases) -> list[str]:
    """The phrases (lower case) that occur in `text` as whole words; hyphens split words."""
    return list(dict.fromkeys(_alternation(tuple(phrases)).findall(text.lower())))


def stated_tonics(answer: str) -> set[str]:
    """Tonics (sharps) an answer names as a key: "C minor", "the key is Db", "it is in C"."""
    named = []  # (letter, sign, word) of each tonic named without a mode
    for match in _KEY_THEN_TONIC.finditer(answer):
        letter, sign, word = match.groups()
        rest = answer[match.end():]
        if letter == "A" and not (sign or word) and re.match(r"\s+[a-z]", rest) \
                and not re.match(r"\s+(?:and|with|but|or|which|so|because)\b", rest):
            continue  # "the key features a bright..." : "A" is an article there
        named.append((letter, sign, word))
    named += _IN_TONIC.findall(answer)
    return {tonic for tonic, _ in keys_in(answer)} | {sharp_tonic(letter, sign or (word.lower() if word else None))
                                                      for letter, sign, word in named}


def stated_tempi(answer: str) -> tuple[list[float], list[set[str]]]:
    """(BPM values, the tempo bands each tempo word fits)."""
    return bpms_in(answer), [TEMPO_WORDS[w] for w in _found(NOT_TEMPO.sub(" ", answer), TEMPO_WORDS)]


def stated_metres(answer: str) -> list[set[str]]:
    """For each metre statement, the time signatures it fits."""
    found = [{f"{n}/{d}"} for n, d in _SIGNATURE.findall(answer)]
    found += [BEATS_METRE[{"2": "two", "3": "three", "4": "four", "6": "six"}.get(n, n.lower())]
              for n in _BEATS_PER_BAR.findall(answer)]
    return found + [METRE_WORDS[w] for w in _found(answer, METRE_WORDS)]


def stated_instruments(answer: str) -> set[str]:
    """Instruments named, as musicllm.text_attributes' canonical names, or collective names (INSTRUMENT_GROUPS)."""
    return {INSTRUMENT_WORDS[w] for w in _found(answer, INSTRUMENT_WORDS)}


def stated_moods(answer: str) -> set[str]:
    return {MOOD_WORDS[w] for w in _found(answer, MOOD_WORDS)}


def stated_styles(answer: str) -> set[str]:
    return {STYLE_OF[w] for w in _found(answer, STYLE_OF)}


@functools.lru_cache(maxsize=4096)  # asked for every row by several scores
def kinds_mentioned(answer: str) -> frozenset[str]:
    """The attribute kinds (ATTRIBUTE_KINDS) an answer states something about."""
    tempo_bpms, tempo_words = stated_tempi(answer)
    evidence = {"instruments": stated_instruments(answer), "key": stated_tonics(answer), "mode": modes_in(answer),
                "tempo": tempo_bpms or tempo_words, "metre": stated_metres(answer), "mood": stated_moods(answer),
                "style": stated_styles(answer)}
    return frozenset(kind for kind, found in evidence.items() if found)


def words_of(answer: str) -> list[str]:
    return re.findall(r"[\w#/'-]+", answer.lower())


def _attributes(answer: str) -> set[str]:
    """Kinds mentioned, with the mode folded into the key when both are stated: "C minor" is one fact."""
    kinds = kinds_mentioned(answer)
    return kinds - {"mode"} if "key" in kinds else kinds


def responds(kind: str, answer: str, question: str | None = None) -> bool:
    """Does `answer` respond to a question of `kind`? Attribute kinds: evidence of that kind,
    whatever else is said. Caption: two different attributes and at least 8 words. Theory: a
    keyword of the question asked (any theory question's when `question` is not one of ours)
    and no talk about a particular recording."""
    if kind in ATTRIBUTE_KINDS:
        return kind in kinds_mentioned(answer)
    if kind == "caption":
        return len(_attributes(answer)) >= 2 and len(words_of(answer)) >= 8
    if kind == "theory":
        keywords = THEORY.get(question) or [w for ws in THEORY.values() for w in ws]
        return bool(_found(answer, keywords)) and not TRACK_TALK.search(answer)
    raise ValueError(f"unknown question kind {kind!r}; expected one of {KINDS}")


def _all_fit(statements: list[set[str]], truth: str) -> bool:
    """Right only when something is stated and every statement fits: a list of every value is not an answer."""
    return bool(statements) and all(truth in s for s in statements)


def _instruments_right(answer: str, present: list) -> bool | None:
    if not isinstance(present, list) or not present:
        return None
    truth = [canonical_instrument(p) for p in present]
    heard = [any(may_be_playing(c, truth) for c in INSTRUMENT_GROUPS.get(n, [n])) for n in stated_instruments(answer)]
    return bool(heard) and all(heard)  # one named that plays, none named that clearly does not


def correct(kind: str, answer: str, labels: dict, question: str | None = None) -> bool | float | None:
    """Whether what `answer` states about `kind` agrees with the clip's ground-truth `labels`:
    False when it states nothing of the kind, None where the labels do not say. Caption: the
    share of its graded facts that are right (None when none can be graded). Theory: whether it
    says what THEORY_RIGHT wants for `question` (None for a question not in THEORY)."""
    labels = labels or {}
    if kind == "theory":
        return bool(THEORY_RIGHT[question].search(answer)) if question in THEORY_RIGHT else None
    if kind == "key":
        tonic, mode = labels.get("key"), labels.get("mode")
        if not tonic:
            return None  # sharps in labels; flats in answers are read as sharps (Db == C#)
        return stated_tonics(answer) == {tonic} and (not mode or modes_in(answer) == {mode})
    if kind == "mode":
        return modes_in(answer) == {labels["mode"]} if labels.get("mode") else None
    if kind == "tempo":
        bpm = labels.get("tempo_bpm")
        if not isinstance(bpm, (int, float)) or bpm <= 0:
            return None
        bpms, bands = stated_tempi(answer)
        if bpms:  # a number says more than a word: "slow, 70 BPM" at 68 is right
            return all(abs(b - bpm) <= 0.1 * bpm for b in bpms)
        return _all_fit(bands, tempo_band(float(bpm)))
    if kind == "metre":
        return _all_fit(stated_metres(answer), labels["time_signature"]) if labels.get("time_signature") else None
    if kind == "instruments":
        return _instruments_right(answer, labels.get("instruments"))
    if kind == "mood":  # moods combine ("calm and dreamy"): the true one must be among them
        return str(labels["mood"]).lower() in stated_moods(answer) if labels.get("mood") else None
    if kind == "style":  # a style commits to one genre (as eval.captioning's genre score)
        if not labels.get("genre"):
            return None
        truth = canonical_genre(labels["genre"])  # the corpus's "chamber", "orchestral", "choral": "classical"
        unlisted = truth not in STYLE_WORDS and mentions(answer.lower(), truth)  # a label outside the lists
        return (stated_styles(answer) | ({truth} if unlisted else set())) == {truth}
    if kind == "caption":
        graded = [correct(k, answer, labels) for k in _attributes(answer)]
        graded = [g for g in graded if g is not None]
        return sum(graded) / len(graded) if graded else None
    if kind == "theory":
        return None
    raise ValueError(f"unknown question kind {kind!r}; expected one of {KINDS}")


def repeats_itself(answer: str, about_a_track: bool = True) -> bool:
    """A sentence (of 2+ words) said twice, a 4-word n-gram repeated (a looping answer), a list
    that names one thing twice ("tuba, piano, piano and cello"), or, in an answer about a track,
    a tempo, key, mode or metre stated in two sentences ("... in 6/8 time. It has two groups of
    three eighth notes per bar."; a theory answer may well say "major" twice)."""
    said = [s for s in re.split(r"(?<=[.!?])\s+|\n+", answer) if len(words_of(s)) >= 2]
    sentences = [normalise(s) for s in said]
    if len(sentences) != len(set(sentences)) or any(repeated_list_item(s) for s in said):
        return True
    if about_a_track:
        facts = [fact for s in said for fact in facts_stated(s)]
        if len(facts) != len(set(facts)):
            return True
    words = words_of(answer)
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    return len(grams) != len(set(grams))


def _repeats(row: dict) -> bool:
    return repeats_itself(row["answer"], about_a_track=row["kind"] != "theory")


def normalise(answer: str) -> str:
    """Lower case, punctuation dropped: answers that differ only there count as the same."""
    return " ".join(words_of(answer))


# ---- phase 2: scores ----

def _check_row(row: dict, where: str) -> None:
    for field in ("clip", "kind", "question", "answer"):
        if not isinstance(row.get(field), str):
            raise FormatError(f"{where}: missing or non-string field {field!r}")
    if row["kind"] not in KINDS:
        raise FormatError(f"{where}: field 'kind' is {row['kind']!r}, expected one of {KINDS}")


def _rate(values: list) -> float | None:
    return sum(values) / len(values) if values else None


def _kind_summary(kind: str, rows: list[dict]) -> dict:
    answered = [responds(kind, r["answer"], r["question"]) for r in rows]
    grades = [(correct(kind, r["answer"], r.get("labels") or {}, r["question"]), ok) for r, ok in zip(rows, answered)]
    graded = [(g, ok) for g, ok in grades if g is not None]  # caption grades are shares
    answers = {normalise(r["answer"]) for r in rows}
    # Theory is asked without audio: one question, one greedy answer whatever the clip, so its
    # answers are counted against the distinct questions asked, not the clips.
    asked = len({r["question"] for r in rows}) if kind == "theory" else len(rows)
    other = [not ok and bool(kinds_mentioned(r["answer"]) - {kind}) for r, ok in zip(rows, answered)]
    return {"n": len(rows), "responds": _rate(answered),
            "other_kind": _rate(other) if kind in ATTRIBUTE_KINDS else None,  # answered another kind instead
            "n_graded": len(graded), "correct": _rate([g for g, _ in graded]),
            "correct_when_responds": _rate([g for g, ok in graded if ok]),
            "distinct": min(1.0, len(answers) / asked), "repeats": _rate([_repeats(r) for r in rows])}


def shared_answers(rows: list[dict]) -> list[dict]:
    """Per clip, each answer given to two or more kinds: {clip, kinds, answer}."""
    by_clip = defaultdict(lambda: defaultdict(set))
    for row in rows:
        by_clip[row["clip"]][normalise(row["answer"])].add(row["kind"])
    return [{"clip": clip, "kinds": sorted(kinds), "answer": answer}
            for clip, answers in by_clip.items() for answer, kinds in answers.items() if len(kinds) > 1]


# What a caption and an answer about one clip must agree on: each kind's statements, and whether two agree.
AGREEMENT = {
    "key": (stated_tonics, lambda a, b: bool(a & b)),
    "mode": (modes_in, lambda a, b: bool(a & b)),
    "tempo": (lambda text: stated_tempi(text)[0], lambda a, b: any(abs(x - y) < 0.1 * max(x, y) for x in a for y in b)),
    "metre": (lambda text: set().union(*stated_metres(text)), lambda a, b: bool(a & b)),
}


def contradictions(rows: list[dict]) -> tuple[list[dict], int]:
    """Per clip and kind, where its caption and its answer to that kind both state something and
    disagree: {clip, kind, caption, answer} (each as stated); and how many clips had a caption and
    an answer to compare it with."""
    by_clip = defaultdict(dict)
    for row in rows:
        by_clip[row["clip"]][row["kind"]] = row["answer"]
    found, compared = [], 0
    for clip, answers in by_clip.items():
        kinds = [kind for kind in AGREEMENT if kind in answers] if "caption" in answers else []
        compared += bool(kinds)
        for kind in kinds:
            stated, agree = AGREEMENT[kind]
            said, asked = stated(answers["caption"]), stated(answers[kind])
            if said and asked and not agree(said, asked):
                found.append({"clip": clip, "kind": kind, "caption": sorted(said), "answer": sorted(asked)})
    return found, compared


# ---- silence and noise (data_gen/not_music.py): does the answer say what the clip is? ----
# Words that say the clip is silent, or noise; "no music" says it is neither music nor which.
NOT_MUSIC_WORDS = {"silence": re.compile(r"\bsilen(?:t|ce)\b|\bno sound\b", re.IGNORECASE),
                   "noise": re.compile(r"\bnois(?:e|y)\b|\bhiss(?:ing)?\b|\bhum(?:ming)?\b|\bstatic\b", re.IGNORECASE)}


def not_music(row: dict) -> str | None:
    """The row's clip's `sound` label when it is silence or noise, else None (music)."""
    sound = (row.get("labels") or {}).get("sound")
    return sound if sound in NOT_MUSIC_WORDS else None


def not_music_summary(rows: list[dict]) -> dict:
    """recognised: the answer says the clip is silent, noise or not music; right: it names what
    the clip is (silence as silence, noise as noise); distinct as for the music's kinds."""
    said = [{label for label, words in NOT_MUSIC_WORDS.items() if words.search(r["answer"])} for r in rows]
    recognised = [bool(s) or says_no_music(r["answer"]) for r, s in zip(rows, said)]
    right = [not_music(r) in s and len(s) == 1 for r, s in zip(rows, said)]
    by_sound = {label: {"n": sum(not_music(r) == label for r in rows),
                        "right": _rate([ok for r, ok in zip(rows, right) if not_music(r) == label])}
                for label in NOT_MUSIC_WORDS}
    return {"n": len(rows), "clips": len({r["clip"] for r in rows}), "recognised": _rate(recognised),
            "right": _rate(right), "distinct": len({normalise(r["answer"]) for r in rows}) / len(rows),
            "repeats": _rate([_repeats(r) for r in rows]), "by_sound": by_sound,
            "missed": [{"clip": r["clip"], "kind": r["kind"], "answer": r["answer"]}
                       for r, ok in zip(rows, recognised) if not ok][:10]}


def score_rows(rows: list[dict], file: str = "") -> dict:
    """Per kind and overall scores of phase 1 rows (see the module docstring); the answers about
    clips of silence or noise are scored apart (`not_music_summary`), under "not_music"."""
    if not rows:
        raise FormatError(f"{file or 'rows'}: no answers to score (missing or empty file?)")
    for number, row in enumerate(rows, 1):
        _check_row(row, f"{file or 'rows'}: row {number}")
    quiet = [row for row in rows if not_music(row)]
    rows = [row for row in rows if not not_music(row)]
    heard = {"not_music": not_music_summary(quiet)} if quiet else {}
    if not rows:
        return {"kind": "follow", "file": file, "model": quiet[0].get("model"), "overall": None, "kinds": {}, **heard}
    by_kind, kinds_of = defaultdict(list), defaultdict(set)
    for row in rows:
        by_kind[row["kind"]].append(row)
        kinds_of[normalise(row["answer"])].add(row["kind"])
    shared, clips = shared_answers(rows), {r["clip"] for r in rows}
    disagree, compared = contradictions(rows)
    common = Counter(normalise(r["answer"]) for r in rows).most_common(5)  # the memorised sentences, if any
    overall = {"n": len(rows), "clips": len(clips),
               "responds": _rate([responds(r["kind"], r["answer"], r["question"]) for r in rows]),
               "repeats": _rate([_repeats(r) for r in rows]),
               "clips_with_shared_answer": len({s["clip"] for s in shared}),
               "shared_answer_share": len({s["clip"] for s in shared}) / len(clips),
               # a user told that the music they uploaded is silence or noise
               "says_no_music": sum(says_no_music(r["answer"]) for r in rows if r["kind"] != "theory"),
               "clips_contradicting": len({c["clip"] for c in disagree}),
               "clips_compared": compared,
               "contradictions_by_kind": dict(Counter(c["kind"] for c in disagree))}
    return {"kind": "follow", "file": file, "model": rows[0].get("model"), "overall": overall,
            "kinds": {k: _kind_summary(k, by_kind[k]) for k in KINDS if k in by_kind},
            "shared_examples": shared[:10], "contradiction_examples": disagree[:10],
            "common_answers": [{"answer": a, "n": n, "kinds": sorted(kinds_of[a])} for a, n in common], **heard}


def not_music_line(scores: dict) -> str:
    """One line on the silence and noise clips' answers, or "" when there were none."""
    if not (s := scores.get("not_music")):
        return ""
    return (f"silence and noise ({s['clips']} clips, {s['n']} answers): the answer says the clip is not music "
            f"{s['recognised']:.1%}, names what it is {s['right']:.1%}")


def table(scores: dict) -> str:
    if scores["overall"] is None:
        return not_music_line(scores)
    cells = ("n", "responds", "other_kind", "correct", "correct_when_responds", "distinct", "repeats")
    header = f"{'kind':12s}" + "".join(f"{c.replace('correct_when_responds', 'right|resp'):>12s}" for c in cells)
    lines = [header, "-" * len(header)]
    for kind, s in [*scores["kinds"].items(), ("overall", scores["overall"])]:
        values = [s.get(c) for c in cells]
        lines.append(f"{kind:12s}" + "".join(f"{'-':>12s}" if v is None else f"{v:12d}" if isinstance(v, int)
                                             else f"{v:12.3f}" for v in values))
    o = scores["overall"]
    lines.append(f"clips where two kinds got the same answer: {o['clips_with_shared_answer']} of {o['clips']} "
                 f"({o['shared_answer_share']:.1%})")
    if o.get("says_no_music") is not None:  # scores written before session 41 lack it
        lines.append(f"answers about music that say it holds no music: {o['says_no_music']}")
    if o["clips_compared"]:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(o["contradictions_by_kind"].items())) or "none"
        lines.append(f"clips whose caption and answers disagree: {o['clips_contradicting']} of {o['clips_compared']} ({kinds})")
    return "\n".join(lines + [not_music_line(scores)] if scores.get("not_music") else lines)


def score(path: Path, out: Path | None) -> int:
    scores = score_rows(list(read_jsonl(path)), file=str(path))
    print(table(scores))
    for common in scores.get("common_answers", [])[:3]:
        print(f"  {common['n']:4d} x {common['answer'][:70]!r} ({', '.join(common['kinds'])})")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(scores, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


# ---- phase 1: answers ----

def wording(clip_id: str, kind: str, seed: int = 0) -> tuple[int, str]:
    """(index, question) for a clip and kind: a stable choice, so reruns ask the same."""
    digest = hashlib.sha256(f"{seed}:{clip_id}:{kind}".encode()).digest()
    index = int.from_bytes(digest[:8], "big") % len(WORDINGS[kind])
    return index, WORDINGS[kind][index]


def load_clips(manifest: Path, split: str, limit: int | None) -> list[dict]:
    """The manifest's clips of `split` ('all': every clip; a clip without a split is in each),
    with `audio` resolved against the manifest's folder."""
    clips, splits = [], Counter()
    for number, clip in enumerate(read_jsonl(manifest), 1):
        for field in ("id", "audio"):
            if not isinstance(clip.get(field), str) or not clip[field]:
                raise FormatError(f"{manifest}: clip {number}: missing or non-string field {field!r}")
        splits[clip.get("split")] += 1
        if split == "all" or clip.get("split", split) == split:
            audio = Path(clip["audio"])
            clips.append({**clip, "audio": str(audio if audio.is_absolute() else manifest.parent / audio)})
    if not clips:
        raise FormatError(f"{manifest}: no clips in split {split!r} (splits there: {dict(splits)})")
    return clips[:limit] if limit else clips


def answer_batch(model, processor, questions: list[str], clips: list, max_new_tokens: int,
                 frequency_penalty: float, no_repeat_ngram: int) -> list[str]:
    """Greedy answers, one per (question, clip or None), decoded as the engines decode."""
    from eval.predict import generation_inputs  # imports torch: phase 2 never needs it
    from musicllm.engines import penalties

    inputs = generation_inputs(processor, questions, clips)
    new_tokens = model.generate(**inputs.to(model.device), max_new_tokens=max_new_tokens, do_sample=False,
                                logits_processor=penalties(frequency_penalty, no_repeat_ngram, processor.tokenizer),
                                pad_token_id=processor.tokenizer.pad_token_id)
    return [processor.decode(ids).strip() for ids in new_tokens]


def generate(args) -> int:
    """Phase 1: every kind asked once per clip, appended to args.out."""
    clips = load_clips(args.manifest, args.split, args.limit_clips)
    done = {(r.get("clip"), r.get("kind")) for r in read_jsonl(args.out)}
    todo = [(clip, kind) for clip in clips for kind in args.kinds if (clip["id"], kind) not in done]
    print(f"{len(clips)} clips ({args.split}) x {len(args.kinds)} kinds, {len(clips) * len(args.kinds) - len(todo)} "
          f"already in {args.out}, {len(todo)} to ask")
    missing = sorted({c["audio"] for c, kind in todo if kind != "theory" and not Path(c["audio"]).is_file()})
    if missing:
        raise FormatError(f"{args.manifest}: {len(missing)} audio file(s) not found, e.g. {missing[0]}")
    if not todo:
        return 0
    from tqdm import tqdm

    from musicllm.checkpoint import default_device, load_checkpoint
    from musicllm.engines import DEFAULT_FREQUENCY_PENALTY, DEFAULT_NO_REPEAT_NGRAM

    if args.frequency_penalty is None:
        args.frequency_penalty = DEFAULT_FREQUENCY_PENALTY
    if args.no_repeat_ngram is None:
        args.no_repeat_ngram = DEFAULT_NO_REPEAT_NGRAM
    device = args.device or default_device()
    model, processor = load_checkpoint(args.checkpoint, dtype=args.dtype, device=device)
    audio = {}  # path -> samples of the batch's clips (a clip's kinds come together, so each loads once)
    with JsonlWriter(args.out) as writer, tqdm(total=len(todo), unit="q", desc="follow") as bar:
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start:start + args.batch_size]
            asked = [wording(clip["id"], kind, args.wording_seed) for clip, kind in batch]
            needed = {clip["audio"] for clip, kind in batch if kind != "theory"}
            audio = {p: audio[p] if p in audio else processor.load_audio(p) for p in needed}
            shown = [None if kind == "theory" else audio[clip["audio"]] for clip, kind in batch]
            answers = answer_batch(model, processor, [q for _, q in asked], shown, args.max_new_tokens,
                                   args.frequency_penalty, args.no_repeat_ngram)
            for (clip, kind), (index, question), clip_audio, answer in zip(batch, asked, shown, answers):
                writer.write({"id": f"{clip['id']}:{kind}", "clip": clip["id"], "kind": kind, "question": question,
                              "wording": index, "answer": answer, "audio": clip["audio"] if clip_audio is not None
                              else None, "labels": clip.get("labels") or {}, "model": str(args.checkpoint),
                              "max_new_tokens": args.max_new_tokens, "frequency_penalty": args.frequency_penalty,
                              "no_repeat_ngram": args.no_repeat_ngram})
            bar.update(len(batch))
    print(f"wrote {len(todo)} rows -> {args.out}; score them with: musicllm eval follow --score {args.out} "
          f"--out {Path(args.out).with_suffix('.scores.json')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musicllm eval follow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path,
                        help="phase 1: answers JSONL (appended to; resumable); with --score: scores JSON")
    parser.add_argument("--score", type=Path, metavar="ANSWERS", help="phase 2: score this answers JSONL")
    parser.add_argument("--checkpoint", type=Path, help="phase 1: model folder (musicllm.checkpoint)")
    parser.add_argument("--manifest", type=Path, help="phase 1: clip manifest (audio relative to its folder, labels)")
    parser.add_argument("--split", default="test", help="clips of this split, or 'all' (default test)")
    parser.add_argument("--limit-clips", type=int, help="only the first N clips of the split")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, metavar="KIND",
                        help=f"question kinds, of {' '.join(KINDS)} (default all)")
    parser.add_argument("--wording-seed", type=int, default=0, help="seed of each question's wording (default 0)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="answer length limit (default 48)")
    parser.add_argument("--frequency-penalty", type=float, default=None,
                        help="subtracted from a token's logit per time the answer said it (default: the "
                        "engines' DEFAULT_FREQUENCY_PENALTY, what the chat, the API and `caption` decode with)")
    parser.add_argument("--no-repeat-ngram", type=int, default=None,
                        help="never repeat a run of this many answer tokens nor name a list's item twice, 0 = off "
                        "(default: the engines' DEFAULT_NO_REPEAT_NGRAM)")
    parser.add_argument("--batch-size", type=int, default=8, help="questions per batch (default 8)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", default=None, help="weights dtype, e.g. bfloat16 (default: as saved)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.score and (args.checkpoint or args.manifest):
        parser.error("--score reads answers only; run phase 1 (--checkpoint, --manifest) on its own")
    if not args.score and not (args.checkpoint and args.manifest):
        parser.error("phase 1 needs --checkpoint and --manifest (or --score ANSWERS for phase 2)")
    try:
        return score(args.score, args.out) if args.score else generate(args)
    except FormatError as err:
        print(f"musicllm eval follow: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
