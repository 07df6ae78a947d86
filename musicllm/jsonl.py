"""Reading JSONL files (one JSON object per line): manifests, conversations, job outputs.

    for record in read_jsonl("data/corpus/manifest.jsonl"): ...

The one reader every package uses (data_gen.formats re-exports it; serve reads clip manifests
with it). Writers append one record per line and flush, so an interrupted write leaves at most a
torn LAST line: that line is skipped with a warning, while a bad line anywhere else is an error
naming the file and line. A missing file reads as empty (a job that has not written yet).

This module knows nothing about what the records mean: callers check their fields.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator


class FormatError(ValueError):
    """A record that breaks a file contract; the message names the file, line and field."""


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Records of a JSONL file, in order. A torn last line (an interrupted write) is skipped with a
    warning; a bad line elsewhere, or a line that is JSON but not an object, is a FormatError."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                print(f"warning: {path}:{number}: ignoring a torn last line (interrupted write)")
                return
            raise FormatError(f"{path}:{number}: not valid JSON ({err.msg})") from err
        if not isinstance(record, dict):
            raise FormatError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield record
