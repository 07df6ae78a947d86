"""Attribute filters for catalog search: tempo range, key, mode, time signature, instruments, genre, mood.

    filters = Filters(tempo=parse_tempo("90-120"), instruments=["piano"])
    filters.key, filters.mode = parse_key("A minor")
    where, params = filters.sql()         # for SELECT id FROM tracks WHERE ...

The same filters come from `musicllm search` / `musicllm recommend` flags (`add_filter_arguments`)
and from the `filters` object of POST /v1/recommend (serve.catalog.recommend). Keys are spelled with sharps,
as the catalog stores them. This module knows the catalog's `tracks` columns and nothing else.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass, field

from musicllm.vocabulary import PITCH_CLASSES, TIME_SIGNATURES

_FLATS = {"DB": "C#", "EB": "D#", "GB": "F#", "AB": "G#", "BB": "A#", "CB": "B", "FB": "E"}


@dataclass
class Filters:
    """Attribute constraints; None means "any". Strings compare case-insensitively."""
    tempo: tuple[float, float] | None = None  # BPM, inclusive
    key: str | None = None  # tonic with sharps, "C".."B"
    mode: str | None = None  # "major" | "minor"
    time_signature: str | None = None  # "3/4" | "4/4" | "6/8"
    instruments: list[str] = field(default_factory=list)  # every one must play
    genre: str | None = None
    mood: str | None = None

    def active(self) -> bool:
        return any(v not in (None, []) for v in asdict(self).values())

    def sql(self) -> tuple[str, list]:
        """A WHERE clause over the catalog's `tracks` columns, and its parameters."""
        where, params = ["status = 'done'"], []
        if self.tempo:
            where.append("tempo_bpm BETWEEN ? AND ?")
            params += list(self.tempo)
        for column, value in (("key", self.key), ("mode", self.mode), ("time_signature", self.time_signature),
                              ("genre", self.genre), ("mood", self.mood)):
            if value:
                where.append(f"lower({column}) = lower(?)")
                params.append(value)
        for name in self.instruments:
            where.append("EXISTS (SELECT 1 FROM json_each(tracks.instruments) WHERE lower(value) = lower(?))")
            params.append(name)
        return " AND ".join(where), params


def parse_tempo(text: str) -> tuple[float, float]:
    """"90-120" -> (90, 120); "120" -> (120, 120)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?))?\s*", text or "")
    if not match:
        raise ValueError(f"tempo: expected a BPM range like 90-120, got {text!r}")
    low, high = float(match[1]), float(match[2] or match[1])
    if low > high:
        raise ValueError(f"tempo: the range {text!r} runs backwards")
    return low, high


def parse_key(text: str) -> tuple[str, str | None]:
    """"A minor" -> ("A", "minor"); "Bb" -> ("A#", None); "F#m" -> ("F#", "minor")."""
    match = re.fullmatch(r"\s*([A-Ga-g])\s*([#b♯♭]?)\s*(major|minor|maj|min|m)?\s*", text or "", re.IGNORECASE)
    if not match:
        raise ValueError(f"key: expected a key like 'A minor', 'F# major' or 'Bb', got {text!r}")
    tonic = match[1].upper() + match[2].replace("♯", "#").replace("♭", "b")
    tonic = _FLATS.get(tonic.upper(), tonic) if tonic.endswith("b") else tonic
    if tonic not in PITCH_CLASSES:
        tonic = PITCH_CLASSES[(PITCH_CLASSES.index(tonic[0]) + 1) % 12]  # E#, B#
    mode = (match[3] or "").lower()
    return tonic, {"": None, "maj": "major", "major": "major"}.get(mode, "minor")


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The attribute-filter flags (shared with `musicllm recommend`)."""
    group = parser.add_argument_group("attribute filters (combine freely)")
    group.add_argument("--tempo", help="tempo range in BPM, e.g. 90-120 (or one value)")
    group.add_argument("--key", help="key, e.g. 'A minor', 'F# major', 'Bb' (any mode)")
    group.add_argument("--mode", choices=["major", "minor"], help="major or minor, any key")
    group.add_argument("--time-signature", "--metre", dest="time_signature", choices=TIME_SIGNATURES,
                       help="time signature")
    group.add_argument("--instrument", action="append", default=[],
                       help="an instrument that must play, e.g. piano (repeat for several)")
    group.add_argument("--genre", "--style", dest="genre", help="genre, e.g. rock")
    group.add_argument("--mood", help="mood, e.g. calm")


def filters_from_args(args: argparse.Namespace) -> Filters:
    """Filters from parsed flags; ValueError naming the flag on a bad value."""
    filters = Filters(tempo=parse_tempo(args.tempo) if args.tempo else None, time_signature=args.time_signature,
                      instruments=list(args.instrument), genre=args.genre, mood=args.mood, mode=args.mode)
    if args.key:
        filters.key, mode = parse_key(args.key)
        if mode and args.mode and mode != args.mode:
            raise ValueError(f"key: {args.key!r} contradicts --mode {args.mode}")
        filters.mode = mode or args.mode
    return filters
