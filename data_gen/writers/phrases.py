"""Phrasing for the template writer: the facts a clip may state, the words for them, and the
LP-MusicCaps caption tasks (writing, summary, paraphrase, attribute prediction).

The words come from a random generator the caller seeds; this module knows nothing about files,
audio or LLMs.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re

from musicllm.vocabulary import tempo_band
from data_gen.writers.base import clip_facts

PROMPT_VERSION = "template-v2"
AROUND = ["around", "about", "roughly", "approximately"]
NOUNS = ["piece", "track", "tune", "recording"]
SUBJECTS = ["This piece", "This track", "The music", "This recording", "This clip"]
METRE_WORDS = {"2/4": "two beats to the bar", "3/4": "three beats to the bar",
               "4/4": "four beats to the bar", "6/8": "two groups of three eighth notes per bar"}
DYNAMICS_WORDS = {"soft": "soft", "quiet": "soft", "medium": "moderate", "moderate": "moderate", "loud": "loud"}
GENRE_DISPLAY = {"latin": "Latin", "r&b": "R&B", "edm": "EDM"}
# Parenthesised General MIDI qualifiers, turned into prose ("electric bass (finger)" -> "fingered electric bass").
GM_QUALIFIERS = {"finger": "fingered", "pick": "picked", "nylon": "nylon-string", "steel": "steel-string",
                 "jazz": "jazz", "clean": "clean", "muted": "muted", "overdriven": "overdriven"}
# Instruments a yes/no question may ask about when the clip's (ground-truth) list lacks them.
ASKABLE_INSTRUMENTS = ["piano", "acoustic guitar", "electric guitar", "violin", "cello", "flute", "trumpet",
                       "saxophone", "drums", "organ", "harp", "clarinet", "synth pad", "choir"]
# Words that name one sound, whichever way a label spells it: two instruments that share a word
# or a group ("drums" / "drum kit", "strings" / "violin", "alto sax" / "saxophone") may be the
# same thing, so one is never called absent while the other plays.
INSTRUMENT_GROUPS = {
    "strings": {"violin", "viola", "cello", "contrabass", "double", "string", "pizzicato", "fiddle", "orchestra"},
    "brass": {"trumpet", "trombone", "horn", "brass", "tuba", "cornet"},
    "sax": {"sax", "saxophone"}, "drums": {"drum", "kit", "percussion"}, "bass": {"bass", "contrabass"},
    "voice": {"choir", "voice", "vocal", "singer", "aah", "ooh"}, "keys": {"piano", "keyboard", "clavinet"},
    "synth": {"synth", "pad", "lead", "polysynth"}, "flute": {"flute", "recorder", "piccolo", "pipe"},
}
PROMPTS = {
    "caption": ["Describe this music.", "Write a caption for this track.", "What does this piece sound like?",
                "Give a short description of this recording.", "Describe what you hear in a few sentences."],
    "summary": ["Summarize this music in one sentence.", "Give a one-line summary of this track.",
                "In a single sentence, what is this?"],
    "paraphrase": ["Describe this track in your own words.", "How would you describe this music to a friend?",
                   "Tell me about this piece."],
    "attributes": ["List the musical attributes of this clip.", "Tag this music with its attributes.",
                   "What are the main musical properties of this track? Answer as a list."],
}


def instrument_name(name: str) -> str:
    """A General MIDI name in prose: "Electric Bass (finger)" -> "fingered electric bass"."""
    name = str(name).strip().lower()
    match = re.fullmatch(r"(.+?)\s*\((.+)\)", name)
    if match:
        base, qualifier = match.groups()
        name = f"{GM_QUALIFIERS[qualifier]} {base}" if qualifier in GM_QUALIFIERS else base
    return re.sub(r"\s+\d+$", "", name)  # "string ensemble 1" -> "string ensemble"


@functools.lru_cache(maxsize=4096)  # asked about every instrument of every clip, many times over
def instrument_tokens(name: str) -> frozenset[str]:
    """Words (singular) and sound groups of an instrument name, for "may be the same sound" checks."""
    words = {w[:-1] if w.endswith("s") and not w.endswith("ss") and len(w) > 3 else w
             for w in re.findall(r"[a-z]+", instrument_name(name))}
    return frozenset(words | {f"group:{g}" for g, members in INSTRUMENT_GROUPS.items() if words & members})


def may_be_playing(candidate: str, present: list[str]) -> bool:
    tokens = instrument_tokens(candidate)
    return any(tokens & instrument_tokens(p) for p in present)


def plural(name: str) -> bool:
    """"drums", "strings": named as plurals ("bass", "glockenspiel" are not)."""
    return name.endswith("s") and not name.endswith(("ss", "us"))


def join_list(items: list[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def clock(seconds) -> str:
    seconds = int(round(float(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def seeded_rng(*parts) -> random.Random:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def usable_facts(clip: dict) -> dict:
    """`clip_facts`, with values of the wrong shape dropped rather than guessed at."""
    facts = clip_facts(clip)
    out = {"approximate": set(facts.pop("approximate")), "metadata": facts.pop("metadata", {})}
    for field, value in facts.items():
        if field == "tempo_bpm":
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if not 10 <= value <= 400:
                continue
        elif field == "instruments":
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                continue
            value = list(dict.fromkeys(instrument_name(v) for v in value))
        elif field == "sections":
            if not isinstance(value, list) or not all(isinstance(s, dict) and s.get("name") for s in value):
                continue
        elif not isinstance(value, str):
            continue
        out[field] = value
    tags = out["metadata"].get("tags")
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",")]
    if isinstance(tags, list) and [t for t in tags if isinstance(t, str) and t.strip()]:
        out["tags"] = [t.strip() for t in tags if isinstance(t, str) and t.strip()]
    return out


class Phrases:
    """Words for one clip's facts; every choice goes through the seeded `rng`."""

    def __init__(self, facts: dict, rng: random.Random, wordings: dict[str, list[str]] | None = None):
        self.f, self.rng, self.approx = facts, rng, facts["approximate"]
        self.wordings = wordings or {}  # topic -> more wordings of its question (data_gen/wordings.py)

    def has(self, *fields) -> bool:
        return all(field in self.f for field in fields)

    def hedged(self, *fields) -> bool:
        return any(field in self.approx for field in fields)

    def pick(self, options):
        return self.rng.choice(list(options))

    # Values, each already hedged where it is an estimate.
    def bpm(self) -> str:
        n = round(self.f["tempo_bpm"])
        return f"{self.pick(AROUND)} {n} BPM" if self.hedged("tempo_bpm") else f"{n} BPM"

    def band(self) -> str:
        return tempo_band(self.f["tempo_bpm"])

    def key(self) -> str:
        tonic, mode = self.f.get("key"), self.f.get("mode")
        if tonic and mode:
            return f"{tonic} {mode}"
        return f"a key centred on {tonic}" if tonic else f"{article(mode)} {mode} key"

    def instruments(self) -> str:
        return join_list(self.f["instruments"])

    def genre(self) -> str:
        genre = self.f["genre"]
        return GENRE_DISPLAY.get(genre.lower(), genre)

    def genre_music(self) -> str:
        return f"{self.genre()} music"

    def dynamics(self) -> str | None:
        """"soft" / "moderate" / "loud", or None for a free phrase."""
        return DYNAMICS_WORDS.get(self.f["dynamics"].strip().lower())

    def sections(self, times: bool = False) -> str:
        parts = []
        for s in self.f["sections"]:
            if times and isinstance(s.get("start"), (int, float)) and isinstance(s.get("end"), (int, float)):
                parts.append(f"{s['name']} ({clock(s['start'])}–{clock(s['end'])})")
            else:
                parts.append(str(s["name"]))
        if len(parts) == 1:  # "a single verse section (0:00–0:20)"
            name, _, span = parts[0].partition(" (")
            return f"a single {name} section" + (f" ({span}" if span else "")
        return join_list(parts)

    def maybe(self, fields, exact: list[str], hedged: list[str]) -> str:
        return self.pick(hedged if self.hedged(*fields) else exact)

    # Verb phrases that follow a subject ("This track" + "moves at 120 BPM").
    def predicates(self, skip: set[str] = frozenset()) -> dict[str, str]:
        p = {}
        if self.has("tempo_bpm"):
            bpm, band = self.bpm(), self.band()
            p["tempo"] = self.pick([f"moves at {bpm}", f"has {article(band)} {band} tempo of {bpm}",
                                    f"keeps {article(band)} {band} pace ({bpm})"])
        if self.has("key") or self.has("mode"):
            key = self.key()
            p["key"] = self.maybe(("key", "mode"), [f"is in {key}", f"is set in {key}", f"sits in {key}"],
                                  [f"is probably in {key}", f"seems to be in {key}", f"is most likely in {key}"])
        if self.has("time_signature"):
            ts, words = self.f["time_signature"], METRE_WORDS.get(self.f["time_signature"])
            exact = [f"is in {ts} time"] + ([f"is in {ts}, with {words}", f"has {words} ({ts})"] if words else [])
            p["metre"] = self.maybe(("time_signature",), exact, [f"seems to be in {ts} time"])
        if self.has("instruments"):
            inst = self.instruments()
            p["instruments"] = self.maybe(("instruments",),
                                          [f"features {inst}", f"is played on {inst}", f"is performed on {inst}"],
                                          [f"seems to feature {inst}", f"sounds like it is played on {inst}"])
        if self.has("mood"):
            mood = self.f["mood"]
            p["mood"] = self.maybe(("mood",), [f"feels {mood}", f"has {article(mood)} {mood} mood",
                                               f"has {article(mood)} {mood} character"],
                                   [f"comes across as {mood}", f"seems {mood} in mood"])
        if self.has("dynamics"):
            word = self.dynamics()
            exact = [f"has {word} dynamics", f"is {word} in dynamics"] if word else \
                [f"has dynamics best described as {self.f['dynamics']}"]
            p["dynamics"] = self.maybe(("dynamics",), exact, ["seems to have " + exact[0][4:]])
        if self.has("sections"):
            parts = self.sections()
            p["sections"] = self.maybe(("sections",), [f"is laid out as {parts}"] * 2 if len(self.f["sections"]) == 1
                                       else [f"moves through {parts}", f"is laid out as {parts}"],
                                       [f"seems to be laid out as {parts}"])
        if self.has("genre") and self.hedged("genre"):
            p["genre"] = self.pick([f"sounds like {self.genre_music()}", f"is probably {self.genre_music()}"])
        if self.has("tags"):
            tags = join_list([f'"{t}"' for t in self.f["tags"]])
            p["tags"] = self.pick([f"is tagged {tags}", f"carries the tags {tags}"])
        return {k: v for k, v in p.items() if k not in skip}

    def subject(self) -> tuple[str, set[str]]:
        """An opening noun phrase and the facts it already states."""
        if self.has("genre") and not self.hedged("genre"):
            words, used = [self.genre()], {"genre"}
            if self.has("mood") and not self.hedged("mood") and " " not in self.f["mood"] and self.rng.random() < 0.5:
                words.insert(0, self.f["mood"])
                used.add("mood")
            words.append(self.pick(NOUNS))
            return "This " + " ".join(words), used
        return self.pick(SUBJECTS), set()

    # Whole sentences with the attribute as their subject (the paraphrase style).
    def statements(self) -> dict[str, str]:
        s = {}
        if self.has("genre"):
            s["genre"] = self.maybe(("genre",), [f"Stylistically it is {self.genre_music()}.",
                                                 f"In terms of genre, this is {self.genre_music()}."],
                                    [f"Stylistically it sounds like {self.genre_music()}."])
        if self.has("mood"):
            mood = self.f["mood"]
            s["mood"] = self.maybe(("mood",), [f"The mood is {mood}.", f"Overall it feels {mood}."],
                                   [f"The mood comes across as {mood}."])
        if self.has("tempo_bpm"):
            bpm, band = self.bpm(), self.band()
            s["tempo"] = self.pick([f"The tempo is {bpm}, which is {band}.", f"Its pace is {band}, at {bpm}."])
        if self.has("key") or self.has("mode"):
            s["key"] = self.maybe(("key", "mode"), [f"Harmonically it is in {self.key()}."],
                                  [f"Harmonically it is probably in {self.key()}."])
        if self.has("time_signature"):
            ts, words = self.f["time_signature"], METRE_WORDS.get(self.f["time_signature"])
            exact = [f"The time signature is {ts}."] + ([f"There are {words} ({ts})."] if words else [])
            s["metre"] = self.maybe(("time_signature",), exact, [f"The metre appears to be {ts}."])
        if self.has("instruments"):
            inst = self.instruments()
            s["instruments"] = self.maybe(("instruments",),
                                          [f"You can hear {inst}.", f"The instrumentation is {inst}."],
                                          [f"The instruments seem to include {inst}."])
        if self.has("dynamics"):
            word = self.dynamics() or f"best described as {self.f['dynamics']}"
            s["dynamics"] = self.maybe(("dynamics",), [f"The dynamics are {word}."], [f"The dynamics seem {word}."])
        if self.has("sections"):
            s["sections"] = self.maybe(("sections",), [f"Structurally it is laid out as {self.sections(times=True)}."],
                                       [f"Structurally it seems to be laid out as {self.sections(times=True)}."])
        if self.has("tags"):
            s["tags"] = "It is tagged " + join_list([f'"{t}"' for t in self.f["tags"]]) + "."
        return s


