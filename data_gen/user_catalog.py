"""`musicllm data import`: a user's folder of audio (+ optional metadata) -> a clip manifest.

    musicllm data import ~/Music --out data/mine
    musicllm data import ~/Music --out data/mine --metadata ~/Music/tracks.csv
    python -m data_gen.user_catalog ...

Scans FOLDER recursively for .wav .flac .ogg .mp3 (any case; names starting with "." are
skipped: they are hidden files or macOS "._" shadows), reads each duration from the header and
writes DIR/manifest.jsonl, one clip per file:
    id        "user-" + a hash of the path relative to FOLDER (stable across runs and machines)
    audio     absolute path (the audio stays where it is; DIR can live anywhere)
    source    "user";  license "unknown (user's own)"
    family    "artist:<artist>" if the metadata names one, else "album:<album>", else "file:<path>":
              tracks of one artist share style, so they share a split and a model is never
              tested on an artist it was trained on
    split     formats.assign_split(family)
    labels    only what the metadata states: `genre` if given (nothing else is known)
    metadata  title, artist, album, tags (a list), genre, description and any other columns
Unreadable files go to DIR/import_errors.jsonl with the reason, and are retried by a rerun.

Metadata (CSV with a header row, or JSONL with one object per line): a `file` (or `path`,
`filename`) column naming the audio by its path relative to FOLDER or by its bare file name
(when that name is unique in FOLDER); `tags` as "a, b, c" or a JSON list. A malformed row, an
invalid JSON line or an ambiguous name stops the import with an error naming file and line.

Resuming: files whose id is already in manifest.jsonl are not read again (and keep the metadata
they were imported with; delete the manifest to re-import everything).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from data_gen.formats import JsonlWriter, assign_split, done_ids
from musicllm.audio import AUDIO_SUFFIXES

KEY_COLUMNS = ("file", "path", "filename")
LICENSE = "unknown (user's own)"


class MetadataError(ValueError):
    """Unusable metadata; the message names the file and line."""


def scan(folder: Path) -> list[Path]:
    """Audio files under `folder`, sorted, as paths relative to it."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_SUFFIXES:
                found.append(Path(root, name).relative_to(folder))
    return sorted(found, key=lambda p: p.as_posix())


def _tags(value, where: str) -> list[str]:
    if isinstance(value, list):
        return [str(t).strip() for t in value if str(t).strip()]
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    raise MetadataError(f"{where}: tags must be a string or a list, got {type(value).__name__}")


def _clean(entry: dict, where: str) -> tuple[str, dict]:
    """(the file it names, its metadata without empty values)."""
    key = next((k for k in KEY_COLUMNS if str(entry.get(k) or "").strip()), None)
    if key is None:
        raise MetadataError(f"{where}: no file name (a 'file', 'path' or 'filename' column)")
    name = str(entry[key]).strip().replace("\\", "/").removeprefix("./")
    metadata = {}
    for field, value in entry.items():
        if field in KEY_COLUMNS or value is None or (isinstance(value, str) and not value.strip()):
            continue
        metadata[field] = _tags(value, where) if field == "tags" else value.strip() if isinstance(value, str) else value
    return name, metadata


def read_metadata(path: Path) -> dict[str, tuple[dict, str]]:
    """{file name as written: (metadata, "path:line")} from a CSV or JSONL file."""
    entries: dict[str, tuple[dict, str]] = {}

    def add(entry: dict, where: str) -> None:
        name, metadata = _clean(entry, where)
        if name in entries:
            raise MetadataError(f"{where}: {name!r} is already described at {entries[name][1]}")
        entries[name] = (metadata, where)

    if path.suffix.lower() in {".jsonl", ".json"}:
        for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                raise MetadataError(f"{path}:{number}: not valid JSON ({err.msg})") from err
            if not isinstance(entry, dict):
                raise MetadataError(f"{path}:{number}: expected a JSON object, got {type(entry).__name__}")
            add(entry, f"{path}:{number}")
    elif path.suffix.lower() in {".csv", ".tsv"}:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",", strict=True)
            try:
                header = [h.strip() for h in next(reader, [])]
                if not header:
                    raise MetadataError(f"{path}:1: empty file, expected a header row")
                for row in reader:
                    where = f"{path}:{reader.line_num}"
                    if not any(cell.strip() for cell in row):
                        continue
                    if len(row) != len(header):
                        raise MetadataError(f"{where}: {len(row)} fields, but the header has {len(header)}")
                    add(dict(zip(header, row)), where)
            except csv.Error as err:
                raise MetadataError(f"{path}:{reader.line_num}: malformed CSV ({err})") from err
    else:
        raise MetadataError(f"{path}: metadata must be .csv, .tsv or .jsonl")
    return entries


