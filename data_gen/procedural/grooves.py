"""Rhythm patterns, one grid of sixteenth notes per bar and metre, for drums, bass and comping.

A bar has 16 steps in 4/4, 12 in 3/4 and 12 in 6/8 (six eighths of two steps). Grids are
strings, one character per step, so a groove reads like a drum machine:

    drums   'X' accent, 'x' normal, 'o' ghost (soft), '.' rest
    bass    'R' root, '5' fifth, '8' octave above the root, '3' third, 'W' walking note
            (chosen by the composer), '-' holds the previous note, '.' rest
    comping 'X'/'x'/'o' a block chord (strong/normal/soft), '0'..'3' one voice of the chord
            (an arpeggio, lowest voice '0'), '-' holds, '.' rest

Each metre's grids put their weight where the metre's strong beats are (a backbeat on 2 and 4,
"oom-pah-pah" in 3/4, two dotted-quarter pulses grouped 3 + 3 in 6/8), and `metric_weight` adds
an accent on every part, so the metre is audible even in styles without drums.

This module knows no keys, instruments or styles.
"""

from __future__ import annotations

STEPS = {"4/4": 16, "3/4": 12, "6/8": 12}

# General MIDI percussion keys (channel 10, i.e. channel index 9).
KICK, STICK, SNARE, CLAP = 36, 37, 38, 39
HAT, PEDAL_HAT, OPEN_HAT = 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM = 45, 47, 50
CRASH, RIDE, RIDE_BELL, TAMBOURINE, COWBELL = 49, 51, 53, 54, 56
MUTE_CONGA, OPEN_CONGA, LOW_CONGA, MARACAS, CLAVES = 62, 63, 64, 70, 75
CYMBALS = {HAT, PEDAL_HAT, OPEN_HAT, RIDE, RIDE_BELL, TAMBOURINE, MARACAS, COWBELL}

STRENGTH = {"X": 1.0, "x": 0.8, "o": 0.5}

