"""Keys, scales and chords: Roman numerals in a key -> pitch classes, chord names and voicings.

A chord is built by stacking thirds on a degree of the key's scale, so every chord tone is in
the scale. The one documented exception is harmonic minor: in a minor key an upper-case "V"
(or "V7") and "vii°" raise the seventh degree (the leading tone), as common-practice minor does,
so that V - i is a real cadence. `allowed_pitch_classes` is therefore the natural minor scale plus
that raised seventh; nothing else chromatic is ever written.

This module knows nothing about MIDI, instruments or time.
"""

from __future__ import annotations

from dataclasses import dataclass

from musicllm.vocabulary import MODES, PITCH_CLASSES

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_ROMAN = {"i": 0, "ii": 1, "iii": 2, "iv": 3, "v": 4, "vi": 5, "vii": 6}

# Intervals above the root -> the suffix of the chord's name ("A" + "m7" = "Am7").
_QUALITIES = {
    (4, 7): "", (3, 7): "m", (3, 6): "dim", (4, 8): "aug",
    (4, 7, 11): "maj7", (4, 7, 10): "7", (3, 7, 10): "m7", (3, 6, 10): "m7b5",
    (3, 6, 9): "dim7", (3, 7, 11): "mMaj7", (4, 8, 11): "maj7#5",
}


@dataclass(frozen=True)
class Chord:
    numeral: str                # as written in the style table, e.g. "V7"
    root: int                   # pitch class 0..11
    tones: tuple[int, ...]      # pitch classes: root, third, fifth[, seventh]
    name: str                   # "G7", "Am", "F#m7b5" (sharps, like vocabulary.PITCH_CLASSES)


def tonic_index(tonic: str) -> int:
    if tonic not in PITCH_CLASSES:
        raise ValueError(f"bad tonic {tonic!r}, expected one of {PITCH_CLASSES}")
    return PITCH_CLASSES.index(tonic)


def scale(tonic: str, mode: str) -> tuple[int, ...]:
    """Pitch classes of the key's scale, tonic first."""
    if mode not in MODES:
        raise ValueError(f"bad mode {mode!r}, expected one of {MODES}")
    root = tonic_index(tonic)
    return tuple((root + step) % 12 for step in SCALES[mode])


def allowed_pitch_classes(tonic: str, mode: str) -> frozenset[int]:
    """Every pitch class the composer may write in this key (see the module docstring)."""
    pcs = set(scale(tonic, mode))
    if mode == "minor":
        pcs.add((tonic_index(tonic) + 11) % 12)  # harmonic minor's leading tone
    return frozenset(pcs)


def chord(numeral: str, tonic: str, mode: str) -> Chord:
    """The chord a Roman numeral names in a key: "ii7" in C major -> Dm7; "V7" in A minor -> E7.

    Upper case is a major (or augmented) triad, lower case minor or diminished; a trailing "7"
    adds the diatonic seventh. The case must agree with the scale (a typo in a style table is an
    error, not a silently different chord)."""
    body = numeral.rstrip("7°ø")
    seventh = numeral.endswith("7")
    degree = _ROMAN.get(body.lower())
    if degree is None:
        raise ValueError(f"bad Roman numeral {numeral!r}")
    steps = list(SCALES[mode])
    if mode == "minor" and (body == "V" or body == "vii"):
        steps[6] = 11  # raised leading tone: V and vii° of harmonic minor
    root = tonic_index(tonic)
    count = 4 if seventh else 3
    tones = tuple((root + steps[(degree + 2 * k) % 7]) % 12 for k in range(count))
    intervals = tuple((t - tones[0]) % 12 for t in tones[1:])
    if intervals not in _QUALITIES:
        raise ValueError(f"{numeral!r} in {tonic} {mode}: no chord quality for intervals {intervals}")
    is_major = intervals[0] == 4
    if body.isupper() != is_major:
        raise ValueError(f"{numeral!r} in {tonic} {mode}: case disagrees with the scale's chord")
    return Chord(numeral, tones[0], tones, PITCH_CLASSES[tones[0]] + _QUALITIES[intervals])


def progression(numerals: tuple[str, ...] | list[str], tonic: str, mode: str) -> list[Chord]:
    return [chord(n, tonic, mode) for n in numerals]


def nearest_pitch(pitch_class: int, target: float) -> int:
    """The MIDI pitch of `pitch_class` closest to `target` (ties go down)."""
    base = int(round(target)) - 6
    return base + (pitch_class - base) % 12


def voicing(tones: tuple[int, ...], center: float, previous: list[int] | None = None) -> list[int]:
    """A close-position voicing of `tones` near `center` (a MIDI pitch).

    With a previous voicing, the inversion that moves the voices least is chosen (smooth voice
    leading, as a pianist or a string section would play), kept within an octave of `center`."""
    candidates = []
    for inversion in range(len(tones)):
        order = tones[inversion:] + tones[:inversion]
        notes = [nearest_pitch(order[0], center - 4)]
        for pc in order[1:]:
            notes.append(notes[-1] + (pc - notes[-1]) % 12)
        for shift in (-12, 0, 12):
            shifted = [n + shift for n in notes]
            mid = (shifted[0] + shifted[-1]) / 2
            if abs(mid - center) <= 8:
                candidates.append(shifted)
    if not candidates:
        raise ValueError(f"no voicing of {tones} near {center}")

    def cost(notes: list[int]) -> float:
        spread = abs((notes[0] + notes[-1]) / 2 - center)
        if previous is None:
            return spread
        moved = sum(min(abs(n - p) for p in previous) for n in notes)
        return moved + 0.25 * spread

    return min(candidates, key=cost)
