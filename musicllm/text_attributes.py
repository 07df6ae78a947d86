"""Musical attributes read out of short texts: options, captions, questions.

    keys_in("Harmonically it is in F# minor.")        # [("F#", "minor")]
    tempo_bands_in("It moves at 128 BPM")             # {"fast"}
    metres_in("Triple metre (3/4)")                   # {"3/4"}
    instruments_in("piano, fingered bass and drums")  # {"piano", "bass", "drums"}

The same readers serve the MIR baseline (which option names the estimated key?), the
confusion matrices of the report (which key did the chosen option name?), the captioning
attribute score (does the caption state the true tempo band?) and the catalog's check of what a
user reads against a track's stored facts (serve.catalog.grounding). They read words, not meaning:
a tonic must be a capital letter ("a minor key" is a mode, not A minor), a tempo word counts only
next to "tempo"/"pace"/"speed" ("moderate dynamics" is no tempo), and negation is not understood.
Keys are spelled with sharps, as in `musicllm.vocabulary`; flats are converted.

This module knows nothing about files or models.
"""

from __future__ import annotations

import re

from musicllm.vocabulary import MODES, PITCH_CLASSES, TEMPO_BANDS, tempo_band

BAND_NAMES = [name for _, name in TEMPO_BANDS]
FLATS = {"Db": "C#", "Eb": "D#", "Fb": "E", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B"}

_KEY = re.compile(r"(?<![\w#])([A-G])(?:\s*(#|♯|b|♭)|\s*-?\s*(sharp|flat))?\s*((?i:major|minor|maj|min))\b")
_MODE = re.compile(r"\b(major|minor)\b", re.IGNORECASE)
_BPM = re.compile(r"(?:(below|under|above|over)\s+)?(\d{2,3}(?:\.\d+)?)(?:\s*(?:-|–|to|and)\s*(\d{2,3}(?:\.\d+)?))?"
                  r"\s*(?:bpm|beats per minute)", re.IGNORECASE)
_TEMPO_NOUN = r"(?:tempo|pace|paced|speed|beat rate)"
_BAND = "|".join(re.escape(b) for b in sorted(BAND_NAMES, key=len, reverse=True))
_BAND_NEAR_NOUN = re.compile(
    rf"(?<![\w-])({_BAND})(?![\w-])(?:\W+\w+)?\W+{_TEMPO_NOUN}\b"  # "fast tempo", "slow, steady pace"
    rf"|\b{_TEMPO_NOUN}\b(?:\W+\w+){{0,3}}?\W+({_BAND})(?![\w-])",  # "the tempo is fast"
    re.IGNORECASE)
_METRE = re.compile(r"(?<![\d/])(2/4|3/4|4/4|6/8|5/4|7/8|12/8)(?![\d/])")
# A statement that the clip holds no music (data_gen/not_music.py's answers say so in these words):
# "This recording holds no music", "No instruments are playing: the clip is silent", "only noise".
NO_MUSIC = re.compile(r"\bno music\b|\bnot music\b|\bnothing (?:is )?playing\b|\bno instruments? (?:is|are) playing\b"
                      r"|\b(?:is|was) (?:silent|only noise)\b", re.IGNORECASE)
METRE_WORDS = {
    "3/4": ["triple metre", "triple meter", "three beats to the bar", "three beats per bar", "waltz time"],
    "4/4": ["quadruple metre", "quadruple meter", "four beats to the bar", "four beats per bar", "common time"],
    "6/8": ["compound_duple", "two groups of three"],  # see metres_in
    "2/4": ["duple metre", "duple meter", "two beats to the bar"],
}

# canonical instrument -> (words in a label naming it, words in a text mentioning it); the first
# canonical whose label words occur in a label wins, so specific names come before generic ones.
INSTRUMENTS = {
    "steel drums": (["steel drum"], ["steel drum", "steel drums", "steelpan"]),
    "timpani": (["timpani"], ["timpani"]),
    "harpsichord": (["harpsichord"], ["harpsichord"]),
    "piano": (["piano", "rhodes"], ["piano", "pianos", "rhodes"]),
    "organ": (["organ"], ["organ"]),
    "celesta": (["celesta"], ["celesta"]),
    "clavinet": (["clavinet", "clavi"], ["clavinet"]),
    "music box": (["music box"], ["music box"]),
    "accordion": (["accordion", "bandoneon"], ["accordion", "bandoneon"]),
    "harmonica": (["harmonica"], ["harmonica"]),
    "strings": (["string ensemble", "strings", "string section"], ["strings", "string ensemble", "string section"]),
    "bass": (["bass", "contrabass"], ["bass", "bassline", "basses", "double bass", "contrabass"]),
    "guitar": (["guitar"], ["guitar", "guitars"]),
    "banjo": (["banjo"], ["banjo"]),
    "mandolin": (["mandolin"], ["mandolin"]),
    "violin": (["violin", "fiddle"], ["violin", "violins", "fiddle"]),
    "viola": (["viola"], ["viola"]),
    "cello": (["cello"], ["cello", "cellos"]),
    "harp": (["harp"], ["harp"]),
    "trumpet": (["trumpet"], ["trumpet", "trumpets"]),
    "trombone": (["trombone"], ["trombone", "trombones"]),
    "horn": (["horn"], ["horn", "horns", "french horn"]),
    "tuba": (["tuba"], ["tuba"]),
    "brass": (["brass"], ["brass"]),
    "saxophone": (["sax"], ["sax", "saxophone", "saxophones"]),
    "flute": (["flute", "piccolo", "recorder", "pan flute"], ["flute", "flutes", "piccolo", "recorder"]),
    "clarinet": (["clarinet"], ["clarinet"]),
    "oboe": (["oboe"], ["oboe"]),
    "bassoon": (["bassoon"], ["bassoon"]),
    "marimba": (["marimba"], ["marimba"]),
    "vibraphone": (["vibraphone"], ["vibraphone", "vibes"]),
    "xylophone": (["xylophone"], ["xylophone"]),
    "glockenspiel": (["glockenspiel"], ["glockenspiel"]),
    "congas": (["conga"], ["conga", "congas"]),
    "drums": (["drum", "drums", "kit"], ["drums", "drum kit", "drum", "percussion"]),
    "choir": (["choir", "aahs", "oohs", "voice", "vocal"], ["choir", "vocals", "voices", "voice", "singer", "singing"]),
    "synth": (["synth", "pad", "lead", "sawtooth", "square"],
              ["synth", "synths", "synthesizer", "synthesiser", "pad", "pads"]),
}
GENRES = {  # canonical -> words that name it in a text (the procedural corpus's classical textures are classical)
    "rock": ["rock"], "pop": ["pop"], "jazz": ["jazz"],
    "classical": ["classical", "chamber music", "chamber", "orchestral", "symphonic", "choral", "chorale"],
    "electronic": ["electronic", "edm", "techno", "house", "electronica"], "folk": ["folk"], "ambient": ["ambient"],
    "latin": ["latin", "bossa nova", "salsa"], "funk": ["funk", "funky"], "hip hop": ["hip hop", "hip-hop", "rap"],
    "metal": ["metal"], "blues": ["blues"], "country": ["country"], "reggae": ["reggae"], "soul": ["soul"],
    "r&b": ["r&b", "rnb"], "disco": ["disco"], "opera": ["opera"],
}


def mentions(text: str, phrase: str) -> bool:
    """`phrase` occurs in `text` as whole words (both already lower-case)."""
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text) is not None