DRUMS: dict[str, dict[str, dict[int, str]]] = {
    "rock": {
        "4/4": {KICK: "X.....x.X.x.....", SNARE: "....X.......X...", HAT: "X.x.x.x.X.x.x.x."},
        "3/4": {KICK: "X.......x...", SNARE: "....x...x...", HAT: "X.x.x.x.x.x."},
        "6/8": {KICK: "X.........x.", SNARE: "......X.....", HAT: "X.x.x.X.x.x."},
    },
    "pop": {
        "4/4": {KICK: "X.......X..x....", SNARE: "....X.......X...", HAT: "x.o.x.o.x.o.x.o.",
                TAMBOURINE: "....x.......x..."},
        "3/4": {KICK: "X...........", SNARE: "....x...x...", HAT: "x.o.x.o.x.o."},
        "6/8": {KICK: "X.....x.....", SNARE: "......X.....", HAT: "x.o.o.x.o.o."},
    },
    "funk": {
        "4/4": {KICK: "X..x..x...X..x..", SNARE: "....X..o.o..X..o", HAT: "xoxoxoxoxoxoxoxo"},
    },
    "hiphop": {
        "4/4": {KICK: "X......x..X.....", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
    },
    "four_on_floor": {
        "4/4": {KICK: "X...X...X...X...", CLAP: "....X.......X...", OPEN_HAT: "..x...x...x...x.",
                HAT: "o...o...o...o..."},
    },
    "swing": {  # offbeat eighths are swung by the style, so the ride reads "ding, ding-a"
        "4/4": {RIDE: "x...x.x.x...x.x.", PEDAL_HAT: "....x.......x...", KICK: "o.......o.......",
                SNARE: "..........o....."},
        "3/4": {RIDE: "x...x.x.x...", PEDAL_HAT: "....x...x...", KICK: "o..........."},
    },
    "latin": {
        "4/4": {KICK: "X..oX...X..oX...", STICK: "x..x..x...x..x..", MARACAS: "xoxoxoxoxoxoxoxo",
                LOW_CONGA: "......x.......x."},
        "6/8": {KICK: "X.....X.....", COWBELL: "x...x...x.x.", MARACAS: "x.o.o.x.o.o.",
                OPEN_CONGA: "....x.x...x.", LOW_CONGA: "......x....."},
    },
    "march": {  # bass drum on the strong beats, a snare cadence between
        "4/4": {KICK: "X.......X.......", SNARE: "x..ox.o.x..ox.o."},
        "3/4": {KICK: "X...........", SNARE: "....x...x..."},
        "6/8": {KICK: "X.....X.....", SNARE: "X.o.o.X.o.o."},
    },
}

BASS: dict[str, dict[str, str]] = {
    "eighths": {"4/4": "R.R.R.R.R.R.R.R.", "3/4": "R.R.R.R.R.R.", "6/8": "R-..R.5-..5."},
    "root_fifth": {"4/4": "R---....5---....", "3/4": "R---........", "6/8": "R-----5-----"},
    "walking": {"4/4": "W...W...W...W...", "3/4": "W...W...W..."},
    "offbeat": {"4/4": "..R...R...R...R."},
    "latin": {"4/4": "R-----5-5-----R-", "6/8": "R---R-5---5-"},
    "funk": {"4/4": "R-.R..8.R...5.8.", "3/4": "R-.R..8.5.8."},
    "hiphop": {"4/4": "R------R--R-----"},
    "sustain": {"4/4": "R---------------", "3/4": "R-----------", "6/8": "R-----------"},
    "classical": {"4/4": "R-------5-------", "3/4": "R-----------", "6/8": "R-----5-----"},
}

COMP: dict[str, dict[str, str]] = {
    "strum": {"4/4": "X-x-x-x-X-x-x-x-", "3/4": "X---x-x-x-x-", "6/8": "X-x-x-X-x-x-"},
    "pop_piano": {"4/4": "X---x---X-x-x---", "3/4": "X---x---x---", "6/8": "X-x-x-X-x-x-"},
    "oompah": {"4/4": "....x---....x---", "3/4": "....x---x---", "6/8": "..x-x-..x-x-"},
    "alberti": {"4/4": "0.2.1.2.0.2.1.2.", "3/4": "0.2.1.2.1.2.", "6/8": "0.1.2.3.2.1."},
    "fingerpick": {"4/4": "0.2.1.3.0.2.1.3.", "3/4": "0.2.1.2.3.2.", "6/8": "0.2.3.1.2.3."},
    "pad": {"4/4": "X---------------", "3/4": "X-----------", "6/8": "X-----------"},
    "ambient_arp": {"4/4": "0---2---1---3---", "3/4": "0---2---1---", "6/8": "0-----2-3-1-"},
    "charleston": {"4/4": "X-----x-........", "3/4": "X.......x..."},
    "bossa": {"4/4": "x--x--x---x--x--", "6/8": "x-x-.xx-x-.x"},
    "chank": {"4/4": "..x...x.o.x...x.", "3/4": "..x...x...x."},
    "offbeat": {"4/4": "..x...x...x...x."},
    "keys": {"4/4": "X-------..x-----", "3/4": "X-------x---"},
    "quartet": {"4/4": "X-x-x-x-X-x-x-x-", "3/4": "X-x-x-x-x-x-", "6/8": "X-x-x-X-x-x-"},  # repeated eighths
}

# How long a comping hit rings, as a fraction of the time to the next onset.
COMP_ARTICULATION = {"chank": 0.3, "offbeat": 0.45, "strum": 0.85, "charleston": 0.6, "bossa": 0.8}

# Melody rhythms: note lengths in steps, one list per bar, by metre and density.
RHYTHMS: dict[str, dict[str, list[list[int]]]] = {
    "4/4": {
        "sparse": [[16], [8, 8], [12, 4], [8, 4, 4]],
        "medium": [[4, 4, 4, 4], [8, 4, 4], [6, 2, 4, 4], [4, 4, 8], [2, 2, 4, 8], [6, 2, 8]],
        "busy": [[2, 2, 2, 2, 4, 4], [4, 2, 2, 4, 4], [2, 2, 4, 2, 2, 4], [2, 2, 2, 2, 2, 2, 4]],
    },
    "3/4": {
        "sparse": [[12], [8, 4]],
        "medium": [[4, 4, 4], [8, 4], [6, 2, 4], [4, 8]],
        "busy": [[2, 2, 4, 4], [4, 2, 2, 4], [2, 2, 2, 2, 4], [6, 2, 2, 2]],
    },
    "6/8": {
        "sparse": [[12], [6, 6]],
        "medium": [[6, 6], [4, 2, 6], [4, 2, 4, 2], [6, 4, 2]],
        "busy": [[2, 2, 2, 6], [4, 2, 2, 2, 2], [2, 2, 2, 4, 2], [4, 2, 4, 2]],
    },
}


def metric_weight(step: int, metre: str) -> float:
    """How strong a step of the bar is: 1.0 on the downbeat, down to ~0.6 on off-sixteenths."""
    if step == 0:
        return 1.0
    if metre == "4/4":
        return 0.85 if step == 8 else 0.78 if step % 4 == 0 else 0.68 if step % 2 == 0 else 0.6
    if metre == "3/4":
        return 0.75 if step % 4 == 0 else 0.65 if step % 2 == 0 else 0.58
    if metre == "6/8":  # two pulses of three eighths
        return 0.85 if step == 6 else 0.68 if step % 2 == 0 else 0.58
    raise ValueError(f"bad metre {metre!r}")


def onsets(grid: str) -> list[tuple[int, str, int]]:
    """(step, symbol, length in steps) for each onset of a grid; '-' extends the length."""
    events = []
    for step, symbol in enumerate(grid):
        if symbol in ".-":
            continue
        length = 1
        while step + length < len(grid) and grid[step + length] == "-":
            length += 1
        events.append((step, symbol, length))
    return events


def _check_tables() -> None:
    """Every grid has its metre's length (a typo here would shift a whole groove)."""
    tables = [(f"drums {name}", table) for name, table in DRUMS.items()]
    tables += [(f"bass {name}", table) for name, table in BASS.items()]
    tables += [(f"comp {name}", table) for name, table in COMP.items()]
    for where, table in tables:
        for metre, grids in table.items():
            for grid in grids.values() if isinstance(grids, dict) else [grids]:
                if len(grid) != STEPS[metre]:
                    raise ValueError(f"{where} {metre}: grid {grid!r} has {len(grid)} steps, not {STEPS[metre]}")
    for metre, densities in RHYTHMS.items():
        for rhythms in densities.values():
            for rhythm in rhythms:
                if sum(rhythm) != STEPS[metre]:
                    raise ValueError(f"rhythm {rhythm} does not fill a bar of {metre}")


_check_tables()
