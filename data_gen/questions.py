"""Multiple-choice questions from a MuChoMusic-format CSV, with their audio and shown options.

    items = load_questions("muchomusic.csv", audio_dir="sdd_and_musiccaps/")      # MuChoMusic
    items = load_questions("data/corpus/multiple_choice.csv")                       # ours: `audio` column
    prompt = format_prompt(item["question"], item["options"], examples=[ONE_SHOT_EXAMPLE])

Columns: MuChoMusic's (`question`, `correct_answer`, `distractor_1_answer` ..
`distractor_3_answer`, `dataset`, `dataset_identifier`, `genre`, `music_knowledge`,
`music_reasoning`), plus ours where present (`audio`, `flags`, and optionally `id`,
`question_type`, else `musicllm.text_attributes.question_type` reads it from the options). Dimension
lists are Python-literal strings ("['harmony']"); empty or NaN is [].

Audio, first that applies per row:
    1. the `audio` column: a path relative to the CSV's folder (or absolute);
    2. --audio-map: a JSON object or a two-column CSV, dataset_identifier -> path (relative paths
       are taken from --audio-dir if given, else from the map's folder);
    3. --audio-dir: a file named `<dataset_identifier>.<ext>` in it or in any folder below it.
A row whose audio cannot be found is an error naming the row and what was tried (unless the
caller runs without audio and passes require_audio=False).

Shown order of the options ("balanced", the default): the correct answer's position walks
shuffled blocks of A-D in file order (random.Random(seed)), so over any prefix of the file every
letter holds the answer within one of a quarter of the time, for MuChoMusic's CSV too; the
distractors fill the other places in an order shuffled per item (random.Random("seed:id")).
"hash" reproduces `data_gen.multiple_choice.option_order` instead: order from a hash of the row,
independent of the file's order, balanced on our generator's files (which steer the hash) and
uniform in expectation elsewhere. Either way each item records its options in shown order, which
distractor is where (`option_sources`) and `answer_index`, so scoring needs nothing else.

The prompt is MuChoMusic's: "Question: ...\\n Options: (A) .. (B) .. \\n The correct answer is: ",
preceded by in-context examples when asked. This module knows nothing about models.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import math
import os
import random
from pathlib import Path

from data_gen.formats import MC_COLUMNS
from data_gen.multiple_choice import row_hash  # the writer's option order, reproduced by "hash"
from musicllm.audio import AUDIO_SUFFIXES  # what load_audio reads
from musicllm.text_attributes import question_type

LETTERS = "ABCD"
OPTION_COLUMNS = ["correct_answer", "distractor_1_answer", "distractor_2_answer", "distractor_3_answer"]
OPTION_SOURCES = ["correct", "distractor_1", "distractor_2", "distractor_3"]  # MuChoMusic's distractor kinds, in order
ORDERS = ("balanced", "hash")


class QuestionError(ValueError):
    """A questions file, audio map or audio folder that cannot be used; the message names the
    file, the row and the problem."""


def format_prompt(question: str, options: list[str], examples: list[str] = ()) -> str:
    """MuChoMusic's prompt, letter by letter as they build it."""
    prompt = "Question: " + question + "\n Options: " + "".join(f"({L}) {o} " for L, o in zip(LETTERS, options))
    prompt += "\n The correct answer is: "
    return " ".join(examples) + "\n " + prompt if examples else prompt


# The 1-shot example: text only, answerable without audio, in the answer format we hope for.
ONE_SHOT_EXAMPLE = format_prompt(
    "Which family of instruments does the cello belong to?", ["Brass", "Strings", "Percussion", "Woodwinds"]
) + "(B) Strings"


def parse_list(value) -> list[str]:
    """"['harmony', 'melody']" / "harmony" / "" / NaN -> lower-case names."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    text = str(value).strip()
    if not text or text.lower() in {"nan", "none", "[]"}:
        return []
    if text.startswith("["):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            parsed = text.strip("[]").split(",")
        return [str(p).strip().strip("'\"").lower() for p in parsed if str(p).strip().strip("'\"")]
    return [text.lower()]


def read_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs; the header must have the question and option columns."""
    if not path.is_file():
        raise QuestionError(f"{path}: no such questions file")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ["question", *OPTION_COLUMNS] if c not in (reader.fieldnames or [])]
        if missing:
            raise QuestionError(f"{path}: missing column(s) {missing}; expected MuChoMusic's columns {MC_COLUMNS}")
        rows = []
        for row in reader:
            rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}))
    return rows


def read_audio_map(path: Path, audio_dir: Path | None) -> dict[str, Path]:
    """dataset_identifier -> path, from a JSON object or a CSV (header optional, 2 columns)."""
    if not path.is_file():
        raise QuestionError(f"{path}: no such audio map")
    base = audio_dir or path.parent
    if path.suffix.lower() == ".json":
        mapping = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(mapping, dict):
            raise QuestionError(f"{path}: the audio map must be a JSON object {{dataset_identifier: path}}")
        pairs = mapping.items()
    else:
        with open(path, encoding="utf-8", newline="") as f:
            pairs = [(r[0].strip(), r[1].strip()) for r in csv.reader(f) if len(r) >= 2 and r[0].strip()]
        if pairs and not _looks_like_audio(pairs[0][1]):  # a header row
            pairs = pairs[1:]
    return {str(k): base / str(v) for k, v in pairs}


def _looks_like_audio(name: str) -> bool:
    return name.lower().endswith(AUDIO_SUFFIXES)