def sharp_tonic(letter: str, accidental: str | None) -> str:
    """"B" + "flat" -> "A#"; "F" + "#" -> "F#"."""
    if accidental in ("#", "♯", "sharp"):
        name = letter + "#"
        return PITCH_CLASSES[(PITCH_CLASSES.index(letter) + 1) % 12] if name not in PITCH_CLASSES else name
    if accidental in ("b", "♭", "flat"):
        return FLATS.get(letter + "b", PITCH_CLASSES[(PITCH_CLASSES.index(letter) - 1) % 12])
    return letter


def keys_in(text: str) -> list[tuple[str, str]]:
    """(tonic, mode) of every key name in `text`, in order, without repeats."""
    found = []
    for letter, sign, word, mode in _KEY.findall(text):
        tonic = sharp_tonic(letter, sign or word.lower() or None)
        key = (tonic, "major" if mode.lower().startswith("maj") else "minor")
        if key not in found:
            found.append(key)
    return found


def modes_in(text: str) -> set[str]:
    """"major" / "minor" wherever they occur (inside key names too)."""
    return {m.lower() for m in _MODE.findall(text)}


def bpms_in(text: str) -> list[float]:
    """BPM values: "120 BPM" -> 120; a range "66–96 BPM" -> its middle; "below 66 BPM" -> 65;
    "above 156 BPM" -> 157 (one BPM inside the band, so that tempo_band names it)."""
    values = []
    for side, low, high, in _BPM.findall(text):
        value = (float(low) + float(high)) / 2 if high else float(low)
        if side.lower() in ("below", "under"):
            value -= 1
        elif side.lower() in ("above", "over"):
            value += 1
        values.append(value)
    return values