def match_metadata(files: list[Path], entries: dict[str, tuple[dict, str]], folder: Path) -> tuple[dict, list[str]]:
    """({relative posix path: metadata}, names that matched no file)."""
    by_path = {f.as_posix(): f for f in files}
    by_name: dict[str, list[str]] = {}
    for f in files:
        by_name.setdefault(f.name, []).append(f.as_posix())
    matched, unmatched = {}, []
    for name, (metadata, where) in entries.items():
        if os.path.isabs(name):
            try:
                name = Path(name).relative_to(folder.resolve()).as_posix()
            except ValueError:
                pass
        if name in by_path:
            target = name
        elif len(by_name.get(name, [])) == 1:
            target = by_name[name][0]
        elif by_name.get(name):
            raise MetadataError(f"{where}: {name!r} matches {len(by_name[name])} files "
                                f"({', '.join(by_name[name][:3])}); give the path relative to {folder}")
        else:
            unmatched.append(name)
            continue
        if target in matched:
            raise MetadataError(f"{where}: {name!r} describes {target}, which another line describes too")
        matched[target] = metadata
    return matched, unmatched


def family_of(relative: str, metadata: dict) -> str:
    for field in ("artist", "album"):
        if isinstance(metadata.get(field), str) and metadata[field].strip():
            return f"{field}:{metadata[field].strip().lower()}"
    return f"file:{relative}"


def clip_record(folder: Path, relative: str, duration: float, metadata: dict) -> dict:
    family = family_of(relative, metadata)
    labels = {"genre": metadata["genre"]} if isinstance(metadata.get("genre"), str) else {}
    return {
        "id": clip_id(relative), "audio": str((folder / relative).resolve()), "duration": round(duration, 3),
        "source": "user", "license": LICENSE, "family": family, "split": assign_split(family),
        "labels": labels, "estimates": {}, "metadata": metadata, "file": relative,
    }


def clip_id(relative: str) -> str:
    return "user-" + hashlib.sha256(relative.encode()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musicllm data import", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="folder of audio files (searched recursively)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder for manifest.jsonl and import_errors.jsonl")
    parser.add_argument("--metadata", type=Path,
                        help="optional CSV or JSONL: file, title, artist, album, tags, genre, description, ...")
    args = parser.parse_args(argv)
    from musicllm.audio import AudioError, audio_duration

    if not args.folder.is_dir():
        print(f"musicllm data import: {args.folder}: not a folder", file=sys.stderr)
        return 2
    files = scan(args.folder)
    try:
        entries = read_metadata(args.metadata) if args.metadata else {}
        metadata, unmatched = match_metadata(files, entries, args.folder)
    except (MetadataError, OSError, UnicodeDecodeError) as err:
        print(f"musicllm data import: {err}", file=sys.stderr)
        return 2
    if unmatched:
        print(f"warning: {len(unmatched)} metadata entries match no audio file, e.g. {unmatched[:3]}", file=sys.stderr)
    manifest, errors_path = args.out / "manifest.jsonl", args.out / "import_errors.jsonl"
    done = done_ids(manifest)
    errors_path.unlink(missing_ok=True)
    added = failed = 0
    with JsonlWriter(manifest) as clips, JsonlWriter(errors_path) as errors:
        for relative in tqdm([f.as_posix() for f in files], unit="file", desc="importing"):
            if clip_id(relative) in done:
                continue
            try:
                duration = audio_duration(args.folder / relative, name=relative)
            except AudioError as err:
                errors.write({"file": relative, "reason": str(err)})
                failed += 1
                continue
            clips.write(clip_record(args.folder, relative, duration, metadata.get(relative, {})))
            added += 1
    if failed == 0:
        errors_path.unlink(missing_ok=True)
    print(f"{len(files)} audio files: {added} added, {len(files) - added - failed} already in {manifest}, "
          f"{failed} unreadable" + (f" (reasons in {errors_path})" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
