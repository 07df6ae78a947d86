"""Q&A topics of the template writer: LLark-style factual and reasoning questions and
MusicQA-style open questions. Each topic is (whether the facts allow it, say -> (question, answer));
every answer states the facts it rests on, and nothing else.
"""

from __future__ import annotations

from data_gen.writers.phrases import (
    ASKABLE_INSTRUMENTS, METRE_WORDS, article, caption, clock, join_list,
    may_be_playing, plural,
)


# ---- stage 2: factual Q&A (LLark) ----
# Each topic: (whether the facts allow it, say -> (question, answer)).

# The templates' own wordings of each factual question. The LLM writes more of them
# (data_gen/wordings.py), which the writer picks from alongside these (`Phrases.wordings`).
# Words two kinds share are asked in both ("beats" for the tempo and for the metre), so that
# no single word decides which kind of answer a question gets.
QUESTIONS = {
    "tempo": ["What is the tempo of this piece?", "How fast is this music?", "What's the BPM of this track?",
              "Is this fast or slow?", "What speed is this played at?", "How many BPM is this?",
              "Tell me the tempo.", "At what tempo does this move?", "What's the pace of this song?",
              "Is the pace quick or relaxed?", "How many beats per minute is this?",
              "What is the tempo in beats per minute?", "How quickly do the beats go by?"],
    "key": ["What key is this in?", "Which key is this piece in?", "What is the tonal centre of this music?",
            "What's the key?", "In which key is this song written?", "Tell me the key of this track.",
            "Which key does this piece use?", "What is the home key here?"],
    "mode": ["Is this in a major or a minor key?", "Does this sound major or minor?",
             "What mode is this piece in?", "Is the key major or minor?", "Major key or minor key?",
             "Does it use a major or a minor scale?", "Is this piece in major or in minor?"],
    "metre": ["What is the time signature?", "What metre is this in?", "What time signature is this in?",
              "What's the meter of this song?", "How is the rhythm grouped into bars?",
              "What is the metre of this track?", "Does this move in twos, threes or fours?",
              "How are the beats grouped here?", "Is this in common time or in three?",
              "How many beats are in each bar?", "Is the metre duple or triple?"],
    "instruments": ["What instruments are playing?", "Which instruments can you hear?",
                    "What is the instrumentation of this track?", "What instruments do you hear?",
                    "Which instruments are used in this track?", "What is being played here?",
                    "List the instruments in this piece.", "What's the instrumentation?"],
    "genre": ["What genre is this?", "What style of music is this?", "How would you classify this music?",
              "What genre is this track?", "Which genre does this belong to?", "What musical style is this?",
              "How would you describe the genre?", "Which style is this song?"],
    "mood": ["What mood does this music convey?", "How does this piece feel?",
             "What is the emotional character of this track?", "What's the mood of this song?",
             "What emotion does this track express?", "How would you describe the mood?",
             "What atmosphere does this piece create?"],
}


def ask(say, topic: str, more=()) -> str:
    """One wording of the `topic` question: the templates', the LLM's (if any), or `more`."""
    return say.pick(QUESTIONS[topic] + say.wordings.get(topic, []) + list(more))


def _tempo(say):
    q = ask(say, "tempo")
    bpm, band = say.bpm(), say.band()
    return q, say.maybe(("tempo_bpm",), [f"The tempo is {bpm}, which is {band}.", f"It is {band}, at {bpm}."],
                        [f"It is {band}, at {bpm} by my estimate.", f"The tempo is {bpm}, so {band}."])


def _key(say):
    q = ask(say, "key")
    tonic = say.f["key"]
    if say.has("mode"):
        key = f"{tonic} {say.f['mode']}"
        return q, say.maybe(("key", "mode"), [f"It is in {key}.", f"The key is {key}."],
                            [f"It is probably in {key}.", f"Most likely {key}, though that is an estimate."])
    return q, say.maybe(("key",), [f"Its tonal centre is {tonic}."], [f"Its tonal centre is probably {tonic}."])


def _mode(say):
    q = ask(say, "mode")
    mode = say.f["mode"]
    return q, say.maybe(("mode",), [f"It is in {article(mode)} {mode} key.", f"The mode is {mode}."],
                        [f"It is probably in {article(mode)} {mode} key.", f"Probably {mode}, though that is an estimate."])


