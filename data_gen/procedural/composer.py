"""Compose a song from a seed: a `pretty_midi.PrettyMIDI` and the exact labels that describe it.

    song = compose(seed=7, seconds=20.0)            # style, key, metre, tempo chosen from the seed
    song = compose(7, style="jazz", variation=2)     # the same song's material, another excerpt

A seed fixes the song's material (`plan`): style, key, mode, metre, tempo, dynamics, the drum kit
and a General MIDI program per role, the chord progression of each section kind, and the
melody's motifs. Consecutive seeds walk through styles, the 24 keys and each style's metres in
shuffled rounds (`seeds.cycle`): seeds 0-23 (24-47, ...) hold all 24 keys once each; the styles
walked are `styles` (default: styles.BAND_STYLES, the ten band styles). `variation`
picks which excerpt of the song a clip is: clips of one family share the material and differ in
where they start (on the first bar of a chord cycle: the song's start, or one cycle before a
section change so that the change is heard) and in length.

Band styles' parts are written here (`_write_parts`), texture styles' in textures.py; either
way the MIDI holds one instrument per part, each on its own channel when written or rendered
(drums on channel index 9); its tempo is the quarter-note tempo (in 6/8, 1.5 x the label, whose
beat is the dotted quarter), and it carries the time and key signatures of the labels. Notes
sounding at the excerpt's end are cut there; nothing starts at or after `seconds`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pretty_midi

from data_gen.procedural import parts, textures
from data_gen.procedural.harmony import allowed_pitch_classes, progression, scale, tonic_index
from data_gen.procedural.mood import mood
from data_gen.procedural.seeds import cycle, rng
from data_gen.procedural.styles import (BAND_STYLES, BASS_CENTERS, CHORD_CENTERS, DEFAULT_RANGE,
                                        DRUM_KIT_NAMES, INSTRUMENT_NAMES, INTRO, MELODY_RANGES, OUTRO,
                                        STYLES, TEXTURE_ROLES, Style, tempo_range)
from musicllm.vocabulary import MODES, PITCH_CLASSES

KEYS = [(tonic, mode) for mode in MODES for tonic in PITCH_CLASSES]
DYNAMIC_VELOCITY = {"soft": 54, "medium": 76, "loud": 100}
SECTION_VELOCITY = {"intro": -10, "verse": 0, "chorus": 12, "bridge": -6, "outro": -6}
ROLES = ("melody", "chords", "pad", "bass")  # label order of band styles: the lead first
MIN_PART_SECONDS = 1.0  # a part sounding less than this in an excerpt is dropped, not labelled


@dataclass(frozen=True)
class Plan:
    """A song's material: everything a seed fixes before any note is written."""
    seed: int
    style: Style
    tonic: str
    mode: str
    metre: str
    tempo: int                      # BPM of the beat (the dotted quarter in 6/8)
    dynamics: str
    kit: int | None                 # GM drum kit, None without drums
    programs: dict[str, int]        # role -> GM program
    progressions: dict[str, tuple[str, ...]]  # section kind -> Roman numerals

    @property
    def bar_seconds(self) -> float:
        beats = {"4/4": 4, "3/4": 3, "6/8": 2}[self.metre]
        return beats * 60.0 / self.tempo

    @property
    def quarter_bpm(self) -> float:
        return self.tempo * 1.5 if self.metre == "6/8" else float(self.tempo)

    @property
    def roles(self) -> tuple[str, ...]:
        """The pitched parts' roles in label order."""
        return ROLES if self.style.texture == "band" else TEXTURE_ROLES[self.style.texture]


@dataclass
class Song:
    midi: pretty_midi.PrettyMIDI
    labels: dict
    seconds: float   # length of the music; a renderer adds its release tail after it
    plan: Plan
    variation: int


