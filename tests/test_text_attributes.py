"""Reading musical attributes out of options, captions and questions."""

import pytest

from musicllm.text_attributes import (canonical_genre, canonical_instrument, instruments_in, keys_in, metres_in, modes_in,
                             question_type, tempo_bands_in)


def test_keys_spelled_with_sharps():
    assert keys_in("In F# minor, then Bb Major and E flat minor.") == [("F#", "minor"), ("A#", "major"), ("D#", "minor")]
    assert keys_in("It is in a minor key.") == [] and modes_in("It is in a minor key.") == {"minor"}


@pytest.mark.parametrize("text,bands", [
    ("Fast tempo (126–156 BPM)", {"fast"}), ("Slow tempo (below 66 BPM)", {"slow"}),
    ("Very fast tempo (above 156 BPM)", {"very fast"}), ("keeps a moderate pace (90 BPM)", {"moderate"}),
    ("The tempo is medium-fast.", {"medium-fast"}), ("moderate dynamics", set()), ("It moves at 64 BPM", {"slow"}),
])
def test_tempo_bands(text, bands):
    assert tempo_bands_in(text) == bands


def test_metres_and_names():
    assert metres_in("Compound duple metre (6/8)") == {"6/8"} and metres_in("Duple metre (2/4)") == {"2/4"}
    assert metres_in("three beats to the bar") == {"3/4"}
    assert [canonical_instrument(n) for n in ["Electric Bass (finger)", "String Ensemble 1", "Pad 1 (new age)",
                                              "Synth Bass 1", "drum kit", "Theremin"]] == \
        ["bass", "strings", "synth", "bass", "drums", "theremin"]
    assert instruments_in("grand piano, a bassoon and a drum kit") == {"piano", "bassoon", "drums"}
    assert canonical_genre("Hip-Hop") == "hip hop" and canonical_genre("electronic dance") == "electronic"


def test_question_type_from_options_and_words():
    assert question_type("Which key is this piece in?", ["Triple metre (3/4)", "C major", "A minor", "Jazz"], 1) == "key"
    tempi = ["Slow", "Fast", "Calm", "Piano part"]
    assert question_type("How fast is it?", tempi, 1) == "tempo"
    # "Moderate" under a question on dynamics is no tempo, though a tempo option is there
    dynamics = ["Very fast tempo (above 156 BPM)", "Mostly loud", "Moderate", "Key of F major"]
    assert question_type("How would you describe the dynamic level of the performance?", dynamics, 2) is None
    assert question_type("What is the time signature?", ["Piano", "Drums", "Flute", "Harp"], 0) == "metre"
