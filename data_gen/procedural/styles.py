"""The styles the procedural corpus writes, each with its own groove, harmony and instruments.

A `Style` is a table, not code: tempo range, metres, General MIDI programs per role, a drum
groove, bass and comping patterns (named in `grooves.py`), chord progressions in Roman numerals
per mode and section, and the dynamics it is played at. Every style has progressions for both
modes, so every style can be written in all 24 keys. A style's name is its `genre` label, the
word captions and the attribute heads use, so it reads as "<name> music".

Textures. The ten "band" styles (BAND_STYLES, the corpus default) are a lead over comping, bass,
an optional pad and drums. The other styles (TEXTURE_STYLES) are the textures real uploads have
and the band styles lack; their `texture` names the writer in textures.py, their `ensembles`
the instruments per role (one ensemble drawn per song):

    unaccompanied   one melody instrument alone (flute, violin, voice, ...)      texture "solo"
    chorale         four-part SATB homophony: choir, church organ or brass        "chorale"
    chamber         string quartet: two violins, viola, cello                     "quartet"
    orchestral      woodwind lead, strings, brass, low strings, timpani           "orchestra"
    solo piano      melody and accompaniment in one piano                         "piano"
    choral          a sung lead over a choir, an organ in the chorus              "band" tables
    brass band      trumpet lead, horns or trombones, tuba, march drums           "band" tables

Splits by style: OOD_STYLES (chorale, chamber, unaccompanied) are held out of training and
rendered with a soundfont training never uses (corpus.py --ood); TRAIN_STYLES is everything else.

Instrument names are natural lower-case words ("electric bass", "tenor sax"), one per General
MIDI program; they are what the labels say. Drum kits are General MIDI bank-128 presets on
MIDI channel 10 (index 9), and the labels call them "drums".

This module knows nothing about notes or time; the composer reads these tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from data_gen.procedural import grooves

INSTRUMENT_NAMES = {
    0: "piano", 4: "electric piano", 6: "harpsichord", 7: "clavinet", 8: "celesta",
    9: "glockenspiel", 10: "music box", 11: "vibraphone", 12: "marimba", 16: "organ",
    18: "rock organ", 21: "accordion", 22: "harmonica", 24: "nylon-string guitar",
    25: "acoustic guitar", 26: "jazz guitar", 27: "clean electric guitar", 29: "overdriven guitar",
    30: "distortion guitar", 32: "acoustic bass", 33: "electric bass", 34: "picked bass",
    35: "fretless bass", 36: "slap bass", 38: "synth bass", 39: "analog synth bass", 40: "violin",
    42: "cello", 43: "contrabass", 45: "pizzicato strings", 46: "harp", 48: "strings",
    50: "synth strings", 52: "choir", 53: "voice", 56: "trumpet", 57: "trombone",
    60: "french horn", 61: "brass section", 62: "synth brass", 65: "alto sax", 66: "tenor sax",
    68: "oboe", 70: "bassoon", 71: "clarinet", 73: "flute", 74: "recorder", 75: "pan flute",
    80: "square synth lead", 81: "sawtooth synth lead", 88: "new age pad", 89: "warm pad",
    90: "polysynth pad", 91: "choir pad", 92: "bowed pad", 94: "halo pad", 95: "sweep pad",
    105: "banjo", 110: "fiddle",
    # used by the texture styles only
    19: "church organ", 41: "viola", 47: "timpani", 58: "tuba",
}
DRUM_KIT_NAMES = {0: "standard kit", 8: "room kit", 16: "power kit", 24: "electronic kit",
                  25: "808 kit", 32: "jazz kit", 40: "brush kit"}

# Comfortable melody range (MIDI pitches) of lead instruments; others use DEFAULT_RANGE.
DEFAULT_RANGE = (60, 84)
MELODY_RANGES = {
    9: (72, 96), 10: (67, 93), 8: (65, 91), 12: (57, 84), 22: (60, 84), 29: (52, 79), 30: (52, 79),
    27: (55, 81), 40: (62, 91), 52: (55, 79), 53: (55, 79), 56: (58, 82), 57: (46, 70), 60: (50, 74),
    61: (55, 79), 62: (55, 79), 65: (55, 80), 66: (48, 75), 68: (60, 86), 71: (55, 84), 73: (65, 93),
    74: (67, 91), 75: (62, 88), 110: (62, 90),
    0: (60, 88), 42: (50, 76), 19: (60, 84),  # leads of the texture styles only
}
BASS_CENTERS = {42: 48, 70: 45, 52: 48, 58: 38}  # the rest play around E2 (40)
CHORD_CENTERS = {8: 74, 9: 79, 10: 74, 11: 67, 12: 67, 29: 57, 30: 57}  # the rest around E4 (64)

POP = {
    "major": {
        "verse": (("I", "V", "vi", "IV"), ("I", "IV", "V", "IV"), ("I", "vi", "IV", "V")),
        "chorus": (("I", "IV", "V", "I"), ("I", "V", "IV", "V"), ("IV", "V", "I", "I")),
        "bridge": (("IV", "V", "vi", "V"), ("vi", "iii", "IV", "V"), ("ii", "V", "IV", "V")),
    },
    "minor": {
        "verse": (("i", "VI", "iv", "V"), ("i", "iv", "V", "i"), ("i", "VII", "VI", "V")),
        "chorus": (("VI", "VII", "i", "i"), ("i", "iv", "VII", "i"), ("iv", "V", "i", "i")),
        "bridge": (("III", "VII", "VI", "V"), ("VI", "III", "VII", "V"), ("iv", "VII", "III", "V")),
    },
}
JAZZ = {
    "major": {
        "verse": (("ii7", "V7", "I7", "I7"), ("I7", "vi7", "ii7", "V7"), ("I7", "iii7", "ii7", "V7")),
        "chorus": (("I7", "IV7", "ii7", "V7"), ("ii7", "V7", "I7", "vi7")),
        "bridge": (("IV7", "IV7", "iii7", "vi7"), ("vi7", "ii7", "V7", "V7")),
    },
    "minor": {
        "verse": (("ii7", "V7", "i", "i"), ("i", "iv7", "V7", "i"), ("i", "VI7", "ii7", "V7")),
        "chorus": (("iv7", "VII7", "III7", "VI7"), ("i", "iv7", "V7", "i")),
        "bridge": (("VI7", "VII7", "III7", "III7"), ("iv7", "iv7", "V7", "V7")),
    },
}
CLASSICAL = {
    "major": {
        "verse": (("I", "IV", "V", "I"), ("I", "vi", "ii", "V"), ("I", "ii", "V7", "I")),
        "chorus": (("I", "IV", "V7", "I"), ("vi", "ii", "V7", "I"), ("IV", "I", "V", "I")),
        "bridge": (("vi", "iii", "IV", "V"), ("ii", "vi", "V", "V"), ("IV", "ii", "V", "V")),
    },
    "minor": {
        "verse": (("i", "iv", "V", "i"), ("i", "VI", "iv", "V"), ("i", "ii°", "V", "i")),
        "chorus": (("VI", "iv", "V7", "i"), ("i", "iv", "V7", "i"), ("III", "VI", "iv", "V")),
        "bridge": (("III", "VI", "ii°", "V"), ("VI", "III", "iv", "V")),
    },
}
SIMPLE = {  # folk and ambient: few chords, long on the tonic
    "major": {
        "verse": (("I", "IV", "I", "V"), ("I", "I", "IV", "I"), ("I", "vi", "IV", "I")),
        "chorus": (("IV", "I", "V", "I"), ("I", "V", "IV", "I")),
        "bridge": (("vi", "IV", "I", "V"), ("IV", "IV", "I", "V")),
    },
    "minor": {
        "verse": (("i", "VII", "VI", "V"), ("i", "iv", "i", "V"), ("i", "VI", "i", "VI")),
        "chorus": (("VI", "VII", "i", "i"), ("iv", "VI", "i", "i")),
        "bridge": (("III", "VII", "VI", "V"), ("III", "VI", "VII", "V")),
    },
}
GROOVE_SEVENTHS = {  # funk, hip-hop and latin vamps; the tonic stays a plain triad so the key is clear
    "major": {
        "verse": (("I", "ii7", "I", "ii7"), ("I", "IV7", "I", "IV7"), ("I", "vi7", "ii7", "V7")),
        "chorus": (("IV7", "V7", "I", "I"), ("ii7", "V7", "I", "I")),
        "bridge": (("IV7", "iii7", "ii7", "V7"), ("vi7", "ii7", "IV7", "V7")),
    },
    "minor": {
        "verse": (("i", "iv7", "i", "iv7"), ("i", "i", "VI7", "V7"), ("i", "VI7", "iv7", "V7")),
        "chorus": (("VI7", "VII7", "i", "i"), ("iv7", "V7", "i", "i")),
        "bridge": (("III7", "VI7", "iv7", "V7"), ("VI7", "ii7", "V7", "V7")),
    },
}
# Intro and outro are the same everywhere: they sit on the tonic and cadence into it.
INTRO = {"major": ("I", "I", "IV", "V"), "minor": ("i", "i", "iv", "V")}
OUTRO = {"major": ("IV", "V", "I", "I"), "minor": ("iv", "V", "i", "i")}


@dataclass(frozen=True)
class Style:
    name: str                          # the genre label
    tempo: tuple[int, int]             # BPM of the beat (the dotted quarter in 6/8)
    metres: tuple[str, ...]            # cycled in turn; a metre listed twice comes twice as often
    kits: tuple[int, ...]              # GM drum kits (bank 128); () = no drums
    groove: str | None                 # grooves.DRUMS pattern
    bass: tuple[int, ...]              # GM programs per role
    bass_pattern: str                  # grooves.BASS
    chords: tuple[int, ...]
    comp_pattern: str                  # grooves.COMP
    melody: tuple[int, ...]
    melody_density: str                # grooves.RHYTHMS density of the verse; the chorus is busier
    progressions: dict = field(repr=False)
    pad: tuple[int, ...] = ()          # a sustained layer (the chorus, or throughout when airy)
    swing: float = 0.5                 # where an offbeat eighth falls: 0.5 straight, 2/3 triplet
    dynamics: tuple[str, ...] = ("soft", "medium", "loud")
    character: str = "plain"           # "plain" | "bouncy" | "airy": feeds mood()
    bars_per_chord: int = 1
    articulation: float = 0.9          # melody note length / time to the next note
    texture: str = "band"              # the writer: "band" (composer.py) or one of TEXTURE_ROLES
    ensembles: tuple = ()              # textures: alternatives of ((role, GM programs), ...)
    drum_chance: float = 1.0           # share of songs with drums (when `kits`)


# Roles of each texture, in label order; a texture style's ensembles name exactly these.
TEXTURE_ROLES = {
    "solo": ("melody",),
    "chorale": ("soprano", "alto", "tenor", "bass"),
    "quartet": ("first violin", "second violin", "viola", "cello"),
    "orchestra": ("melody", "strings", "brass", "bass", "timpani"),
    "piano": ("piano",),
}
CHOIR, ORGAN, TIMPANI = 52, 19, 47

STYLES = {s.name: s for s in [
    Style("rock", (90, 180), ("4/4", "4/4", "6/8", "3/4"), (0, 16), "rock", (33, 34), "eighths",
          (29, 30), "strum", (30, 29, 18, 27), "medium", POP, pad=(18, 16), dynamics=("medium", "loud")),
    Style("pop", (80, 130), ("4/4", "4/4", "6/8"), (0, 8), "pop", (33, 35, 38), "root_fifth",
          (0, 25, 4), "pop_piano", (53, 80, 73, 27), "medium", POP, pad=(89, 48, 50)),
    Style("jazz", (70, 200), ("4/4", "4/4", "3/4"), (32, 40), "swing", (32,), "walking",
          (0, 4, 26, 11), "charleston", (65, 66, 56, 57, 71), "busy", JAZZ, swing=2 / 3,
          dynamics=("soft", "medium")),
    Style("classical", (50, 140), ("3/4", "4/4", "6/8"), (), None, (42, 43, 70), "classical",
          (0, 6, 46, 45), "alberti", (40, 73, 68, 71, 60), "medium", CLASSICAL, pad=(48,)),
    Style("electronic", (118, 140), ("4/4",), (24, 25), "four_on_floor", (38, 39), "offbeat",
          (90, 50, 81), "offbeat", (80, 81, 10), "medium", POP, pad=(89, 94, 95, 91),
          dynamics=("medium", "loud")),
    Style("folk", (70, 150), ("3/4", "6/8", "4/4"), (), None, (32,), "root_fifth",
          (25, 24, 105, 21), "fingerpick", (110, 22, 74, 73, 21), "medium", SIMPLE,
          dynamics=("soft", "medium"), articulation=0.8),
    Style("ambient", (50, 80), ("4/4", "3/4", "6/8"), (), None, (35, 42), "sustain",
          (8, 10, 11, 46, 0, 9), "ambient_arp", (75, 52, 73, 11), "sparse", SIMPLE,
          pad=(88, 89, 92, 94, 95, 91), dynamics=("soft",), character="airy", bars_per_chord=2),
    Style("latin", (100, 200), ("4/4", "4/4", "6/8"), (0, 8), "latin", (32, 33), "latin",
          (24, 0, 12), "bossa", (73, 56, 65, 12), "busy", GROOVE_SEVENTHS, pad=(61, 48),
          dynamics=("medium", "loud"), character="bouncy", articulation=0.75),
    Style("funk", (90, 125), ("4/4",), (0, 16), "funk", (36, 33), "funk",
          (27, 7, 4), "chank", (61, 62, 66, 65, 56), "busy", GROOVE_SEVENTHS, pad=(16,),
          dynamics=("medium", "loud"), character="bouncy", articulation=0.6),
    Style("hip-hop", (70, 100), ("4/4",), (25, 0), "hiphop", (38, 33), "hiphop",
          (4, 0, 48, 11), "keys", (73, 11, 45, 80), "medium", GROOVE_SEVENTHS, pad=(89, 48),
          swing=0.58, dynamics=("soft", "medium", "loud")),
    # ---- textures (see the module docstring); the band-style fields they do not use are empty
    Style("unaccompanied", (60, 126), ("4/4", "3/4", "6/8"), (), None, (), "sustain", (), "pad", (),
          "medium", CLASSICAL, dynamics=("soft", "medium"), articulation=0.85, texture="solo",
          ensembles=((("melody", (73, 40, 53, 74, 68, 71, 110, 75, 42, 56)),),)),
    Style("chorale", (52, 92), ("4/4", "4/4", "3/4"), (), None, (), "sustain", (), "pad", (),
          "medium", CLASSICAL, texture="chorale", ensembles=(
              (("soprano", (CHOIR,)), ("alto", (CHOIR,)), ("tenor", (CHOIR,)), ("bass", (CHOIR,))),
              (("soprano", (ORGAN,)), ("alto", (ORGAN,)), ("tenor", (ORGAN,)), ("bass", (ORGAN,))),
              (("soprano", (56,)), ("alto", (56, 60)), ("tenor", (57, 60)), ("bass", (58, 57))))),
    Style("chamber", (56, 150), ("4/4", "3/4", "6/8"), (), None, (), "classical", (), "quartet", (),
          "medium", CLASSICAL, texture="quartet", articulation=0.85, ensembles=(
              (("first violin", (40,)), ("second violin", (40,)), ("viola", (41,)), ("cello", (42,))),)),
    Style("orchestral", (50, 150), ("4/4", "3/4", "6/8"), (), None, (), "classical", (), "quartet", (),
          "medium", CLASSICAL, texture="orchestra", ensembles=(
              (("melody", (73, 68, 71)), ("strings", (48,)), ("brass", (60, 61, 57)),
               ("bass", (42, 43, 70)), ("timpani", (TIMPANI,))),)),
    Style("solo piano", (60, 140), ("4/4", "3/4", "6/8"), (), None, (), "classical", (), "alberti", (),
          "medium", CLASSICAL, dynamics=("soft", "medium"), texture="piano",
          ensembles=((("piano", (0,)),),)),
    Style("choral", (50, 100), ("4/4", "3/4"), (), None, (CHOIR,), "sustain", (CHOIR,), "pad", (53,),
          "sparse", SIMPLE, pad=(ORGAN,), dynamics=("soft", "medium"), articulation=0.95),
    Style("brass band", (84, 126), ("4/4", "6/8", "3/4"), (0,), "march", (58,), "root_fifth",
          (60, 57, 61), "oompah", (56, 60, 57), "medium", CLASSICAL, dynamics=("medium", "loud"),
          drum_chance=0.6),
]}
BAND_STYLES = ("rock", "pop", "jazz", "classical", "electronic", "folk", "ambient", "latin", "funk", "hip-hop")
TEXTURE_STYLES = tuple(name for name in STYLES if name not in BAND_STYLES)
OOD_STYLES = ("chorale", "chamber", "unaccompanied")   # held out of training: corpus.py --ood
TRAIN_STYLES = tuple(name for name in STYLES if name not in OOD_STYLES)
# Names the corpus command accepts for a set of styles (--styles, --exclude-styles).
STYLE_GROUPS = {"band": BAND_STYLES, "textures": TEXTURE_STYLES, "train": TRAIN_STYLES,
                "ood": OOD_STYLES, "all": tuple(STYLES)}


def tempo_range(style: Style, metre: str) -> tuple[int, int]:
    """BPM range of `style` in `metre`. In 6/8 the beat is the dotted quarter (three eighths),
    so its range is capped lower: 112 dotted quarters is 336 eighths a minute, a fast jig."""
    low, high = style.tempo
    if metre == "6/8":
        high = min(high, 112)
        low = min(low, high - 30)
    return low, high


def style_programs(style: Style) -> set[int]:
    """Every General MIDI program `style` may use for a pitched part."""
    ensembles = {p for ensemble in style.ensembles for _, pool in ensemble for p in pool}
    return {*style.bass, *style.chords, *style.melody, *style.pad} | ensembles


def melodic_programs() -> set[int]:
    return {p for s in STYLES.values() for p in style_programs(s)}


def resolve_styles(names) -> list[str]:
    """Style names and STYLE_GROUPS names -> style names, each once, in the order given (the
    order decides which song a seed gets). "solo-piano" and "solo_piano" are read as "solo
    piano", so names need no quotes on a command line."""
    chosen: list[str] = []
    for name in names:
        spelled = name if name in STYLES or name in STYLE_GROUPS else name.replace("_", " ").replace("-", " ")
        if spelled in STYLE_GROUPS:
            chosen += STYLE_GROUPS[spelled]
        elif spelled in STYLES:
            chosen.append(spelled)
        else:
            raise ValueError(f"unknown style {name!r}: expected one of {sorted(STYLES)} "
                             f"or a group: {', '.join(STYLE_GROUPS)}")
    return list(dict.fromkeys(chosen))