def plan(seed: int, style: str | None = None, styles: list[str] | None = None, *,
         key: str | None = None, mode: str | None = None, metre: str | None = None,
         tempo: int | None = None, dynamics: str | None = None) -> Plan:
    """The material of song `seed`; keyword arguments pin a choice instead of drawing it."""
    names = list(styles or BAND_STYLES)
    for name in names + ([style] if style else []):
        if name not in STYLES:
            raise ValueError(f"unknown style {name!r}, expected one of {sorted(STYLES)}")
    chosen = STYLES[style or names[cycle(seed, len(names), "style")]]
    turn = seed // len(names)  # how often this seed's style came round before: cycles its metres
    tonic, key_mode = KEYS[cycle(seed, len(KEYS), "key")]
    tonic, mode = key or tonic, mode or key_mode
    tonic_index(tonic)
    metre = metre or chosen.metres[cycle(turn, len(chosen.metres), "metre:" + chosen.name)]
    if metre not in chosen.metres:
        raise ValueError(f"style {chosen.name} is not written in {metre} (only {chosen.metres})")
    r = rng("plan", seed)
    low, high = tempo_range(chosen, metre)
    stratum = cycle(turn, 6, "tempo:" + chosen.name)  # spread tempi over the range, not by chance
    tempo = tempo or int(round(low + (stratum + r.random()) / 6 * (high - low)))
    dynamics = dynamics or chosen.dynamics[cycle(turn, len(chosen.dynamics), "dyn:" + chosen.name)]
    if chosen.ensembles:  # a texture: one ensemble, then a program per role from its pools
        ensemble = chosen.ensembles[int(r.integers(len(chosen.ensembles)))]
        programs = {role: pool[int(r.integers(len(pool)))] for role, pool in ensemble}
    else:
        programs = {"bass": _pick(chosen.bass, r, ()), "chords": _pick(chosen.chords, r, ())}
        programs["melody"] = _pick(chosen.melody, r, programs.values())
        if chosen.pad and (chosen.character == "airy" or r.random() < 0.7):
            programs["pad"] = _pick(chosen.pad, r, programs.values())
    # drum_chance 1 draws nothing, so the styles that always have drums draw what they always did
    drums = chosen.kits and (chosen.drum_chance >= 1 or r.random() < chosen.drum_chance)
    kit = _pick(chosen.kits, r, ()) if drums else None
    progressions = {kind: options[int(r.integers(len(options)))]
                    for kind, options in chosen.progressions[mode].items()}
    return Plan(seed, chosen, tonic, mode, metre, tempo, dynamics, kit,
                {k: v for k, v in programs.items() if v is not None}, progressions)


def _pick(pool: tuple[int, ...], r, taken) -> int | None:
    free = [p for p in pool if p not in set(taken)]
    return free[int(r.integers(len(free)))] if free else None


def form(p: Plan, min_bars: int = 0) -> list[tuple[str, int]]:
    """(section, bars) of the song: intro, verse, chorus, verse, chorus, bridge, chorus, outro;
    more verse/chorus pairs before the bridge when a long excerpt needs them."""
    phrase = 4 * p.style.bars_per_chord * (2 if p.bar_seconds < 2.6 else 1)
    ends = 4 if p.bar_seconds < 1.7 else 2  # intro and outro: about 4-8 s
    body = [("verse", phrase), ("chorus", phrase)] * 2
    tail = [("bridge", min(phrase, 4 * p.style.bars_per_chord)), ("chorus", phrase), ("outro", ends)]
    sections = [("intro", ends)] + body + tail
    while sum(b for _, b in sections) < min_bars:
        sections[-3:-3] = [("verse", phrase), ("chorus", phrase)]
    return sections


