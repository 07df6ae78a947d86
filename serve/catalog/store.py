"""The catalog: tracks, their attributes, captions, audio embeddings and job state, in SQLite.

    catalog = Catalog("music.db")
    catalog.add_tracks([TrackSpec(name="a/song.flac", path="/music/a/song.flac")])
    for track in catalog.tracks(status="pending"): ...
    catalog.finish_track(track.id, captions=[...], embedding=vector, estimates={...}, ...)
    catalog.export("music.jsonl")        # or .csv

The tables, and the records read from them, are in serve.catalog.schema (re-exported here).

Exactly once: a track's captions, embedding, attributes and its status change commit in ONE
transaction (`finish_track` / `fail_track`), so a process killed at any moment leaves each track
either untouched ('pending') or complete; a rerun works only on 'pending' tracks. One writer per
database file: N machines write N databases (`--shard i/N`) and `merge` joins them.

This module knows nothing about audio, models or search: it stores what it is given.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from serve.catalog.schema import (  # noqa: F401 (re-exported: the catalog's public names)
    ATTRIBUTES, SCHEMA, SCHEMA_VERSION, STATUSES, Caption, CatalogError, Track, TrackSpec, attribute_values,
    file_hash, json_text, merged_attributes, shard_of, track_from_row)


class Catalog:
    """One SQLite catalog file (created with the schema above when missing)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (`with self.transaction()`).
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self.db.row_factory = sqlite3.Row
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as error:
            self.db.close()
            raise CatalogError(f"{self.path}: not a catalog database ({error})") from error
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
        with self.transaction():
            for statement in filter(str.strip, SCHEMA.split(";")):
                self.db.execute(statement)
            row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise CatalogError(f"{self.path}: catalog schema version {row[0]}, this musicllm reads {SCHEMA_VERSION}")

    def transaction(self):
        """`with catalog.transaction():` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception."""
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- tracks -----------------------------------------------------------------------------

    def add_tracks(self, specs: Iterable[TrackSpec]) -> int:
        """Add tracks not yet in the catalog (by name); returns how many were new. Tracks already
        there keep their status, captions and everything else."""
        now, added = time.time(), 0
        with self.transaction():
            for spec in specs:
                attrs = merged_attributes(spec.labels, {})
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO tracks (name, path, labels, metadata, tempo_bpm, key, mode, "
                    "time_signature, genre, mood, instruments, added_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (spec.name, str(spec.path), json_text(spec.labels), json_text(spec.metadata),
                     *attribute_values(attrs), now, now))
                added += cursor.rowcount
        return added

    def tracks(self, status: str | None = None, shard: tuple[int, int] | None = None,
               ids: Iterable[int] | None = None) -> Iterator[Track]:
        """Tracks in id order, optionally only those with `status`, in shard (i, N) and among `ids`."""
        if status is not None and status not in STATUSES:
            raise CatalogError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        where, params = [], []
        if status:
            where.append("status = ?")
            params.append(status)
        if ids is not None:  # one JSON parameter: no limit on how many ids
            where.append("id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(sorted(int(i) for i in ids)))
        query = "SELECT * FROM tracks" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        for row in self.db.execute(query, params).fetchall():
            if shard is None or shard_of(row["name"], shard[1]) == shard[0]:
                yield track_from_row(row)

    def track(self, track_id: int) -> Track:
        row = self.db.execute("SELECT * FROM tracks WHERE id = ?", (track_id,)).fetchone()
        if row is None:
            raise CatalogError(f"{self.path}: no track with id {track_id}")
        return track_from_row(row)

    def counts(self) -> dict[str, int]:
        """{status: number of tracks} for every status."""
        found = dict(self.db.execute("SELECT status, COUNT(*) FROM tracks GROUP BY status").fetchall())
        return {status: int(found.get(status, 0)) for status in STATUSES}

    def finish_track(self, track_id: int, *, captions: list[Caption], content_hash: str | None = None,
                     duration: float | None = None, estimates: dict | None = None,
                     embedding: np.ndarray | None = None, embedding_kind: str | None = None,
                     job_id: int | None = None) -> None:
        """Store everything about a captioned track and mark it done, in one transaction. A track
        that is not 'pending' any more (another run got there) is left alone: nothing twice."""
        with self.transaction():
            row = self.db.execute("SELECT status, labels FROM tracks WHERE id = ?", (track_id,)).fetchone()
            if row is None or row["status"] != "pending":
                return
            estimates = estimates or {}
            attrs = merged_attributes(json.loads(row["labels"]), estimates)
            self.db.execute(
                "UPDATE tracks SET status = 'done', error = NULL, content_hash = ?, duration = ?, estimates = ?, "
                "tempo_bpm = ?, key = ?, mode = ?, time_signature = ?, genre = ?, mood = ?, instruments = ?, "
                "updated_at = ? WHERE id = ?",
                (content_hash, duration, json_text(estimates), *attribute_values(attrs), time.time(), track_id))
            self.db.executemany(
                "INSERT INTO captions (track_id, window, start, end, text, model) VALUES (?, ?, ?, ?, ?, ?)",
                [(track_id, c.window, c.start, c.end, c.text, c.model) for c in captions])
            if embedding is not None:
                self._put_embedding(track_id, embedding, embedding_kind or "audio")
            if job_id is not None:
                self.db.execute("UPDATE jobs SET done = done + 1 WHERE id = ?", (job_id,))

    def fail_track(self, track_id: int, error: str, *, content_hash: str | None = None,
                   job_id: int | None = None) -> None:
        """Mark a pending track failed with its reason (it is skipped from then on)."""
        with self.transaction():
            cursor = self.db.execute(
                "UPDATE tracks SET status = 'failed', error = ?, content_hash = COALESCE(?, content_hash), "
                "updated_at = ? WHERE id = ? AND status = 'pending'", (error, content_hash, time.time(), track_id))
            if cursor.rowcount and job_id is not None:
                self.db.execute("UPDATE jobs SET failed = failed + 1 WHERE id = ?", (job_id,))

    def retry_failed(self) -> int:
        """Put every failed track back to pending (e.g. after fixing files); returns how many."""
        with self.transaction():
            return self.db.execute("UPDATE tracks SET status = 'pending', error = NULL, updated_at = ? "
                                   "WHERE status = 'failed'", (time.time(),)).rowcount

    # -- captions and embeddings ------------------------------------------------------------

    def captions(self, track_id: int) -> list[Caption]:
        """A track's captions: windows in order, then the summary (window -1) last."""
        rows = self.db.execute("SELECT * FROM captions WHERE track_id = ? ORDER BY window < 0, window",
                               (track_id,)).fetchall()
        return [Caption(r["window"], r["start"], r["end"], r["text"], r["model"]) for r in rows]

    def _put_embedding(self, track_id: int, vector: np.ndarray, kind: str) -> None:
        vector = np.asarray(vector, dtype="<f4").ravel()
        self.db.execute("INSERT OR REPLACE INTO embeddings (track_id, kind, dim, vector) VALUES (?, ?, ?, ?)",
                        (track_id, kind, len(vector), vector.tobytes()))

    def put_embedding(self, track_id: int, vector: np.ndarray, kind: str) -> None:
        """Store (or replace) one vector of `kind` for a track, outside a caption job."""
        with self.transaction():
            self._put_embedding(track_id, vector, kind)

    def embeddings(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(track ids (N,), vectors (N, dim) float32) of every stored vector of `kind`."""
        rows = self.db.execute("SELECT track_id, dim, vector FROM embeddings WHERE kind = ? ORDER BY track_id",
                               (kind,)).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        dims = {r["dim"] for r in rows}
        if len(dims) != 1:
            raise CatalogError(f"{self.path}: embeddings of kind {kind!r} have several dimensions {sorted(dims)}")
        ids = np.array([r["track_id"] for r in rows], dtype=np.int64)
        return ids, np.stack([np.frombuffer(r["vector"], dtype="<f4") for r in rows]).astype(np.float32)

    # -- jobs -------------------------------------------------------------------------------

    def start_job(self, command: str, settings: dict, shard: str | None = None, model: str | None = None) -> int:
        with self.transaction():
            return self.db.execute(
                "INSERT INTO jobs (command, settings, shard, model, started_at) VALUES (?, ?, ?, ?, ?)",
                (command, json_text(settings), shard, model, time.time())).lastrowid

    def end_job(self, job_id: int, status: str = "finished") -> None:
        with self.transaction():
            self.db.execute("UPDATE jobs SET status = ?, finished_at = ? WHERE id = ?", (status, time.time(), job_id))

    def jobs(self) -> list[dict]:
        return [dict(r) | {"settings": json.loads(r["settings"])} for r in self.db.execute("SELECT * FROM jobs ORDER BY id")]

    # -- export and merge -------------------------------------------------------------------

    def records(self, with_embeddings: bool = False) -> Iterator[dict]:
        """One JSON-ready dict per track (what `export` writes): the track, its attributes, its
        window captions and summary; with_embeddings adds {kind: [floats]}."""
        for track in self.tracks():
            captions = self.captions(track.id)
            record = {
                "id": track.name, "path": track.path, "status": track.status, "error": track.error,
                "content_hash": track.content_hash, "duration": track.duration, **track.attributes,
                "summary": next((c.text for c in captions if c.window == -1), None),
                "captions": [{"window": c.window, "start": c.start, "end": c.end, "text": c.text}
                             for c in captions if c.window >= 0],
                "caption_model": captions[0].model if captions else None,
                "labels": track.labels, "estimates": track.estimates, "metadata": track.metadata,
            }
            if with_embeddings:
                rows = self.db.execute("SELECT kind, vector FROM embeddings WHERE track_id = ?", (track.id,))
                record["embeddings"] = {r["kind"]: np.frombuffer(r["vector"], dtype="<f4").tolist() for r in rows}
            yield record

    def export(self, out: str | Path, with_embeddings: bool = False) -> int:
        """Write every track to `out`: .jsonl (one record per line) or .csv (one row per track, list
        and object fields as JSON). Returns the number of tracks written."""
        out = Path(out)
        if out.suffix not in (".jsonl", ".csv"):
            raise CatalogError(f"--export {out}: the file must end in .jsonl or .csv")
        out.parent.mkdir(parents=True, exist_ok=True)
        records = list(self.records(with_embeddings and out.suffix == ".jsonl"))
        with open(out, "w", newline="", encoding="utf-8") as f:
            if out.suffix == ".jsonl":
                for record in records:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                columns = list(records[0]) if records else ["id", "path", "status", "error", "summary"]
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                for record in records:
                    writer.writerow({k: json_text(v) if isinstance(v, (list, dict)) else v for k, v in record.items()})
        return len(records)

    def merge(self, other: str | Path) -> dict[str, int]:
        """Copy tracks of another catalog (a shard) into this one, by name: a track new here comes
        with its captions and embeddings; one already here is replaced only when it is not done
        here and done there. Returns {"added": n, "updated": n}."""
        source = Catalog(other)  # checks that it is a catalog of this schema version
        source.close()
        self.db.execute("ATTACH DATABASE ? AS other", (str(Path(other).expanduser()),))
        try:
            with self.transaction():
                return self._merge_attached()
        finally:
            self.db.execute("DETACH DATABASE other")

    def _merge_attached(self) -> dict[str, int]:
        columns = [r[1] for r in self.db.execute("PRAGMA table_info(tracks)") if r[1] != "id"]
        names = ", ".join(columns)
        replaced = self.db.execute(
            "SELECT t.id FROM main.tracks t JOIN other.tracks o ON o.name = t.name "
            "WHERE t.status != 'done' AND o.status = 'done'").fetchall()
        for (track_id,) in replaced:  # captions and embeddings go with the row (ON DELETE CASCADE)
            self.db.execute("DELETE FROM main.tracks WHERE id = ?", (track_id,))
        added = self.db.execute(
            f"INSERT INTO main.tracks ({names}) SELECT {names} FROM other.tracks o "
            "WHERE o.name NOT IN (SELECT name FROM main.tracks)").rowcount
        mapping = "(SELECT t.id FROM main.tracks t JOIN other.tracks o2 ON o2.name = t.name WHERE o2.id = {}.track_id)"
        for table, rest in (("captions", "window, start, end, text, model"), ("embeddings", "kind, dim, vector")):
            self.db.execute(f"INSERT OR IGNORE INTO main.{table} (track_id, {rest}) "
                            f"SELECT {mapping.format('x')}, {rest} FROM other.{table} x")
        return {"added": added - len(replaced), "updated": len(replaced)}


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")  # takes the write lock now: no upgrade deadlocks later
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