def sentences_from(subject: str, predicates: list[str], rng: random.Random) -> str:
    """Subject + one or two predicates, then "It ..." sentences of one or two predicates each."""
    out, first = [], True
    while predicates:
        take = min(len(predicates), rng.choice([1, 2, 2]))
        chunk, predicates = predicates[:take], predicates[take:]
        out.append(f"{subject if first else 'It'} {join_list(chunk)}.")
        first = False
    return " ".join(out)


def rotate(topics: list[str], clip_id: str, task: str, seed: int) -> str:
    """The seed-th topic of a fixed per-clip order: consecutive seeds ask about different topics."""
    order = sorted(topics)
    seeded_rng("order", clip_id, task).shuffle(order)
    return order[seed % len(order)]


# ---- stage 1: captions (LP-MusicCaps' writing, summary, paraphrase and attribute tasks) ----

# The order a description states its facts in, always the same: with the facts shuffled per
# caption, the default model lost track of what it had said and said it again ("is performed on
# marimba ... It is performed on marimba", "moves at 81 BPM. It has moderate tempo of 76 BPM": 3
# of 16 test captions repeated themselves).
FACT_ORDER = ("genre", "mood", "instruments", "tempo", "key", "metre", "dynamics", "sections", "tags")


def in_order(phrases: dict[str, str]) -> list[str]:
    return [phrases[k] for k in FACT_ORDER if k in phrases]