class AudioResolver:
    """Finds each row's audio file (see the module docstring for the order)."""

    def __init__(self, csv_path: Path, audio_dir=None, audio_map=None):
        self.csv_dir = csv_path.parent
        self.audio_dir = Path(audio_dir) if audio_dir else None
        if self.audio_dir and not self.audio_dir.is_dir():
            raise QuestionError(f"{self.audio_dir}: no such audio folder")
        self.mapping = read_audio_map(Path(audio_map), self.audio_dir) if audio_map else {}
        self._index: dict[str, Path] | None = None

    def _stem_index(self) -> dict[str, Path]:
        # Built once, on first need: MuChoMusic's audio may sit in per-dataset subfolders.
        if self._index is None:
            self._index = {}
            for folder, _, files in os.walk(self.audio_dir):
                for name in sorted(files):
                    stem, ext = os.path.splitext(name)
                    if ext.lower() in AUDIO_SUFFIXES:
                        self._index.setdefault(stem, Path(folder) / name)
        return self._index

    def resolve(self, row: dict) -> tuple[Path | None, str]:
        """(path or None, what was tried)."""
        if row.get("audio"):
            path = Path(row["audio"])
            path = path if path.is_absolute() else self.csv_dir / path
            return (path if path.is_file() else None), f"audio column -> {path}"
        identifier = row.get("dataset_identifier", "")
        tried = []
        if identifier in self.mapping:
            path = self.mapping[identifier]
            if path.is_file():
                return path, ""
            tried.append(f"audio map -> {path}")
        if self.audio_dir and identifier:
            path = self._stem_index().get(identifier)
            if path:
                return path, ""
            tried.append(f"no {identifier}.<{'|'.join(e[1:] for e in AUDIO_SUFFIXES)}> in {self.audio_dir}")
        if not tried:
            tried.append("no audio column, and neither --audio-dir nor --audio-map covers it")
        return None, "; ".join(tried)


def item_id(row: dict) -> str:
    """The CSV's `id`, else dataset_identifier + a hash of question and options (stable across
    reruns and row reorderings)."""
    if row.get("id"):
        return row["id"]
    text = "\x1f".join([row["question"], *(row[c] for c in OPTION_COLUMNS)])
    return f"{row.get('dataset_identifier') or 'q'}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def balanced_positions(count: int, seed: int) -> list[int]:
    """Correct-answer positions: shuffled blocks of 0-3, so any prefix is balanced within one."""
    rng, positions = random.Random(seed), []
    while len(positions) < count:
        block = list(range(len(LETTERS)))
        rng.shuffle(block)
        positions += block
    return positions[:count]


def shown_order(row: dict, ident: str, seed: int, order: str, position: int) -> list[int]:
    """Indices into OPTION_COLUMNS in shown order (A first)."""
    distractors = [1, 2, 3]
    if order == "hash":
        h = row_hash(row)
        random.Random(f"{h}:{seed}").shuffle(distractors)
        position = (h + seed) % 4
    else:
        random.Random(f"{seed}:{ident}").shuffle(distractors)
    distractors.insert(position, 0)
    return distractors


def load_questions(path, audio_dir=None, audio_map=None, seed: int = 0, order: str = "balanced",
                   require_audio: bool = True) -> list[dict]:
    """Items in file order (see the module docstring):
    {id, question, options, option_sources, answer_index, knowledge, reasoning, genre, audio,
     dataset, dataset_identifier, flags, question_type}; `audio` is an absolute path string or None."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    path = Path(path)
    rows = read_rows(path)
    resolver = AudioResolver(path, audio_dir, audio_map)
    positions = balanced_positions(len(rows), seed)
    items, missing, seen = [], [], {}
    for (line, row), position in zip(rows, positions):
        empty = [c for c in ["question", *OPTION_COLUMNS] if not row.get(c)]
        if empty:
            raise QuestionError(f"{path}: line {line}: empty {empty}")
        ident = item_id(row)
        seen[ident] = seen.get(ident, 0) + 1
        if seen[ident] > 1:  # the same question twice on one clip: keep both, apart
            ident = f"{ident}-{seen[ident]}"
        audio, tried = resolver.resolve(row)
        if audio is None and require_audio:
            missing.append(f"line {line} (dataset_identifier {row.get('dataset_identifier')!r}): {tried}")
        shown = shown_order(row, ident, seed, order, position)
        options = [row[OPTION_COLUMNS[i]] for i in shown]
        items.append({
            "id": ident,
            "question": row["question"],
            "options": options,
            "option_sources": [OPTION_SOURCES[i] for i in shown],
            "answer_index": shown.index(0),
            "knowledge": parse_list(row.get("music_knowledge")),
            "reasoning": parse_list(row.get("music_reasoning")),
            "genre": row.get("genre", "") if row.get("genre", "").lower() != "nan" else "",
            "audio": str(audio.resolve()) if audio else None,
            "dataset": row.get("dataset", ""),
            "dataset_identifier": row.get("dataset_identifier", ""),
            "flags": row.get("flags", ""),
            # Written by the CSV, or read from the options (musicllm.text_attributes): the report's confusions need it.
            "question_type": row.get("question_type") or question_type(row["question"], options, shown.index(0)),
        })
    if missing:
        shown_missing = "\n  ".join(missing[:5]) + (f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise QuestionError(f"{path}: audio not found for {len(missing)} of {len(rows)} rows:\n  {shown_missing}")
    return items
