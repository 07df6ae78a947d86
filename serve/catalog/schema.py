"""The catalog's SQLite schema and the records read from it (serve.catalog.store.Catalog uses them).

Schema (SCHEMA_VERSION 1; WAL mode, so readers such as search run while a caption job writes):

    tracks       id INTEGER PK
                 name TEXT UNIQUE          stable name: the manifest `id`, or the path relative to
                                           the captioned folder (the same on every machine: shards
                                           and merges go by it; `id` in exports)
                 path TEXT                 where the audio was read (absolute)
                 content_hash TEXT         sha256 of the file's bytes (NULL until read)
                 duration REAL             seconds (NULL until decoded)
                 labels TEXT (JSON)        ground truth from a manifest: tempo_bpm, key, mode,
                                           time_signature, instruments, genre, mood, ...
                 estimates TEXT (JSON)     MIR estimates (musicllm.analysis.analyze), never mixed
                                           with labels; {"error": ...} when analysis failed
                 metadata TEXT (JSON)      free metadata (title, artist, tags, source, license)
                 tempo_bpm REAL, key TEXT, mode TEXT, time_signature TEXT, genre TEXT, mood TEXT,
                 instruments TEXT (JSON list)
                                           the searchable attributes: the label when known, else
                                           the estimate (ATTRIBUTE_SOURCE in `attributes` says
                                           which); indexed for filters
                 status TEXT               'pending' | 'done' | 'failed'
                 error TEXT                why it failed (names the file and the problem)
                 added_at, updated_at REAL unix seconds
    captions     track_id -> tracks.id, window INTEGER (0.. per window; -1 = whole-track summary),
                 start REAL, end REAL (seconds; the summary spans the track), text TEXT, model TEXT
                 PRIMARY KEY (track_id, window): a caption can never be stored twice
    embeddings   track_id -> tracks.id, kind TEXT (musicllm.embeddings.EMBEDDING_KIND), dim INTEGER,
                 vector BLOB (float32 little-endian, L2-normalised), PRIMARY KEY (track_id, kind)
    jobs         id INTEGER PK, command TEXT, settings TEXT (JSON), shard TEXT ('i/N' or NULL),
                 model TEXT, started_at, finished_at REAL,
                 status 'running'|'finished'|'failed'|'interrupted' (killed: a later run saw it gone),
                 done, failed INTEGER (tracks this job finished)
    meta         key TEXT PK, value TEXT   (schema_version)
    track_text   FTS5 table (serve.catalog.text_rank.FullTextIndex): rowid = tracks.id of a done track,
                 document TEXT (its captions and attribute words, serve.catalog.search.track_document).
                 Derived, not part of the schema version: search creates it on the first text query
                 and keeps it in sync (a catalog from before it existed, or a merge, is simply indexed
                 then); merges and exports leave it out.

This module knows the tables and nothing about how a job fills them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from musicllm.vocabulary import ATTRIBUTES

SCHEMA_VERSION = 1
STATUSES = ("pending", "done", "failed")
# ATTRIBUTES are flat, indexed columns for attribute filters; each is the label when known, else the estimate.

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    content_hash TEXT,
    duration REAL,
    labels TEXT NOT NULL DEFAULT '{}',
    estimates TEXT NOT NULL DEFAULT '{}',
    metadata TEXT NOT NULL DEFAULT '{}',
    tempo_bpm REAL, key TEXT, mode TEXT, time_signature TEXT, genre TEXT, mood TEXT,
    instruments TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    error TEXT,
    added_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tracks_status ON tracks(status);
CREATE INDEX IF NOT EXISTS tracks_tempo ON tracks(tempo_bpm);
CREATE INDEX IF NOT EXISTS tracks_key_mode ON tracks(key, mode);
CREATE INDEX IF NOT EXISTS tracks_hash ON tracks(content_hash);
CREATE TABLE IF NOT EXISTS captions (
    track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    window INTEGER NOT NULL,
    start REAL, end REAL,
    text TEXT NOT NULL,
    model TEXT NOT NULL,
    PRIMARY KEY (track_id, window)
);
CREATE TABLE IF NOT EXISTS embeddings (
    track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (track_id, kind)
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    command TEXT, settings TEXT NOT NULL DEFAULT '{}', shard TEXT, model TEXT,
    started_at REAL NOT NULL, finished_at REAL,
    status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
    done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0
);
"""


class CatalogError(ValueError):
    """A catalog file that cannot be used (another schema version, not SQLite, bad arguments)."""


@dataclass
class TrackSpec:
    """A track to add: its stable name, where its audio is, and what a manifest knows about it."""
    name: str
    path: str
    labels: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)


@dataclass
class Caption:
    window: int  # 0.. per window; -1 for the whole-track summary
    start: float
    end: float
    text: str
    model: str


@dataclass
class Track:
    id: int
    name: str
    path: str
    content_hash: str | None
    duration: float | None
    labels: dict
    estimates: dict
    metadata: dict
    attributes: dict  # the searchable attributes (label, else estimate), None where unknown
    status: str
    error: str | None


def merged_attributes(labels: dict, estimates: dict) -> dict:
    """The searchable attributes: the ground-truth label when known, else the MIR estimate, plus
    `attribute_source` {name: "label" | "estimate"} for the ones known."""
    values, source = {}, {}
    for name in ATTRIBUTES:
        for origin, table in (("label", labels), ("estimate", estimates)):
            value = table.get(name)
            if value not in (None, "", []):
                values[name], source[name] = value, origin
                break
        else:
            values[name] = [] if name == "instruments" else None
    values["attribute_source"] = source
    return values


def shard_of(name: str, shards: int) -> int:
    """Which of `shards` shards a track belongs to: a stable hash of its name (the same on every
    machine and Python run, unlike `hash()`), so N jobs split a catalog without talking."""
    return int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big") % shards


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def json_text(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def attribute_values(attrs: dict) -> tuple:
    return tuple(json_text(attrs[name]) if name == "instruments" else attrs[name] for name in ATTRIBUTES)


def track_from_row(row: sqlite3.Row) -> Track:
    labels, estimates = json.loads(row["labels"]), json.loads(row["estimates"])
    attrs = {name: row[name] for name in ATTRIBUTES}
    attrs["instruments"] = json.loads(attrs["instruments"])
    attrs["attribute_source"] = merged_attributes(labels, estimates)["attribute_source"]
    return Track(row["id"], row["name"], row["path"], row["content_hash"], row["duration"], labels, estimates,
                 json.loads(row["metadata"]), attrs, row["status"], row["error"])