def caption(say: Phrases) -> str:
    subject, used = say.subject()
    predicates = in_order(say.predicates(skip=used))
    if not predicates:
        return bare(subject) if used else ""
    return sentences_from(subject, predicates, say.rng)


def bare(subject: str) -> str:
    """"This jazz piece" -> "This is a jazz piece." (when the subject is all there is to say)."""
    rest = subject.removeprefix("This ")
    return f"This is {article(rest)} {rest}."


def summary(say: Phrases) -> str:
    subject, used = say.subject()
    predicates = say.predicates(skip=used)
    chosen = [predicates[k] for k in ("instruments", "tempo", "mood", "key", "genre", "tags") if k in predicates]
    chosen = chosen[:2] or list(predicates.values())[:1]
    if not chosen:
        return bare(subject) if used else ""
    return f"{subject} {join_list(chosen)}."


def paraphrase(say: Phrases) -> str:
    return " ".join(in_order(say.statements()))


def attributes(say: Phrases) -> str:
    f, rows = say.f, []

    def add(name: str, value: str, *fields: str) -> None:
        rows.append((name, value + (" (estimated)" if say.hedged(*fields) else "")))

    if say.has("genre"):
        add("genre", say.genre(), "genre")
    if say.has("mood"):
        add("mood", f["mood"], "mood")
    if say.has("tempo_bpm"):
        add("tempo", f"{say.bpm()}, {say.band()}", "tempo_bpm")
    if say.has("key") or say.has("mode"):
        add("key", " ".join(f[k] for k in ("key", "mode") if k in f), "key", "mode")
    if say.has("time_signature"):
        add("time signature", f["time_signature"], "time_signature")
    if say.has("instruments"):
        add("instruments", ", ".join(f["instruments"]), "instruments")
    if say.has("dynamics"):
        add("dynamics", f["dynamics"], "dynamics")
    if say.has("sections"):
        add("structure", " – ".join(str(s["name"]) for s in f["sections"]), "sections")
    if say.has("tags"):
        add("tags", ", ".join(f["tags"]))
    if say.rng.random() < 0.5:
        return "\n".join(f"- {name}: {value}" for name, value in rows)
    return "; ".join(f"{name.capitalize()}: {value}" for name, value in rows) + ("." if rows else "")


CAPTIONERS = {"caption": caption, "summary": summary, "paraphrase": paraphrase, "attributes": attributes}
