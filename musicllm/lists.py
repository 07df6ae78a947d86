"""Lists in an answer's sentences, and the one item a list names twice.

    repeated_list_item("The instrumentation is tuba, piano, tuba and cello.")  # -> "tuba"
    repeating_item_words("The instrumentation is tuba, piano, ")               # -> {"tuba", "piano"}

A small model that lists more instruments than it heard fills the list with ones it has already
named ("tuba, piano, tuba, cello and drums"): no run of four tokens repeats, so the engines' block
on repeated runs does not see it. One definition of a list serves the three places that do:
the engines' decoding rule (musicllm.engines: the next word may not name an item again), the
catalog's check of captions and reasons (serve.catalog.grounding) and the evaluation's count of
answers that repeat themselves (eval.follow).

A sentence's pieces between commas and "and"/"or"s are its items; the first piece's last words
count as an item too ("The instrumentation is tuba, ..."). Pieces of more than LIST_ITEM_WORDS
words are clauses, never items; a bracket is one word, so "chorus (0:00-0:06)" and "chorus
(0:06-0:12)" differ. Notes, chords, numerals and numbers are steps of a sequence, which may come
back ("C, D, E, F, G, A, B, C"; "C major, G major, A minor, C major"; "I, IV, V, I"): never items.
"""

from __future__ import annotations

import re

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
LIST_SEPARATOR = re.compile(r",\s*(?:and\s+|or\s+)?|\s+(?:and|or|&)\s+")
LIST_ITEM_WORDS = 3  # a list's items are short ("acoustic bass"); longer pieces are clauses
WORD = re.compile(r"[\w#/'-]+|\([^)]*\)")
STEP = re.compile(r"(?:[a-g][#b]?(?:m|maj|min|dim|aug|sus)?\d*|[ivx]+|\d+|major|minor)")  # lower case


def repeated_list_item(sentence: str) -> str | None:
    """The item a list in `sentence` names twice ("tuba, piano, piano and cello" -> "piano";
    "recorder, acoustic bass and acoustic bass" -> "acoustic bass"), or None."""
    head, *rest = _pieces(sentence.strip(" .!?"))
    items = [item for item in rest if is_item(item)]
    for number, item in enumerate(items):
        if item in items[:number] or (len(head) >= len(item) and head[-len(item):] == item):
            return " ".join(item)
    return None


def repeating_item_words(text: str) -> set[str]:
    """The words that, said next after `text` (an answer being written, up to the end of a word),
    would finish naming an item that the list of its last sentence has already named: after
    "tuba, piano, " the words "tuba" and "piano"; after "tuba, acoustic bass, acoustic " the word
    "bass". Brackets are never among them (a bracket is no word a model says in one go). Nothing
    before the list's first separator: a lead-in is no list yet."""
    head, *rest = _pieces(SENTENCE_END.split(text + " ")[-1])
    if not rest:
        return set()
    *items, current = rest
    named = [item for item in items + [head[-size:] for size in range(1, len(head) + 1)] if is_item(item)]
    return {item[-1] for item in named
            if item[:-1] == current and len(item) == len(current) + 1 and not item[-1].startswith("(")}


def is_item(words: tuple[str, ...]) -> bool:
    """Whether a piece's words can be a list's item: a few words, not a step of a sequence."""
    return 0 < len(words) <= LIST_ITEM_WORDS and not all(STEP.fullmatch(word) for word in words)


def _pieces(sentence: str) -> list[tuple[str, ...]]:
    """The sentence's pieces between list separators, each as its lower-case words."""
    return [tuple(WORD.findall(piece.lower())) for piece in LIST_SEPARATOR.split(sentence)]