def _metre(say):
    ts = say.f["time_signature"]
    words = METRE_WORDS.get(ts)
    per_bar = ["How many beats are there in each bar?", "How many beats to a bar does this have?"]
    q = ask(say, "metre", per_bar if words else [])
    # Only what the time signature says outright: a name of its grouping ("simple triple time")
    # was one more word to infer, and the LLM wrote 4/4's into 3/4's answers.
    detail = f", with {words}." if words else "."
    return q, say.maybe(("time_signature",), [f"It is in {ts}{detail}"], [f"It seems to be in {ts}{detail}"])


def _instruments(say):
    q = ask(say, "instruments")
    inst = say.instruments()
    return q, say.maybe(("instruments",), [f"I can hear {inst}.", f"The instrumentation is {inst}.",
                                           f"It is played on {inst}."],
                        [f"It sounds like {inst}, although that is an estimate.", f"Probably {inst}."])


def _instrument_check(say):
    # Only for ground truth: "no" needs a list known to be complete, which an estimate is not.
    present = say.f["instruments"]
    absent = [x for x in ASKABLE_INSTRUMENTS if not may_be_playing(x, present)]
    asked = say.pick(absent) if absent and say.rng.random() < 0.5 else say.pick(present)
    named = asked if plural(asked) else f"{article(asked)} {asked}"
    q = say.pick([f"Are there {asked} in this?" if plural(asked) else f"Is there {named} in this?",
                  f"Can you hear {named}?"])
    if asked in present:
        others = [p for p in present if p != asked]
        along = f", along with {join_list(others)}." if others else "."
        return q, f"Yes, {named} {'are' if plural(asked) else 'is'} playing{along}"
    return q, f"No, there {'are' if plural(asked) else 'is'} no {asked}; the instrumentation is {say.instruments()}."


def _genre(say):
    q = ask(say, "genre")
    g = say.genre_music()
    return q, say.maybe(("genre",), [f"It is {g}.", f"This is {g}.", f"I would classify it as {g}."],
                        [f"It sounds like {g}.", f"Probably {g}."])


def _mood(say):
    q = ask(say, "mood")
    mood = say.f["mood"]
    return q, say.maybe(("mood",), [f"It feels {mood}.", f"The mood is {mood}."],
                        [f"It comes across as {mood}.", f"Probably {mood}."])


def _dynamics(say):
    q = say.pick(["How loud is this music?", "What are the dynamics like?"])
    return q, say.statements()["dynamics"]


def _structure(say):
    q = say.pick(["What is the structure of this piece?", "How is this track organised?",
                  "What sections does this music have?"])
    return q, say.maybe(("sections",), [f"It is laid out as {say.sections(times=True)}."],
                        [f"It seems to be laid out as {say.sections(times=True)}."])


def _section_start(say):
    timed = [s for s in say.f["sections"] if isinstance(s.get("start"), (int, float))]
    section = say.pick(timed)
    name, at = str(section["name"]), clock(section["start"])
    first = [s for s in timed if s["name"] == name][0]
    if first is not section or len([s for s in timed if s["name"] == name]) > 1:
        name, at = f"first {name}", clock(first["start"])
    q = f"When does the {name} start?"
    return q, say.maybe(("sections",), [f"The {name} starts at {at}."], [f"The {name} seems to start around {at}."])


FACTUAL = {
    "tempo": (lambda s: s.has("tempo_bpm"), _tempo),
    "key": (lambda s: s.has("key"), _key),
    "mode": (lambda s: s.has("mode"), _mode),
    "metre": (lambda s: s.has("time_signature"), _metre),
    "instruments": (lambda s: s.has("instruments"), _instruments),
    "instrument_check": (lambda s: s.has("instruments") and not s.hedged("instruments"), _instrument_check),
    "genre": (lambda s: s.has("genre"), _genre),
    "mood": (lambda s: s.has("mood"), _mood),
    "dynamics": (lambda s: s.has("dynamics"), _dynamics),
    "structure": (lambda s: s.has("sections"), _structure),
    "section_start": (lambda s: s.has("sections") and len(s.f["sections"]) > 1 and
                      any(isinstance(x.get("start"), (int, float)) for x in s.f["sections"]), _section_start),
}


# ---- stage 2: reasoning Q&A (LLark), every conclusion with the facts it rests on ----

DANCE_GENRES = {"electronic dance", "electronic", "funk", "latin", "disco", "pop", "house", "techno", "salsa",
                "reggaeton", "hip hop"}
