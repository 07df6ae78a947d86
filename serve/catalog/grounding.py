"""What a user reads about a catalog track is checked against the track's own stored facts.

    checked("It is in C major. It is in C major. About 90 BPM.", {"key": "A", "mode": "minor"})
    # -> "About 90 BPM."  (a key the facts contradict, and a repeat, are dropped)

The model's text is kept sentence by sentence. A sentence is dropped when it
- is not a sentence at all (a small model's broken output starts mid-word, "-string guitar,
  drums.", or stutters, "0:05–0:05–0:05–0:05");
- states a tempo more than 10% off the stored one (a BPM number, or a band word beside a tempo
  noun: "a slow pace" about a track stored at 140 BPM), a key or a mode the stored key does not
  have, or a metre other than the stored one, in numbers or in words ("4/4, with three beats to
  the bar" about a 4/4 track); catalog attribute names: tempo_bpm, key, mode, time_signature.
  An attribute the facts leave out contradicts nothing, and so does one whose value is None,
  except a tempo: a tempo stated about a track known to have none is invented. A sentence that
  says the track holds no music ("This ambient recording holds no music", the silence clips'
  words on a soft track) contradicts a stored tempo or key. The statements are read by
  musicllm.text_attributes, as the evaluation reads them;
- repeats itself or an earlier sentence (four words in a row said twice: how a looping small
  model reads), names one thing twice in a list ("piano, piano and drums": a model listing
  more than it heard), or states a tempo, key, mode or metre that an earlier sentence stated
  ("It is in E major and is in 4/4 time. It sits in E major."; "... four beats to the bar. It is
  in 4/4 time.": a fact said twice in other words); eval.follow's `repeats_itself` uses the same
  measures.
Nothing is added: what is left is the model's own words (serve.catalog.captioner stores it as the
caption; serve.catalog.recommend as a pick's reason, with its own checks for names).
"""

from __future__ import annotations

import re

from musicllm.lists import SENTENCE_END, repeated_list_item
from musicllm.text_attributes import bpms_in, facts_stated, keys_in, metres_in, modes_in, says_no_music, tempo_bands_in
from musicllm.vocabulary import tempo_band

SENTENCE_START = re.compile(r"[A-Z0-9]")
STUTTER = re.compile(r"(.{4,}?)\1\1")
TEMPO_TOLERANCE = 0.1


def sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_END.split(text.strip()) if s]


def is_sentence(sentence: str) -> bool:
    return bool(SENTENCE_START.match(sentence)) and not STUTTER.search(sentence)


def contradicts(sentence: str, attributes: dict) -> bool:
    """Whether `sentence` states a tempo, key, mode or metre that the track's facts do not, or
    says that a track whose facts have a tempo or a key holds no music."""
    if (attributes.get("tempo_bpm") is not None or attributes.get("key")) and says_no_music(sentence):
        return True
    if "tempo_bpm" in attributes:  # None: known to have no tempo (any tempo stated is invented); absent: unknown
        tempo, bpms, bands = attributes["tempo_bpm"], bpms_in(sentence), tempo_bands_in(sentence)
        if tempo is None:
            if bpms or bands:
                return True
        elif any(abs(bpm - tempo) > TEMPO_TOLERANCE * tempo for bpm in bpms) or \
                bands - {tempo_band(tempo * f) for f in (1 - TEMPO_TOLERANCE, 1.0, 1 + TEMPO_TOLERANCE)}:
            return True
    tonics = {tonic for tonic, _ in keys_in(sentence)}  # flats spelled as the catalog's sharps
    if attributes.get("key") and tonics and tonics != {attributes["key"]}:
        return True
    modes = modes_in(sentence)
    if attributes.get("mode") and modes and modes != {attributes["mode"]}:
        return True
    metres = metres_in(sentence)
    metre = attributes.get("time_signature")
    return bool(metre and metres and metres != {metre})


def _grams(sentence: str) -> list[tuple[str, ...]]:
    """The sentence's word 4-grams (a sentence under four words: its words as one)."""
    words = re.findall(r"[a-z0-9#/]+", sentence.lower())
    return [tuple(words[i:i + 4]) for i in range(len(words) - 3)] or [tuple(words)]


def checked(text: str, attributes: dict | None = None) -> str:
    """`text` without the sentences that are broken, contradict `attributes`, or repeat
    themselves or an earlier sentence (four words in a row said twice, the same short sentence,
    one thing named twice in a list, a tempo, key, mode or metre stated again) (module docstring)."""
    kept, said, stated = [], set(), set()
    for sentence in sentences(text):
        grams, facts = _grams(sentence), facts_stated(sentence)
        repeats = len(set(grams)) < len(grams) or said & set(grams) or repeated_list_item(sentence) or facts & stated
        if not is_sentence(sentence) or repeats:
            continue
        if attributes and contradicts(sentence, attributes):
            continue
        said.update(grams)
        stated.update(facts)
        kept.append(sentence)
    return " ".join(kept)
