"""The parts of a song, bar by bar: drums, bass, comping, melody and pad, as plain note tuples.

Each writer reads the same list of `Bar`s (section, chord, base velocity) and a `Grid` (metre,
bar length, swing) and returns `Hit`s in seconds from the song's start. Sections change what a
part plays so a listener hears them: the intro is thin (cymbals, bass only in its second half,
no melody), the chorus is louder with a crash, brighter cymbals, a busier and higher melody and
the pad, the bridge turns the drums half-time and the comping into held chords, the outro
thins out and ends on a held tonic chord. A fill on the last beat announces each new section.

Every pitched note is a chord tone or a tone of the key's scale (see harmony.py), so the key is
exact. The writers know nothing about MIDI files, instruments' names or rendering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from data_gen.procedural import grooves as g
from data_gen.procedural.harmony import Chord, nearest_pitch, voicing
from data_gen.procedural.seeds import rng

# Velocity offsets of each part against the bar's base velocity (the melody leads, the pad sits under).
PART_VELOCITY = {"drums": 0, "bass": -4, "chords": -10, "melody": 8, "pad": -20}
# Drum notes are short (the kit's samples ring out by themselves); cymbals are held a little.
DRUM_SECONDS = {g.CRASH: 1.0, g.RIDE: 0.4, g.RIDE_BELL: 0.4, g.OPEN_HAT: 0.25}


class Hit(NamedTuple):
    pitch: int
    velocity: int
    start: float  # seconds from the song's start
    end: float


@dataclass(frozen=True)
class Bar:
    index: int           # bar number in the song
    section: str         # "intro" | "verse" | "chorus" | "bridge" | "outro"
    section_index: int   # position of the section in the form
    position: int        # bar number inside the section
    length: int          # bars in the section
    chord: Chord
    next_chord: Chord
    velocity: int        # the bar's base velocity (song dynamics + section)
    scale: tuple[int, ...]  # pitch classes the melody may use over this bar's chord

    @property
    def last(self) -> bool:
        return self.position == self.length - 1


@dataclass(frozen=True)
class Grid:
    metre: str
    bar_seconds: float
    swing: float = 0.5  # where an offbeat eighth falls inside its beat

    @property
    def steps(self) -> int:
        return g.STEPS[self.metre]

    @property
    def beat_steps(self) -> int:
        return 6 if self.metre == "6/8" else 4

    def time(self, bar: int, step: float) -> float:
        """Seconds of `step` (sixteenths, may run past the bar) of bar `bar`, swing applied."""
        bar, step = bar + int(step // self.steps), step % self.steps
        if self.metre != "6/8" and self.swing != 0.5:
            beat, frac = divmod(step / 4, 1.0)
            # Piecewise-linear: the beat's first half stretches to `swing`, the second shrinks.
            frac = frac * 2 * self.swing if frac <= 0.5 else self.swing + (frac - 0.5) * 2 * (1 - self.swing)
            step = (beat + frac) * 4
        return (bar + step / self.steps) * self.bar_seconds


def clamp_velocity(value: float) -> int:
    return int(min(124, max(24, round(value))))


def _metric(step: int, metre: str) -> float:
    return 0.6 + 0.4 * g.metric_weight(step, metre)


def _gaps(grid: str) -> list[tuple[int, str, int, int]]:
    """(step, symbol, held length, steps to the next onset or the bar's end)."""
    events = g.onsets(grid)
    starts = [e[0] for e in events] + [len(grid)]
    return [(s, sym, length, starts[i + 1] - s) for i, (s, sym, length) in enumerate(events)]


# ----------------------------------------------------------------------------- drums
def drum_pattern(groove: str, metre: str, bar: Bar, song_bars: int) -> dict[int, str]:
    steps, beat = g.STEPS[metre], (6 if metre == "6/8" else 4)
    pattern = dict(g.DRUMS[groove][metre])
    rest = "." * (steps - 1)
    if bar.index == song_bars - 1 and bar.section == "outro":
        return {g.CRASH: "X" + rest, g.KICK: "X" + rest}  # the ending hit
    if bar.section == "intro":
        pattern = {k: v for k, v in pattern.items() if k in g.CYMBALS}
        pattern[g.KICK] = "X" + rest
    elif bar.section == "bridge":  # half-time: one kick a bar, hats move to the ride
        if g.KICK in pattern:
            pattern[g.KICK] = "X" + rest
        if g.HAT in pattern and g.RIDE not in pattern:
            pattern[g.RIDE] = pattern.pop(g.HAT)
    elif bar.section == "chorus" and groove in ("rock", "pop", "hiphop") and g.HAT in pattern:
        pattern[g.RIDE] = pattern.pop(g.HAT)
    elif bar.section == "chorus" and groove == "four_on_floor":
        pattern[g.HAT] = "o.x." * (steps // 4)
    if bar.position == 0 and bar.section_index > 0 and bar.section != "outro":
        pattern[g.CRASH] = "X" + rest
    if bar.last and bar.index < song_bars - 1:  # a fill on the last beat into the next section
        start = steps - beat
        pattern = {k: v[:start] + "." * beat if k not in g.CYMBALS else v for k, v in pattern.items()}
        fill = [(0, g.SNARE, "o"), (2, g.SNARE, "x")] if groove == "swing" else (
            [(0, g.SNARE, "x"), (2, g.HIGH_TOM, "x"), (4, g.LOW_TOM, "X")] if beat == 6 else
            [(0, g.SNARE, "o"), (1, g.SNARE, "x"), (2, g.HIGH_TOM, "x"), (3, g.LOW_TOM, "X")])
        for offset, drum, symbol in fill:
            line = list(pattern.get(drum, "." * steps))
            line[start + offset] = symbol
            pattern[drum] = "".join(line)
    return pattern


def drums(bars: list[Bar], grid: Grid, groove: str, song_bars: int) -> list[Hit]:
    hits = []
    for bar in bars:
        for drum, line in drum_pattern(groove, grid.metre, bar, song_bars).items():
            for step, symbol, _ in g.onsets(line):
                velocity = (bar.velocity + PART_VELOCITY["drums"]) * (0.45 + 0.55 * g.STRENGTH[symbol])
                start = grid.time(bar.index, step)
                hits.append(Hit(drum, clamp_velocity(velocity), start, start + DRUM_SECONDS.get(drum, 0.1)))
    return hits


# ----------------------------------------------------------------------------- bass
def bass(bars: list[Bar], grid: Grid, pattern: str, center: int, seed: int) -> list[Hit]:
    hits, previous = [], center
    for bar in bars:
        if bar.section == "intro" and bar.position < bar.length // 2:
            continue  # the bass enters halfway through the intro
        line = g.BASS[pattern][grid.metre]
        if bar.section == "outro" and bar.last:
            line = "R" + "-" * (grid.steps - 1)
        walk = _walking_line(bar, center, previous, grid, seed) if "W" in line else []
        for step, symbol, length, gap in _gaps(line):
            root = nearest_pitch(bar.chord.root, center)
            third = root + (bar.chord.tones[1] - bar.chord.root) % 12
            fifth = root + (bar.chord.tones[2] - bar.chord.root) % 12  # diminished in ii° and vii°
            pitch = {"R": root, "5": fifth, "8": root + 12, "3": third}.get(symbol)
            if symbol == "W":
                pitch = walk[step // grid.beat_steps]
            short = pattern in ("funk", "eighths", "offbeat")  # driving patterns are played short
            held = length if length > 1 else min(gap, 2 if short else gap)
            start, end = grid.time(bar.index, step), grid.time(bar.index, step + held * 0.92)
            velocity = (bar.velocity + PART_VELOCITY["bass"]) * _metric(step, grid.metre)
            hits.append(Hit(pitch, clamp_velocity(velocity), start, end))
            previous = pitch
    return hits


def _walking_line(bar: Bar, center: int, previous: int, grid: Grid, seed: int) -> list[int]:
    """One note a beat: the root, chord tones, then a scale neighbour of the next bar's root."""
    r = rng("walk", seed, bar.index)
    beats = grid.steps // grid.beat_steps
    root = nearest_pitch(bar.chord.root, previous if abs(previous - center) < 8 else center)
    line = [root]
    tones = list(bar.chord.tones[1:])
    for _ in range(beats - 2):
        pc = tones[int(r.integers(len(tones)))]
        line.append(nearest_pitch(pc, line[-1] + 2))
    target = nearest_pitch(bar.next_chord.root, line[-1])
    neighbours = [p for p in range(target - 2, target + 3) if p != target and p % 12 in bar.scale]
    line.append(neighbours[int(r.integers(len(neighbours)))] if neighbours else target)
    return line


# ----------------------------------------------------------------------------- comping
def comp(bars: list[Bar], grid: Grid, pattern: str, center: int, held_in_bridge: bool) -> list[Hit]:
    hits, voices = [], None
    articulation = g.COMP_ARTICULATION.get(pattern, 0.9)
    for bar in bars:
        line, art = g.COMP[pattern][grid.metre], articulation
        if (bar.section == "bridge" and held_in_bridge) or (bar.section == "outro" and bar.last):
            line, art = "X" + "-" * (grid.steps - 1), 0.95
        voices = voicing(bar.chord.tones, center, voices)
        for step, symbol, length, gap in _gaps(line):
            if symbol in g.STRENGTH:
                pitches = voices
                factor = 0.7 + 0.3 * g.STRENGTH[symbol]
                held = (length if length > 1 else gap) * art
            else:  # one voice of an arpeggio, ringing until the next one
                index = int(symbol)
                pitches = [voices[index % len(voices)] + 12 * (index // len(voices))]
                factor, held = _metric(step, grid.metre), gap * 0.98
            start, end = grid.time(bar.index, step), grid.time(bar.index, step + held)
            velocity = clamp_velocity((bar.velocity + PART_VELOCITY["chords"]) * factor)
            hits.extend(Hit(p, velocity, start, end) for p in pitches)
    return hits


# ----------------------------------------------------------------------------- pad
def pad(bars: list[Bar], grid: Grid, center: int, everywhere: bool) -> list[Hit]:
    """Held chords, one note per voice for as long as the chord lasts: in the chorus and the
    bridge, or everywhere but the intro's first half for airy styles."""
    hits, voices, held = [], None, []
    for bar in bars:
        active = bar.section in ("chorus", "bridge") or (
            everywhere and not (bar.section == "intro" and bar.position < bar.length // 2))
        start, end = grid.time(bar.index, 0), grid.time(bar.index + 1, 0)
        if not active:
            voices = None
            continue
        same = held and voices is not None and held[-1][0] == bar.chord and held[-1][2] == start
        if same:
            held[-1][2] = end
            continue
        voices = voicing(bar.chord.tones, center, voices)
        held.append([bar.chord, voices, end, start, bar.velocity])
    for _, pitches, end, start, velocity in held:
        v = clamp_velocity(velocity + PART_VELOCITY["pad"])
        hits.extend(Hit(p, v, start, end - 0.02) for p in pitches)
    return hits


# ----------------------------------------------------------------------------- melody
BUSIER = {"sparse": "medium", "medium": "busy", "busy": "busy"}


def melody(bars: list[Bar], grid: Grid, low: int, high: int, density: str,
           articulation: float, seed: int, floor: int = 0, intro: bool = False) -> list[Hit]:
    """Phrases built from a two-bar motif per section kind (every chorus sings the same tune):
    strong beats take chord tones, the notes between move by scale steps along the motif's
    contour, and each four-bar phrase ends on a long chord tone, the song on the tonic.
    The tune centres above `floor` (the comping's register) where the instrument allows.
    It rests through the intro unless `intro` (a melody alone has no one else to play it),
    where the intro sings the verse's tune."""
    hits, previous = [], None
    for bar in bars:
        if bar.section == "intro" and not intro:
            continue
        kind = "verse" if bar.section == "intro" else bar.section
        dens = BUSIER[density] if kind == "chorus" else density
        place = {"verse": 0.35, "chorus": 0.65, "bridge": 0.5, "outro": 0.4}[kind]
        center = min(high - 3, max(low + place * (high - low), floor + 8 * place))
        if previous is None or bar.position == 0:
            previous = nearest_pitch(bar.chord.tones[0], center)
        motif = rng("motif", seed, kind)
        rhythms = g.RHYTHMS[grid.metre][dens]
        pair = [rhythms[int(motif.integers(len(rhythms)))] for _ in range(2)]
        contour = [1 if motif.random() < 0.5 else -1 for _ in range(4)]
        phrase_end = bar.position % 4 == 3 or bar.last
        if bar.last:
            rhythm = [grid.steps]
        elif phrase_end:
            rhythm = [grid.steps - grid.beat_steps, -grid.beat_steps]
        else:
            rhythm = pair[bar.position % 2]
        # The same motif position draws the same choices, so repeated sections repeat the tune.
        r = rng("notes", seed, kind, bar.position % 4, bar.chord.name)
        step = 0
        for length in rhythm:
            if length < 0:
                step -= length
                continue
            strong = g.metric_weight(step, grid.metre) >= 0.75
            if phrase_end and step == 0:
                target = bar.chord.root if bar.last else bar.chord.tones[int(r.integers(2)) * 2]
                pitch = nearest_pitch(target, previous)
            elif strong:
                pitch = _chord_tone(bar.chord, previous + 2 * contour[bar.position % 4], r)
            else:
                pitch = _scale_step(previous, contour[bar.position % 4], bar.scale, r)
            if not low <= pitch <= high or abs(pitch - center) > 9:  # fold back toward the middle
                pitch = nearest_pitch(pitch % 12, center)
            held = length * (0.97 if phrase_end else articulation)
            start, end = grid.time(bar.index, step), grid.time(bar.index, step + held)
            accent = 0.75 + 0.25 * g.metric_weight(step, grid.metre)
            velocity = (bar.velocity + PART_VELOCITY["melody"]) * accent + r.integers(-3, 4)
            hits.append(Hit(pitch, clamp_velocity(velocity), start, end))
            previous, step = pitch, step + length
    return hits


def _chord_tone(chord: Chord, near: float, r) -> int:
    options = sorted((nearest_pitch(pc, near) for pc in chord.tones), key=lambda p: abs(p - near))
    return options[0] if r.random() < 0.7 else options[1]


def _scale_step(pitch: int, direction: int, scale: tuple[int, ...], r) -> int:
    move = direction * (1 if r.random() < 0.75 else 2) if r.random() < 0.9 else 0
    candidates = sorted(p for p in range(pitch - 5, pitch + 6) if p % 12 in scale)
    here = min(range(len(candidates)), key=lambda i: abs(candidates[i] - pitch))
    return candidates[max(0, min(len(candidates) - 1, here + move))]