LISTENING_GENRES = {"ambient", "classical chamber", "classical", "new age"}
ENERGY_GENRES = {"rock", "metal", "punk", "electronic dance", "electronic", "techno", "drum and bass"}
# purpose -> {cue: (values for, values against)}; tempo cues are BPM ranges [low, high).
PURPOSES = {
    "dance": {"tempo": ((96, 150), (0, 85)), "genre": (DANCE_GENRES, LISTENING_GENRES),
              "mood": ({"energetic", "happy", "playful"}, {"calm", "sad", "dreamy", "dark"}),
              "dynamics": ({"loud"}, {"soft"})},
    "relax": {"tempo": ((0, 96), (126, 999)), "genre": (LISTENING_GENRES, ENERGY_GENRES),
              "mood": ({"calm", "dreamy"}, {"energetic", "tense"}), "dynamics": ({"soft"}, {"loud"})},
    "workout": {"tempo": ((120, 999), (0, 96)), "genre": (ENERGY_GENRES | DANCE_GENRES, LISTENING_GENRES),
                "mood": ({"energetic"}, {"calm", "sad", "dreamy"}), "dynamics": ({"loud"}, {"soft"})},
}
PURPOSE_WORDS = {  # questions, yes, no, undecided
    "dance": (["Would this suit a dance floor?", "Could people dance to this?", "Is this good music for a party?"],
              "Yes, it would suit a dance floor", "Probably not for dancing", "It could work for dancing"),
    "relax": (["Would this work as background music for studying?", "Is this relaxing to listen to?",
               "Would this help someone unwind?"],
              "Yes, it should work well for that", "Probably not as relaxing music", "It might work for that"),
    "workout": (["Would this be good workout music?", "Could this keep me going on a run?"],
                "Yes, it would make good workout music", "Probably not for a workout", "It could work for a workout"),
}
SCENES = {"tense": "a suspense scene", "dark": "a mysterious night-time scene", "happy": "a cheerful montage",
          "sad": "a reflective or farewell scene", "calm": "a quiet, contemplative moment",
          "dreamy": "a dream sequence or a flashback", "energetic": "a chase or a sports montage",
          "playful": "a light-hearted comedy moment"}
# mood -> (mode, tempo bands, dynamics) that usually go with it.
MOOD_CUES = {
    "sad": ("minor", {"slow", "moderate"}, {"soft"}), "dark": ("minor", {"slow", "moderate"}, set()),
    "tense": ("minor", {"fast", "very fast"}, {"loud"}), "calm": (None, {"slow", "moderate"}, {"soft", "moderate"}),
    "dreamy": (None, {"slow", "moderate"}, {"soft"}), "happy": ("major", {"medium-fast", "fast"}, set()),
    "playful": ("major", {"medium-fast", "fast"}, set()),
    "energetic": (None, {"medium-fast", "fast", "very fast"}, {"loud"}),
}


def _clauses(say) -> dict[str, str]:
    """Each reasoning fact as a clause, hedged where it is an estimate."""
    c, seems = {}, lambda field, verb: "seems to be" if say.hedged(field) and verb == "is" else verb
    if say.has("tempo_bpm"):
        c["tempo"] = f"its tempo {seems('tempo_bpm', 'is')} {say.band()} ({say.bpm()})"
    if say.has("genre"):
        c["genre"] = f"it {seems('genre', 'is')} {say.genre_music()}"
    if say.has("mood"):
        c["mood"] = f"its mood {seems('mood', 'is')} {say.f['mood']}"
    if say.has("dynamics") and say.dynamics():
        c["dynamics"] = f"it {seems('dynamics', 'is')} played at {article(say.dynamics())} {say.dynamics()} level"
    if say.has("mode"):
        c["mode"] = f"it {seems('mode', 'is')} in {article(say.f['mode'])} {say.f['mode']} key"
    return c


def _reasons(say, purpose: str) -> tuple[list[str], list[str]]:
    clauses, pro, con = _clauses(say), [], []
    for cue, (good, bad) in PURPOSES[purpose].items():
        if cue not in clauses:
            continue
        if cue == "tempo":
            bpm = say.f["tempo_bpm"]
            is_good, is_bad = good[0] <= bpm < good[1], bad[0] <= bpm < bad[1]
        else:
            value = say.dynamics() if cue == "dynamics" else say.f[cue].lower().replace("-", " ")
            is_good, is_bad = value in good, value in bad
        (pro if is_good else con if is_bad else []).append(clauses[cue])
    return pro, con


