"""Names, limits and settings that several packages share, each in one place.

The words labels use, shared by the corpus, the MIR estimates, the writers, evaluation and the
catalog's filters. Keys are spelled with sharps ("C#", never "Db") so that a label, an estimate
and a question compare as plain strings.
"""

from __future__ import annotations

PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
MODES = ["major", "minor"]
TIME_SIGNATURES = ["3/4", "4/4", "6/8"]

# (upper bound in BPM, name); a tempo falls in the first band whose bound exceeds it.
TEMPO_BANDS = [(66.0, "slow"), (96.0, "moderate"), (126.0, "medium-fast"), (156.0, "fast"), (float("inf"), "very fast")]


def tempo_band(bpm: float) -> str:
    for upper, name in TEMPO_BANDS:
        if bpm < upper:
            return name
    raise ValueError(f"bad tempo {bpm}")


def key_name(tonic: str, mode: str) -> str:
    """"A" + "minor" -> "A minor"."""
    if tonic not in PITCH_CLASSES or mode not in MODES:
        raise ValueError(f"bad key {tonic!r} {mode!r}")
    return f"{tonic} {mode}"


# A track's attributes, one name each from the corpus's labels to the web page (the catalog's
# columns, its filters, the API's `filters` and `attributes`).
ATTRIBUTES = ("tempo_bpm", "key", "mode", "time_signature", "genre", "mood", "instruments")


def attribute_phrases(attributes: dict, instruments: int | None = None) -> dict[str, str]:
    """The known ATTRIBUTES as words, in reading order, unknowns left out: {"genre": "rock",
    "mood": "dark", "key": "E minor", "tempo": "168 BPM", "time signature": "4/4",
    "instruments": "drums, guitar"}; `instruments`: name at most this many."""
    key = " ".join(x for x in (attributes.get("key"), attributes.get("mode")) if x)
    bpm = attributes.get("tempo_bpm")
    phrases = {"genre": attributes.get("genre"), "mood": attributes.get("mood"), "key": key,
               "tempo": f"{bpm:.0f} BPM" if bpm else None, "time signature": attributes.get("time_signature"),
               "instruments": ", ".join((attributes.get("instruments") or [])[:instruments])}
    return {name: phrase for name, phrase in phrases.items() if phrase}


# The longest clip a server takes by default (a flag of `serve` and `demo`), in seconds: checked
# from the file header before decoding.
MAX_AUDIO_SECONDS = 600.0
# The environment variable holding the gateway's API key, for the servers and their clients.
API_KEY_ENV = "MUSICLLM_API_KEY"
