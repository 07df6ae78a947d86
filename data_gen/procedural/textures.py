"""The texture styles' parts, written from the same bars and grid as the band styles' parts.

    hits = write(plan, window, grid, song_bars)   # role -> [Hit], the roles of styles.TEXTURE_ROLES

    solo       the melody alone, from the first bar (nobody else plays an intro)
    chorale    four voices in one rhythm (homophony): a voicing of the bar's chord on every beat
               or two, the bass on the root at each bar's start, held chords at phrase ends
    quartet    first violin: the melody; second violin and viola: the top and bottom voices of
               repeated-eighth chords; cello: the bass line
    orchestra  woodwind melody, strings comping, brass holding the chords throughout, cellos,
               basses or bassoon on the bass, timpani on the tonic or dominant with a roll
               into each new section
    piano      melody, accompaniment and bass written as for a band, played by one piano

Every pitch is a chord tone or a scale tone of its bar, as in parts.py, so the key labels hold.
This module knows nothing about MIDI files, instruments' names or rendering.
"""

from __future__ import annotations

from itertools import product

from data_gen.procedural import parts
from data_gen.procedural.harmony import Chord, nearest_pitch, tonic_index
from data_gen.procedural.parts import Bar, Grid, Hit, clamp_velocity
from data_gen.procedural.seeds import rng
from data_gen.procedural.styles import BASS_CENTERS, DEFAULT_RANGE, MELODY_RANGES

VOICE_RANGES = {"soprano": (60, 79), "alto": (55, 74), "tenor": (48, 67), "bass": (40, 55)}
VOICE_VELOCITY = {"soprano": 4, "alto": -4, "tenor": -4, "bass": 0}
# Chorale rhythms: the lengths (sixteenths) of a bar's chords; a phrase's last bar is one chord.
CHORALE_RHYTHMS = {"4/4": [[4, 4, 4, 4], [4, 4, 4, 4], [8, 4, 4], [4, 4, 8]],
                   "3/4": [[4, 4, 4], [4, 4, 4], [8, 4]], "6/8": [[6, 6], [6, 4, 2]]}
TIMPANI_CENTER = 47  # the drums' middle (B2): tuned to the tonic and dominant nearest it


def write(p, window: list[Bar], grid: Grid, song_bars: int) -> dict[str, list[Hit]]:
    """The parts of plan `p` (a composer.Plan of a texture style) over the bars of `window`."""
    s, programs = p.style, p.programs
    if s.texture == "solo":
        low, high = MELODY_RANGES.get(programs["melody"], DEFAULT_RANGE)
        return {"melody": parts.melody(window, grid, low, high, s.melody_density, s.articulation, p.seed,
                                       intro=True)}
    if s.texture == "chorale":
        return chorale(window, grid, p.seed)
    if s.texture == "quartet":
        inner = parts.comp(window, grid, s.comp_pattern, 62, held_in_bridge=True)
        second, viola = split_voices(inner)
        return {"first violin": parts.melody(window, grid, *MELODY_RANGES[40], s.melody_density,
                                             s.articulation, p.seed, floor=65),
                "second violin": second, "viola": viola,
                "cello": parts.bass(window, grid, s.bass_pattern, 48, p.seed)}
    if s.texture == "orchestra":
        low, high = MELODY_RANGES.get(programs["melody"], DEFAULT_RANGE)
        return {"melody": parts.melody(window, grid, low, high, s.melody_density, s.articulation, p.seed,
                                       floor=67),
                "strings": parts.comp(window, grid, s.comp_pattern, 62, held_in_bridge=True),
                "brass": parts.pad(window, grid, 57, everywhere=True),
                "bass": parts.bass(window, grid, s.bass_pattern, BASS_CENTERS.get(programs["bass"], 40), p.seed),
                "timpani": timpani(window, grid, tonic_index(p.tonic), song_bars)}
    if s.texture == "piano":
        right = parts.melody(window, grid, *MELODY_RANGES[0], s.melody_density, s.articulation, p.seed, floor=62)
        left = parts.comp(window, grid, s.comp_pattern, 55, held_in_bridge=False)
        low = parts.bass(window, grid, s.bass_pattern, 40, p.seed)
        return {"piano": merge_hands(right, left, low)}
    raise ValueError(f"style {s.name}: no writer for texture {s.texture!r}")


# ----------------------------------------------------------------------------- chorale
def chorale(bars: list[Bar], grid: Grid, seed: int) -> dict[str, list[Hit]]:
    """Soprano, alto, tenor and bass in one rhythm. Repeated sections repeat (the choices are
    drawn per section kind, phrase position and chord, like the melody's)."""
    voices: dict[str, list[Hit]] = {name: [] for name in VOICE_RANGES}
    previous = None
    for bar in bars:
        r = rng("chorale", seed, bar.section, bar.position % 4, bar.chord.name)
        rhythms = CHORALE_RHYTHMS[grid.metre]
        phrase_end = bar.position % 4 == 3 or bar.last
        rhythm = [grid.steps] if phrase_end else rhythms[int(r.integers(len(rhythms)))]
        step = 0
        for number, length in enumerate(rhythm):
            # The bar's first chord and every cadence stand on the root; chords inside may invert.
            previous = satb(bar.chord, previous, r, root=number == 0 or phrase_end, final=bar.last)
            held = length * (0.97 if phrase_end else 0.93)
            start, end = grid.time(bar.index, step), grid.time(bar.index, step + held)
            accent = 0.8 + 0.2 * parts.g.metric_weight(step, grid.metre)
            for name, pitch in zip(VOICE_RANGES, previous):
                velocity = clamp_velocity((bar.velocity + VOICE_VELOCITY[name]) * accent)
                voices[name].append(Hit(pitch, velocity, start, end))
            step += length
    return voices