def _song_bars(p: Plan, sections: list[tuple[str, int]]) -> list[parts.Bar]:
    """Every bar of the song with its chord and base velocity."""
    tonic, mode, bpc = p.tonic, p.mode, p.style.bars_per_chord
    key_scale, allowed = scale(tonic, mode), allowed_pitch_classes(tonic, mode)
    leading = (tonic_index(tonic) + 11) % 12
    chords = []
    for kind, bars in sections:
        numerals = {"intro": INTRO[mode][-bars:], "outro": OUTRO[mode][-bars:]}.get(kind, p.progressions.get(kind))
        per_chord = 1 if kind in ("intro", "outro") else bpc
        line = progression(numerals, tonic, mode)
        chords += [line[(b // per_chord) % len(line)] for b in range(bars)]
    out, index = [], 0
    for number, (kind, bars) in enumerate(sections):
        for position in range(bars):
            chord = chords[index]
            melody_scale = key_scale
            if leading in chord.tones:  # over V in minor the melody takes the raised 7th too
                melody_scale = tuple(leading if pc == (leading + 11) % 12 else pc for pc in key_scale)
            assert set(melody_scale) <= allowed
            velocity = DYNAMIC_VELOCITY[p.dynamics] + SECTION_VELOCITY[kind] - (3 * position if kind == "outro" else 0)
            out.append(parts.Bar(index, kind, number, position, bars, chord,
                                 chords[min(index + 1, len(chords) - 1)], velocity, melody_scale))
            index += 1
    return out


def _excerpt_start(sections: list[tuple[str, int]], clip_bars: int, variation: int, seed: int,
                   cycle_bars: int) -> int:
    """First bar of excerpt `variation`: the song's start, a section's start, or one chord cycle
    (`cycle_bars`) before a section change so that the change falls inside the clip. Excerpts
    start where a progression starts, which is where the key is clearest."""
    total = sum(b for _, b in sections)
    boundaries, bar = [], 0
    for _, bars in sections[:-1]:
        bar += bars
        boundaries.append(bar)
    lead = cycle_bars if clip_bars >= cycle_bars + 2 else 0
    candidates = [0] + [max(0, b - lead) for b in boundaries]
    start = candidates[(variation + cycle(seed, len(candidates), "excerpt")) % len(candidates)]
    return max(0, min(start, total - clip_bars))


def compose(seed: int, style: str | None = None, seconds: float = 20.0, *, variation: int = 0,
            styles: list[str] | None = None, **pinned) -> Song:
    """Song `seed`, excerpt `variation`, `seconds` long; `pinned` as in `plan`."""
    if not 0.5 <= seconds <= 3600:
        raise ValueError(f"seconds must be within [0.5, 3600], got {seconds}")
    p = plan(seed, style, styles, **pinned)
    clip_bars = int(-(-seconds // p.bar_seconds))  # bars touched by the excerpt
    sections = form(p, clip_bars)
    bars = _song_bars(p, sections)
    first = _excerpt_start(sections, clip_bars, variation, seed, 4 * p.style.bars_per_chord)
    offset = first * p.bar_seconds
    grid = parts.Grid(p.metre, p.bar_seconds, p.style.swing)
    window = [b for b in bars if first <= b.index < first + clip_bars]
    if p.style.texture == "band":
        hits = _write_parts(p, window, grid, len(bars))
    else:
        hits = textures.write(p, window, grid, len(bars))
    midi = pretty_midi.PrettyMIDI(initial_tempo=p.quarter_bpm)
    numerator, denominator = map(int, p.metre.split("/"))
    midi.time_signature_changes = [pretty_midi.TimeSignature(numerator, denominator, 0.0)]
    midi.key_signature_changes = [pretty_midi.KeySignature(
        tonic_index(p.tonic) + (12 if p.mode == "minor" else 0), 0.0)]
    for role in (*p.roles, "drums"):  # the MIDI's instruments in the labels' order
        if role not in hits:
            continue
        notes = _cut(hits[role], offset, seconds)
        if sum(n.end - n.start for n in notes) < MIN_PART_SECONDS and role != "drums":
            continue
        program = p.kit if role == "drums" else p.programs[role]
        instrument = pretty_midi.Instrument(program, is_drum=role == "drums", name=role)
        instrument.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start, n.end) for n in notes]
        if instrument.notes:
            midi.instruments.append(instrument)
    labels = _labels(p, midi, bars, first, clip_bars, seconds)
    return Song(midi, labels, float(seconds), p, variation)


def _write_parts(p: Plan, window: list[parts.Bar], grid: parts.Grid, song_bars: int) -> dict:
    s, programs = p.style, p.programs
    low, high = MELODY_RANGES.get(programs["melody"], DEFAULT_RANGE)
    comp_center = CHORD_CENTERS.get(programs["chords"], 64)
    hits = {
        "melody": parts.melody(window, grid, low, high, s.melody_density, s.articulation, p.seed,
                               floor=comp_center + 3),
        "chords": parts.comp(window, grid, s.comp_pattern, comp_center, held_in_bridge=p.kit is not None),
        "bass": parts.bass(window, grid, s.bass_pattern, BASS_CENTERS.get(programs["bass"], 40), p.seed),
    }
    if "pad" in programs:
        hits["pad"] = parts.pad(window, grid, 60, everywhere=s.character == "airy")
    if p.kit is not None:
        hits["drums"] = parts.drums(window, grid, s.groove, song_bars)
    return hits


def _cut(notes: list[parts.Hit], offset: float, seconds: float) -> list[parts.Hit]:
    """Notes moved to the excerpt's clock, cut to [0, seconds); slivers under 20 ms dropped."""
    out = []
    for n in notes:
        start, end = max(0.0, n.start - offset), min(seconds, n.end - offset)
        if end - start >= 0.02 and start < seconds:
            out.append(parts.Hit(n.pitch, n.velocity, round(start, 6), round(end, 6)))
    return sorted(out, key=lambda n: (n.start, n.pitch))


def _level(velocity: float) -> str:
    return "soft" if velocity < 66 else "medium" if velocity < 90 else "loud"


def _labels(p: Plan, midi: pretty_midi.PrettyMIDI, bars: list[parts.Bar], first: int,
            clip_bars: int, seconds: float) -> dict:
    present = {i.name: i for i in midi.instruments}
    melodic = [role for role in p.roles if role in present]
    parts_label = [{"role": role, "instrument": INSTRUMENT_NAMES[p.programs[role]],
                    "program": p.programs[role]} for role in melodic]
    if "drums" in present:
        parts_label.append({"role": "drums", "instrument": "drums", "program": p.kit,
                            "kit": DRUM_KIT_NAMES[p.kit]})
    instruments = list(dict.fromkeys(part["instrument"] for part in parts_label))
    sections, chords = [], []
    for bar in bars[first:first + clip_bars]:
        start = round((bar.index - first) * p.bar_seconds, 3)
        end = round(min(seconds, (bar.index - first + 1) * p.bar_seconds), 3)
        if sections and sections[-1]["_index"] == bar.section_index:
            sections[-1]["end"] = end
        else:
            sections.append({"name": bar.section, "start": start, "end": end,
                             "dynamics": _level(bar.velocity), "_index": bar.section_index})
        if chords and chords[-1]["chord"] == bar.chord.name:
            chords[-1]["end"] = end
        else:
            chords.append({"start": start, "end": end, "chord": bar.chord.name, "numeral": bar.chord.numeral})
    for section in sections:
        del section["_index"]
    return {
        "tempo_bpm": p.tempo,
        "beat": "dotted quarter" if p.metre == "6/8" else "quarter",
        "key": p.tonic,
        "mode": p.mode,
        "time_signature": p.metre,
        "instruments": instruments,
        "parts": parts_label,
        "gm_programs": [p.programs[role] for role in melodic],
        "drums": "drums" in present,
        "drum_kit": DRUM_KIT_NAMES[p.kit] if "drums" in present else None,
        "genre": p.style.name,
        "mood": mood(p.mode, p.tempo, p.dynamics, p.style.character),
        "dynamics": p.dynamics,
        "sections": sections,
        "chords": chords,
    }
