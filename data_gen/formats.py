"""Dataset files on disk (DESIGN.md's contracts) and the append-only JSONL they are written with.

Clip manifest (JSONL), one clip per line:
    id          unique string ("proc-00042", "user-<hash>")
    audio       path to the audio file, relative to the manifest's folder (or absolute)
    duration    seconds
    source      "procedural" | "user" | ...
    license     licence of the audio
    family      seed family: clips of one family share musical material and always land in the
                same split, so no material leaks between train and test
    split       "train" | "valid" | "test"
    labels      ground truth: tempo_bpm, key ("C".."B", sharps), mode ("major"|"minor"),
                time_signature ("3/4"|"4/4"|"6/8"), instruments [GM names], genre, mood,
                dynamics, sections [{name, start, end}], ... (only what is really known)
    estimates   MIR estimates (musicllm.analysis), kept apart from the ground truth;
                {"error": reason} where the audio could not be analysed
    metadata    free metadata of user catalogs: title, artist, tags, description

Conversations (JSONL): id, audio [paths], messages [{role, content}] with "<|audio|>" where each
clip goes, task, provenance {writer, model, prompt_version, seed}.

Multiple choice (CSV): MuChoMusic's columns, plus `audio` (path) and `flags`.

Writers append one record per line and flush, so an interrupted job loses at most the line it
was writing; `read_jsonl` skips (and reports) a torn last line, and `done_ids` tells a rerun
which records exist already.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from musicllm.jsonl import FormatError, read_jsonl  # one JSONL reader for every package

MANIFEST_REQUIRED = {"id": str, "audio": str, "duration": (int, float), "source": str, "license": str}
CONVERSATION_REQUIRED = {"id": str, "audio": list, "messages": list, "task": str, "provenance": dict}
PROVENANCE_REQUIRED = ("writer", "model", "prompt_version", "seed")
ROLES = {"system", "user", "assistant"}
AUDIO_TOKEN = "<|audio|>"

MC_COLUMNS = [
    "question", "correct_answer", "distractor_1_answer", "distractor_2_answer", "distractor_3_answer",
    "dataset", "dataset_identifier", "genre", "music_knowledge", "music_reasoning", "audio", "flags",
]
KNOWLEDGE = ["melody", "harmony", "metre and rhythm", "instrumentation", "sound texture", "performance", "structure"]
REASONING = ["mood", "genre and style", "functional context"]


def _check_fields(record: dict, required: dict, where: str) -> None:
    for field, kind in required.items():
        if field not in record:
            raise FormatError(f"{where}: missing field {field!r}")
        if not isinstance(record[field], kind):
            raise FormatError(f"{where}: field {field!r} has type {type(record[field]).__name__}")


def validate_clip(record: dict, where: str = "clip") -> dict:
    _check_fields(record, MANIFEST_REQUIRED, where)
    if record["duration"] <= 0:
        raise FormatError(f"{where}: field 'duration' must be positive, got {record['duration']}")
    for field in ("labels", "estimates", "metadata"):
        if not isinstance(record.get(field, {}), dict):
            raise FormatError(f"{where}: field {field!r} must be an object")
    return record


def validate_conversation(record: dict, where: str = "conversation") -> dict:
    _check_fields(record, CONVERSATION_REQUIRED, where)
    missing = [k for k in PROVENANCE_REQUIRED if k not in record["provenance"]]
    if missing:
        raise FormatError(f"{where}: provenance lacks {missing}")
    if not record["messages"]:
        raise FormatError(f"{where}: no messages")
    for i, message in enumerate(record["messages"]):
        if message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise FormatError(f"{where}: message {i} needs a role in {sorted(ROLES)} and string content")
    placeholders = sum(m["content"].count(AUDIO_TOKEN) for m in record["messages"])
    if placeholders != len(record["audio"]):
        raise FormatError(f"{where}: {placeholders} {AUDIO_TOKEN} placeholders but {len(record['audio'])} audio paths")
    if record["messages"][-1]["role"] != "assistant" or not record["messages"][-1]["content"].strip():
        raise FormatError(f"{where}: the last message must be a non-empty assistant answer")
    return record


def done_ids(path: str | os.PathLike) -> set[str]:
    return {record["id"] for record in read_jsonl(path)}


class JsonlWriter:
    """Append-only writer: one record per line, flushed at once, torn tail repaired on open."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self._file = open(self.path, "a", encoding="utf-8")

    def _repair_tail(self) -> None:
        # A killed writer can leave half a line; cut the file back to its last newline.
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            self.path.write_bytes(data[: data.rfind(b"\n") + 1])

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def write_all(self, records: Iterable[dict]) -> int:
        count = 0
        for record in records:
            self.write(record)
            count += 1
        return count

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


SPLITS = {"train": 0.8, "valid": 0.1, "test": 0.1}


def assign_split(family: str | int, salt: str = "musicllm") -> str:
    """Split of a seed family, by a stable hash: every clip of a family lands in the same split,
    whichever machine or run computes it."""
    import hashlib

    digest = hashlib.sha256(f"{salt}:{family}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for split, share in SPLITS.items():
        cumulative += share
        if position < cumulative:
            return split
    return "test"