def satb(chord: Chord, previous: tuple[int, ...] | None, r, root: bool, final: bool = False) -> tuple[int, ...]:
    """(soprano, alto, tenor, bass) pitches of `chord`, each near its last pitch: the bass on the
    root (or, inside a bar, sometimes the third or fifth), the soprano moving by small steps
    (on the root at the song's end), and the inner voices the pair that sounds the chord's
    missing tones with the least motion, each within an octave of the voice above."""
    s0, a0, t0, b0 = previous or (67, 62, 55, 48)
    tones = chord.tones
    bass_pc = chord.root if root or r.random() < 0.5 else tones[1 + int(r.integers(2))]
    bass = _in_range(bass_pc, b0, VOICE_RANGES["bass"])
    options = [pc for pc in tones if not final or pc == chord.root]
    tops = sorted(_pitches(options, VOICE_RANGES["soprano"]), key=lambda p: (p == s0, abs(p - s0)))
    if len(tops) > 1 and r.random() >= 0.65:
        tops[0], tops[1] = tops[1], tops[0]
    needed = {chord.root, tones[1]} | ({tones[3]} if len(tones) > 3 else set())
    for soprano in tops:  # the preferred soprano, unless it leaves no room for two voices under it
        best, best_cost = None, None
        for alto, tenor in product(_pitches(tones, VOICE_RANGES["alto"]), _pitches(tones, VOICE_RANGES["tenor"])):
            if not (soprano - 12 <= alto < soprano and alto - 12 <= tenor < alto and tenor > bass):
                continue
            pcs = [x % 12 for x in (soprano, alto, tenor, bass)]
            cost = abs(alto - a0) + abs(tenor - t0) + 8 * len(needed - set(pcs))
            cost += 3 * (pcs.count(tones[1]) > 1)  # a doubled third
            cost += 2 * (len(tones) == 3 and tones[2] not in pcs)  # a triad without its fifth
            if best_cost is None or cost < best_cost:
                best, best_cost = (alto, tenor), cost
        if best is not None:
            return soprano, best[0], best[1], bass
    raise ValueError(f"no four-part voicing of {chord.name} over a bass at {bass}")


def _pitches(tones, span: tuple[int, int]) -> list[int]:
    return [p for p in range(span[0], span[1] + 1) if p % 12 in tones]


def _in_range(pc: int, near: int, span: tuple[int, int]) -> int:
    pitch = nearest_pitch(pc, near)
    while pitch < span[0]:
        pitch += 12
    while pitch > span[1]:
        pitch -= 12
    return pitch


# ----------------------------------------------------------------------------- timpani
def timpani(bars: list[Bar], grid: Grid, tonic: int, song_bars: int) -> list[Hit]:
    """Two drums tuned to the tonic and the dominant: a stroke on each bar's downbeat (and the
    half bar in the chorus), on whichever of the two the chord holds (its root otherwise), a
    crescendo roll on the last beat before a new section, the final bar one long stroke."""
    dominant, hits = (tonic + 7) % 12, []
    for bar in bars:
        tones = bar.chord.tones
        pc = tonic if tonic in tones else dominant if dominant in tones else bar.chord.root
        pitch = nearest_pitch(pc, TIMPANI_CENTER)
        half = grid.steps // 2 if grid.metre != "3/4" else None
        strokes = [0] + ([half] if half and bar.section == "chorus" else [])
        roll = bar.last and bar.index < song_bars - 1
        end_step = grid.steps - grid.beat_steps if roll else grid.steps
        strokes = [s for s in strokes if s < end_step]
        for number, step in enumerate(strokes):
            until = strokes[number + 1] if number + 1 < len(strokes) else end_step
            velocity = clamp_velocity((bar.velocity + 18) * (1.0 if step == 0 else 0.85))
            hits.append(Hit(pitch, velocity, grid.time(bar.index, step), grid.time(bar.index, until - 0.1)))
        if roll:
            for k, step in enumerate(range(end_step, grid.steps)):
                velocity = clamp_velocity((bar.velocity + 18) * (0.55 + 0.45 * k / grid.beat_steps))
                hits.append(Hit(pitch, velocity, grid.time(bar.index, step), grid.time(bar.index, step + 0.9)))
    return hits


# ----------------------------------------------------------------------------- voices of one part
def split_voices(hits: list[Hit]) -> tuple[list[Hit], list[Hit]]:
    """Block chords -> (top voice, bottom voice): two players share the chords, each one line."""
    chords: dict[float, list[Hit]] = {}
    for hit in hits:
        chords.setdefault(hit.start, []).append(hit)
    top, bottom = [], []
    for start in sorted(chords):
        notes = sorted(chords[start], key=lambda h: h.pitch)
        top.append(notes[-1])
        if len(notes) > 1:
            bottom.append(notes[0])
    return top, bottom


def merge_hands(*lines: list[Hit]) -> list[Hit]:
    """Several lines played by one instrument: where two notes of one pitch overlap, the earlier
    one is cut where the later one starts (one key cannot sound twice), slivers dropped."""
    out = []
    notes = sorted((h for line in lines for h in line), key=lambda h: (h.pitch, h.start, -h.end))
    for number, hit in enumerate(notes):
        following = notes[number + 1] if number + 1 < len(notes) else None
        end = hit.end
        if following is not None and following.pitch == hit.pitch and following.start < end:
            end = following.start - 0.005
        if end - hit.start >= 0.02:
            out.append(Hit(hit.pitch, hit.velocity, hit.start, end))
    return sorted(out, key=lambda h: (h.start, h.pitch))