def _check_styles() -> None:
    """Each style's tables name patterns and programs that exist, for each of its metres."""
    from data_gen.procedural.harmony import progression

    for s in STYLES.values():
        if (s.texture == "band") != (not s.ensembles):
            raise ValueError(f"style {s.name}: band styles have no ensembles, textures need some")
        for ensemble in s.ensembles:
            if tuple(role for role, _ in ensemble) != TEXTURE_ROLES[s.texture]:
                raise ValueError(f"style {s.name}: an ensemble's roles are not {TEXTURE_ROLES[s.texture]}")
        for metre in s.metres:
            if s.groove is not None and metre not in grooves.DRUMS[s.groove]:
                raise ValueError(f"style {s.name}: drum groove {s.groove!r} has no {metre}")
            for table, name in ((grooves.BASS, s.bass_pattern), (grooves.COMP, s.comp_pattern)):
                if metre not in table[name]:
                    raise ValueError(f"style {s.name}: pattern {name!r} has no {metre}")
        unnamed = {p for p in style_programs(s) if p not in INSTRUMENT_NAMES}
        unnamed |= {k for k in s.kits if k not in DRUM_KIT_NAMES}
        if unnamed:
            raise ValueError(f"style {s.name}: programs without a name: {sorted(unnamed)}")
        for mode, sections in s.progressions.items():
            for alternatives in sections.values():
                for numerals in alternatives:
                    progression(numerals, "C", mode)  # raises on a typo


_check_styles()