def _purpose(purpose: str):
    def make(say):
        questions, yes, no, maybe = PURPOSE_WORDS[purpose]
        pro, con = _reasons(say, purpose)
        if len(pro) > len(con):
            answer = f"{yes}, since {join_list(pro)}." + (f" Then again, {join_list(con)}." if con else "")
        elif len(con) > len(pro):
            answer = f"{no}, since {join_list(con)}." + (f" Still, {join_list(pro)}." if pro else "")
        else:
            answer = f"{maybe}: on one hand {join_list(pro)}; on the other, {join_list(con)}."
        return say.pick(questions), answer
    return (lambda say: any(_reasons(say, purpose))), make


def _mood_cues(say) -> list[str]:
    if not say.has("mood") or say.f["mood"].lower() not in MOOD_CUES:
        return []
    mode, bands, dynamics = MOOD_CUES[say.f["mood"].lower()]
    clauses, cues = _clauses(say), []
    if mode and say.f.get("mode") == mode:
        cues.append(clauses["mode"])
    if say.has("tempo_bpm") and say.band() in bands:
        cues.append(clauses["tempo"])
    if say.has("dynamics") and say.dynamics() in dynamics:
        cues.append(clauses["dynamics"])
    return cues


def _scene(say):
    mood = say.f["mood"].lower()
    q = say.pick(["What kind of film scene would this fit?", "If this were in a movie, what scene would it accompany?"])
    reasons = [_clauses(say)["mood"]] + _mood_cues(say)
    return q, f"{'Probably' if say.hedged('mood') else 'It would suit'} {SCENES[mood]}, since {join_list(reasons)}."


def _why_mood(say):
    mood, cues = say.f["mood"], _mood_cues(say)
    q = say.pick([f"Why does this music feel {mood}?", f"What makes this piece sound {mood}?"])
    summary = "that is" if len(cues) == 1 else "both are" if len(cues) == 2 else "all are"
    answer = join_list(cues)
    return q, f"{answer[0].upper()}{answer[1:]}; {summary} typical of music that feels {mood}."


REASONING = {
    "dance": _purpose("dance"), "relax": _purpose("relax"), "workout": _purpose("workout"),
    "scene": (lambda s: s.has("mood") and s.f["mood"].lower() in SCENES, _scene),
    # A "why" question presupposes the mood, so only a ground-truth mood may be asked about.
    "why_mood": (lambda s: s.has("mood") and not s.hedged("mood") and bool(_mood_cues(s)), _why_mood),
}


# ---- stage 2: open questions (MusicQA), longer answers that combine facts ----

def _open(questions: list[str], fields: list[str], extra=None, needs: str | None = None):
    """A topic answered by the statements about `fields`; asked when `needs` (default: any of them) is known."""
    def make(say):
        statements = say.statements()
        answer = " ".join(statements[f] for f in fields if f in statements)
        return say.pick(questions), answer + (extra(say) if extra else "")
    if needs:
        return (lambda say: say.has(needs)), make
    return (lambda say: bool(set(fields) & set(say.statements()))), make


def _colour(say) -> str:
    if not say.has("mode") or say.hedged("mode"):
        return ""
    return {"major": " Major keys usually sound brighter than minor ones.",
            "minor": " Minor keys usually sound darker than major ones."}.get(say.f["mode"], "")


OPEN = {
    "rhythm": _open(["Tell me about the rhythm of this piece.", "Describe the rhythm and tempo."], ["tempo", "metre"]),
    "harmony": _open(["What can you say about the harmony?", "Describe the tonality of this music."], ["key"], _colour),
    "sound": _open(["Describe the instrumentation and sound.", "What does the ensemble sound like?"],
                   ["instruments", "dynamics"], needs="instruments"),
    "character": _open(["What is the character of this music?", "How would you describe the style and feel?"],
                       ["genre", "mood"]),
    "form": _open(["How does this piece develop over time?", "Walk me through the form of this track."], ["sections"],
                  lambda say: f" That makes {len(say.f['sections'])} sections in all." if len(say.f["sections"]) > 1
                  else ""),
    "overview": (lambda s: len(s.statements()) >= 2,
                 lambda say: (say.pick(["What can you tell me about this music?", "Give me an overview of this track.",
                                        "Describe everything you notice in this piece."]), caption(say))),
}

QA_TOPICS = {"qa_factual": FACTUAL, "qa_reasoning": REASONING, "open_qa": OPEN}