def tempo_bands_in(text: str) -> set[str]:
    """Tempo bands (`musicllm.vocabulary.TEMPO_BANDS` names) stated by a BPM number or by a band
    word next to a tempo noun ("fast tempo", "the pace is slow")."""
    bands = {tempo_band(bpm) for bpm in bpms_in(text) if bpm > 0}
    for before, after in _BAND_NEAR_NOUN.findall(text):
        bands.add((before or after).lower())
    return bands


def metres_in(text: str) -> set[str]:
    found = set(_METRE.findall(text))
    # One token, so that the "duple metre" of 2/4 is not found inside "compound duple metre".
    lowered = re.sub(r"compound\s+duple", "compound_duple", text.lower())
    for metre, phrases in METRE_WORDS.items():
        if any(mentions(lowered, p) for p in phrases):
            found.add(metre)
    return found


def facts_stated(text: str) -> set[str]:
    """Which of a track's facts a text states: "tempo" (a BPM, or a band word by a tempo noun),
    "key", "mode" (inside a key's name too) and "metre" (in numbers or in words). Two sentences
    that state one of them say it twice: "It is in E major and in 4/4. It sits in E major."."""
    found = (("tempo", tempo_bands_in(text)), ("key", keys_in(text)), ("mode", modes_in(text)), ("metre", metres_in(text)))
    return {name for name, values in found if values}


def canonical_instrument(label: str) -> str:
    """A label's instrument ("Electric Bass (finger)", "String Ensemble 1") -> a canonical name
    ("bass", "strings"); unknown names come back normalised ("theremin")."""
    name = re.sub(r"\s+\d+$", "", re.sub(r"\(.*?\)", "", str(label).lower())).strip()
    for canonical, (label_words, _) in INSTRUMENTS.items():
        if any(mentions(name, w) or mentions(name, w + "s") for w in label_words):
            return canonical
    return name


def instruments_in(text: str) -> set[str]:
    """Canonical instruments a text mentions."""
    lowered = text.lower()
    return {c for c, (_, words) in INSTRUMENTS.items() if any(mentions(lowered, w) for w in words)}


def canonical_genre(label: str) -> str:
    name = str(label).lower().replace("-", " ").strip()
    for canonical, words in GENRES.items():
        if name == canonical or name in words or any(mentions(name, w) for w in words):
            return canonical
    return name


def genres_in(text: str) -> set[str]:
    lowered = text.lower()
    return {c for c, words in GENRES.items() if any(mentions(lowered, w) for w in words)}


def says_no_music(text: str) -> bool:
    """Whether a text says the clip holds no music ("the clip is silent", "not music")."""
    return NO_MUSIC.search(text) is not None


def asked_attribute(question: str) -> str | None:
    """What a question asks about, from its words: "key", "mode", "tempo", "metre" or None."""
    q = question.lower()
    if re.search(r"time signature|metre|meter\b|beats (?:are )?grouped|beats .*\bbar\b|\bbar\b", q):
        return "metre"
    if re.search(r"\bkey\b|tonal cent", q):
        return "key"
    if re.search(r"tonality|\bscale\b|major or (?:a )?minor|\bmode\b", q):
        return "mode"
    if re.search(r"tempo|\bpace\b|\bspeed\b|\bbpm\b|beat rate|how fast|fast or slow", q):
        return "tempo"
    return None


def option_value(kind: str, text: str, bare: bool = True):
    """The value of attribute `kind` an option states, or None: "key" -> "A minor",
    "tempo" -> a band name, "metre" -> "3/4", "mode" -> "major"/"minor". `bare`: an option that
    is only a band word ("Fast", "Moderate") names a tempo; right when the question is about
    tempo, wrong under a question on dynamics ("Moderate")."""
    if kind == "key":
        keys = keys_in(text)
        return f"{keys[0][0]} {keys[0][1]}" if len(keys) == 1 else None
    if kind == "tempo":
        bands = tempo_bands_in(text)
        if not bands and bare:
            bare = text.strip().lower().rstrip(".")
            bands = {bare} if bare in BAND_NAMES else set()
        return bands.pop() if len(bands) == 1 else None
    if kind == "metre":
        metres = metres_in(text)
        return metres.pop() if len(metres) == 1 else None
    if kind == "mode":
        modes = modes_in(text)
        return modes.pop() if len(modes) == 1 and modes <= set(MODES) else None
    raise ValueError(f"unknown attribute {kind!r}")


def question_type(question: str, options: list[str], answer_index: int) -> str | None:
    """"key", "tempo", "metre" or "mode" when the correct option and at least one other option
    state a value of that attribute (so the question is about it), else what the question's words
    say, else None."""
    asked = asked_attribute(question)
    for kind in ("key", "tempo", "metre", "mode"):
        values = [option_value(kind, o, bare=asked == kind) for o in options]
        if values[answer_index] is not None and sum(v is not None for v in values) >= 2:
            return kind
    return asked
