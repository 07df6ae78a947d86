"""`musicllm search`: find catalog tracks by text, by audio, by attributes, or all three at once.

    musicllm search "calm piano for studying" --catalog music.db
    musicllm search "fast minor-key rock" --catalog music.db --tempo 140-200 --k 5
    musicllm search --catalog music.db --audio song.mp3 --key "A minor" --instrument piano
    musicllm search --catalog music.db --time-signature 3/4 --genre classical --json

- Text: over each track's captions (whole-track summary + window captions) and its attribute
  words. "hybrid" (the default) fuses BM25 (SQLite FTS5, serve.catalog.text_rank.FullTextIndex)
  and all-MiniLM-L6-v2 cosine by reciprocal rank; "bm25" and "embedding" are the two alone.
  Hybrid ranks best on the procedural corpus (nDCG@10 0.35 vs 0.31 for BM25,
  eval/benchmarks/retrieval.py). The embedding runs in numpy (serve.catalog.text_rank), so a cold
  `musicllm search "..."` needs no torch and answers in about 0.4 s on 2 cores
  (eval/benchmarks/cli_latency.py).
- Audio: nearest neighbours of the clip's embedding (musicllm.embeddings, the frozen encoder)
  among the tracks' stored embeddings, after the catalog-fitted standardisation.
- Attributes: SQL filters on the catalog's indexed columns (tempo range, key, mode, time
  signature, instrument, genre, mood); they restrict the candidates of the other two, or list
  the matching tracks on their own. Text and audio together are fused by reciprocal rank.

The vector indexes live beside the database (`music.db.index/audio`, `.../text`): built on first
use, extended with tracks added since (incremental), rebuilt with --rebuild-index or when the
catalog has doubled since the standardisation was fitted. Text embeddings are stored in the
catalog (embeddings kind TEXT_EMBEDDING_KIND) so a rebuild never recomputes them. The full-text
table is in the catalog too (TEXT_TABLE): created by the first text query, so a catalog made
before it existed searches as well, and brought up to date with the done tracks after changes.

This module knows nothing about HTTP or how captions were made; the catalog is the truth and the
indexes are derived from it.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from serve.catalog.store import ATTRIBUTES, Catalog, CatalogError
from serve.catalog.filters import Filters, add_filter_arguments, filters_from_args
from serve.catalog.index import VectorIndex
from serve.catalog.text_rank import FullTextIndex, TextEmbedder, TextEmbedderMissing, reciprocal_rank_fusion

TEXT_METHODS = ("hybrid", "bm25", "embedding")
DEFAULT_TEXT_METHOD = "hybrid"  # best ranking (module docstring), for the API and the command alike
TEXT_TABLE = "track_text"  # the catalog's FTS5 table of track documents (serve.catalog.schema)
# Refit the audio standardisation (a full rebuild) once the catalog has grown this much since.
REFIT_GROWTH = 2.0
MIN_TRACKS_TO_STANDARDISE = 8


@dataclass
class Hit:
    """One track found: who it is, how well it matched, and what the catalog says about it."""
    track_id: int
    name: str  # the catalog's stable name for the track
    title: str
    score: float  # fused rank score; higher is better (comparable within one query only)
    attributes: dict
    summary: str | None
    matched: dict = field(default_factory=dict)  # {"text": rank, "audio": cosine}


def track_title(track) -> str:
    """What a person calls the track: its metadata title (and artist), else its catalog key."""
    meta = track.metadata or {}
    title = meta.get("title") or track.name
    return f"{title} - {meta['artist']}" if meta.get("artist") and meta.get("title") else title


def track_document(attributes: dict, captions: list[str]) -> str:
    """The text a track is searched by: its captions, then its attributes in words."""
    words = [attributes.get("genre"), attributes.get("mood"), attributes.get("time_signature")]
    if attributes.get("key"):
        words.append(f"{attributes['key']} {attributes.get('mode') or ''}".strip())
    words += attributes.get("instruments") or []
    if attributes.get("tempo_bpm"):
        words.append(f"{round(attributes['tempo_bpm'])} BPM")
    return " ".join(captions + [". ".join(str(w) for w in words if w)])


class Searcher:
    """Search over one catalog file; keeps its indexes and models in memory between queries."""

    def __init__(self, catalog: str | Path | Catalog, text_method: str = DEFAULT_TEXT_METHOD,
                 rebuild_index: bool = False):
        if text_method not in TEXT_METHODS:
            raise ValueError(f"text_method: must be one of {', '.join(TEXT_METHODS)}, got {text_method!r}")
        self.catalog = catalog if isinstance(catalog, Catalog) else Catalog(existing_catalog(catalog))
        self.text_method, self.rebuild_index = text_method, rebuild_index
        self.index_dir = Path(str(self.catalog.path) + ".index")
        self._audio_index = self._text_index = self._full_text = self._embedder = None
        self._state = self._catalog_state()

    def _catalog_state(self) -> tuple:
        return tuple(self.catalog.db.execute(
            "SELECT COUNT(*), MAX(updated_at) FROM tracks WHERE status = 'done'").fetchone())

    def refresh(self) -> None:
        """Forget what was read from the catalog if it changed since (a caption job adding tracks
        while the API serves): the next query re-syncs the indexes (incrementally)."""
        state = self._catalog_state()
        if state != self._state:
            self._audio_index = self._text_index = self._full_text = None
            self._state = state

    # -- indexes ----------------------------------------------------------------------------

    def audio_index(self) -> VectorIndex:
        """The audio index, in sync with the catalog's EMBEDDING_KIND vectors."""
        from musicllm.embeddings import EMBEDDING_KIND, Standardizer

        if self._audio_index is None:
            self._audio_index = self._synced(self.index_dir / "audio", EMBEDDING_KIND, standardise=True)
        index = self._audio_index
        index.standardizer = Standardizer.from_dict(index.meta["standardizer"]) if "standardizer" in index.meta else None
        return index

    def _synced(self, folder: Path, kind: str, standardise: bool = False) -> VectorIndex:
        """Load the index in `folder`, add the catalog's vectors it lacks, drop those gone."""
        from musicllm.embeddings import Standardizer

        stored = {r[0] for r in self.catalog.db.execute("SELECT track_id FROM embeddings WHERE kind = ?", (kind,))}
        index = None
        if not self.rebuild_index and (folder / "meta.json").is_file():
            try:
                index = VectorIndex.load(folder)
            except FileNotFoundError:
                index = None  # torn or foreign files: rebuilt below
        if index is not None and (index.meta.get("kind") != kind or len(index) == 0 or
                                  len(stored) > REFIT_GROWTH * max(index.meta.get("fitted_on", 0), 1)):
            index = None
        if index is None:
            ids, vectors = self.catalog.embeddings(kind)
            meta = {"kind": kind, "fitted_on": len(ids)}
            if standardise and len(ids) >= MIN_TRACKS_TO_STANDARDISE:
                meta["standardizer"] = Standardizer.fit(vectors).to_dict()
            index = VectorIndex(vectors.shape[1] if len(ids) else 1, folder, meta)
            self._add(index, ids, vectors)
            index.save()
            return index
        missing, gone = stored - set(index.ids.tolist()), set(index.ids.tolist()) - stored
        if missing or gone:
            index.remove(gone)
            ids, vectors = self.catalog.embeddings(kind)  # only the new rows are added
            keep = np.isin(ids, list(missing))
            self._add(index, ids[keep], vectors[keep])
            index.save()
        return index

    @staticmethod
    def _add(index: VectorIndex, ids: np.ndarray, vectors: np.ndarray) -> None:
        from musicllm.embeddings import Standardizer

        if len(ids) and "standardizer" in index.meta:
            vectors = Standardizer.from_dict(index.meta["standardizer"])(vectors)
        if len(ids) and index.dim != vectors.shape[1]:
            raise CatalogError(f"vectors of {vectors.shape[1]} dimensions, the index at {index.folder} has {index.dim}; "
                               "rebuild it (--rebuild-index)")
        index.add(ids, vectors)

    def documents(self, only: set[int] | None = None) -> tuple[list[int], list[str]]:
        """(track ids, search documents) of every done track, or of those in `only` (one read of
        the captions table)."""
        captions: dict[int, list[str]] = {}
        among = "" if only is None else " WHERE track_id IN (SELECT value FROM json_each(?))"
        for track_id, text in self.catalog.db.execute(
                f"SELECT track_id, text FROM captions{among} ORDER BY track_id, window < 0 DESC, window",
                () if only is None else (json.dumps(sorted(only)),)):
            captions.setdefault(track_id, []).append(text)
        ids, docs = [], []
        for track in self.catalog.tracks(status="done", ids=only):
            ids.append(track.id)
            docs.append(track_document(track.attributes, captions.get(track.id, [])))
        return ids, docs

    def text_index(self, progress: bool = False) -> VectorIndex:
        """The caption-embedding index; missing text embeddings are computed (with a progress bar
        when `progress`) and stored first."""
        if self._text_index is None:
            ids, docs = self.documents()
            have = {r[0] for r in self.catalog.db.execute(
                "SELECT track_id FROM embeddings WHERE kind = ?", (TextEmbedder.kind,))}
            todo = [(i, d) for i, d in zip(ids, docs) if i not in have]
            if todo:
                vectors = self.embedder().embed([d for _, d in todo], progress=progress)
                for (track_id, _), vector in zip(todo, vectors):
                    self.catalog.put_embedding(track_id, vector, TextEmbedder.kind)
            self._text_index = self._synced(self.index_dir / "text", TextEmbedder.kind)
        return self._text_index

    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = TextEmbedder()
        return self._embedder

    def full_text(self) -> FullTextIndex:
        """The catalog's FTS5 table, in sync with its done tracks: created when missing (a catalog
        made before it existed), the done tracks it lacks added, tracks no longer done removed. A
        done track's text never changes (Catalog.finish_track writes it once), so ids suffice;
        `rebuild_index` (--rebuild-index) indexes every done track again."""
        if self._full_text is None:
            try:
                index = FullTextIndex(self.catalog.db, TEXT_TABLE)
            except sqlite3.OperationalError as err:  # a Python whose SQLite lacks FTS5
                raise CatalogError(f"word search needs SQLite with FTS5, which this Python's sqlite3 "
                                   f"({sqlite3.sqlite_version}) lacks ({err}); use --text-method embedding") from err
            done = {r[0] for r in self.catalog.db.execute("SELECT id FROM tracks WHERE status = 'done'")}
            have = index.ids()
            todo = done if self.rebuild_index else done - have
            if todo or have - done:
                ids, docs = self.documents(todo)
                with self.catalog.transaction():  # another process syncing too: add replaces, remove forgives
                    index.remove(have - done)
                    index.add(ids, docs)
            self._full_text = index
        return self._full_text

    # -- queries ----------------------------------------------------------------------------

    def allowed(self, filters: Filters | None) -> set[int] | None:
        """Ids of done tracks passing `filters` (None when there are no filters)."""
        if filters is None or not filters.active():
            return None
        where, params = filters.sql()
        return {r[0] for r in self.catalog.db.execute(f"SELECT id FROM tracks WHERE {where}", params)}

    def text_ranking(self, query: str, allowed: set[int] | None, depth: int) -> list[int]:
        """Track ids best first for a text query (only tracks that match it at all)."""
        rankings = []
        if self.text_method in ("bm25", "hybrid"):
            rankings.append([i for i, _ in self.full_text().search(query, depth, allowed=allowed)])
        if self.text_method in ("embedding", "hybrid"):
            index = self.text_index()
            if len(index):
                found = index.search(self.embedder().embed([query])[0], depth, allowed=allowed)
                rankings.append([i for i, _ in found])
        return _fused_order(rankings)

    def search(self, text: str | None = None, audio: np.ndarray | None = None, filters: Filters | None = None,
               k: int = 10, exclude=()) -> list[Hit]:
        """Up to `k` tracks for any combination of a text query, an audio embedding (raw, as
        `musicllm.embeddings.audio_embedding` returns it) and attribute filters."""
        if k < 1:
            raise ValueError(f"k: must be at least 1, got {k}")
        self.refresh()
        allowed = self.allowed(filters)
        exclude = {int(e) for e in exclude}
        depth = max(100, 4 * k)  # each list deep enough that fusion can reorder it
        rankings, matched = [], {}
        if text and text.strip():
            ranking = [i for i in self.text_ranking(text, allowed, depth + len(exclude)) if i not in exclude]
            rankings.append(ranking)
            for rank, i in enumerate(ranking):
                matched.setdefault(i, {})["text_rank"] = rank + 1
        if audio is not None:
            index = self.audio_index()
            query = np.asarray(audio, dtype=np.float32)[None]
            query = index.standardizer(query)[0] if index.standardizer else query[0]
            found = index.search(query, depth, allowed=allowed, exclude=exclude) if len(index) else []
            rankings.append([i for i, _ in found])
            for i, cosine in found:
                matched.setdefault(i, {})["audio_cosine"] = round(cosine, 4)
        if not rankings:  # filters alone: every matching track, in catalog order
            if allowed is None:
                raise ValueError("search: give a text query, an audio clip or at least one attribute filter")
            ranking = [i for i in sorted(allowed) if i not in exclude]
            return [self.hit(i, 0.0, {}) for i in ranking[:k]]
        fused = reciprocal_rank_fusion(rankings)
        best = sorted(fused, key=lambda i: (-fused[i], i))[:k]
        return [self.hit(i, fused[i], matched.get(i, {})) for i in best]

    def same_file(self, file_hash: str | None) -> set[int]:
        """Ids of catalog tracks whose file has this sha256 (a query song that is in the catalog)."""
        if not file_hash:
            return set()
        return {r[0] for r in self.catalog.db.execute("SELECT id FROM tracks WHERE content_hash = ?", (file_hash,))}

    def hit(self, track_id: int, score: float, matched: dict) -> Hit:
        track = self.catalog.track(track_id)
        summary = next((c.text for c in self.catalog.captions(track_id) if c.window == -1), None)
        attributes = {name: track.attributes.get(name) for name in ATTRIBUTES}
        return Hit(track.id, track.name, track_title(track), round(score, 6), attributes, summary, matched)

    def close(self) -> None:
        self.catalog.close()


def _fused_order(rankings: list[list[int]]) -> list[int]:
    if len(rankings) == 1:
        return rankings[0]
    fused = reciprocal_rank_fusion(rankings)
    return sorted(fused, key=lambda i: (-fused[i], i))


def existing_catalog(path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise CatalogError(f"--catalog {path}: no such catalog (build one with musicllm caption)")
    return path


# ---- the command line -------------------------------------------------------------------------

def embed_audio_file(path: str | Path, checkpoint: str | Path | None = None) -> tuple[np.ndarray, str]:
    """(raw audio embedding, sha256 of the file) of an audio file, with the checkpoint's frozen
    encoder alone (default: the default model's; no LLM is loaded). AudioError names the file
    when it cannot be used."""
    from musicllm.embeddings import AudioEncoder, audio_embedding
    from musicllm.paths import default_model_dir
    from serve.catalog.store import file_hash

    checkpoint = Path(checkpoint or default_model_dir()).expanduser()
    if not (checkpoint / "config.json").is_file():
        raise CatalogError(f"--checkpoint {checkpoint}: no model there (musicllm quickstart builds the default); "
                           "audio queries need the encoder the catalog was embedded with")
    encoder = AudioEncoder.from_checkpoint(checkpoint)
    clip = encoder.processor.load_audio(str(path), name=Path(path).name)
    return audio_embedding(encoder, encoder.processor, clip), file_hash(path)


def print_hits(hits: list[Hit], as_json: bool) -> None:
    if as_json:
        for hit in hits:
            print(json.dumps(asdict(hit), ensure_ascii=False))
        return
    if not hits:
        print("no tracks found")
    for rank, hit in enumerate(hits, 1):
        a = hit.attributes
        facts = ", ".join(str(v) for v in (a.get("genre"), a.get("mood"),
                                           " ".join(x for x in (a.get("key"), a.get("mode")) if x) or None,
                                           a.get("time_signature"),
                                           f"{a['tempo_bpm']:.0f} BPM" if a.get("tempo_bpm") else None,
                                           "/".join(a.get("instruments") or []) or None) if v)
        print(f"{rank:2d}. {hit.title}  [{facts}]")
        if hit.summary:
            print(f"    {hit.summary}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musicllm search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("query", nargs="?", default=None, help="what to look for, in words (optional)")
    parser.add_argument("--catalog", required=True, help="the catalog database (musicllm caption --out)")
    parser.add_argument("--audio", help="an audio file: find tracks that sound like it")
    parser.add_argument("--checkpoint", help="model whose encoder embedded the catalog (default: the default model)")
    parser.add_argument("--k", type=int, default=10, help="how many tracks to show")
    parser.add_argument("--text-method", choices=TEXT_METHODS, default=DEFAULT_TEXT_METHOD,
                        help=f"how text queries are ranked (default {DEFAULT_TEXT_METHOD}: BM25 and MiniLM fused, "
                             "ranks best; bm25 needs no text model)")
    parser.add_argument("--rebuild-index", action="store_true", help="rebuild the vector indexes from the catalog")
    parser.add_argument("--json", action="store_true", help="one JSON object per track instead of text")
    add_filter_arguments(parser)
    args = parser.parse_args(argv)
    from musicllm.audio import AudioError

    try:
        filters = filters_from_args(args)
        searcher = Searcher(args.catalog, text_method=args.text_method, rebuild_index=args.rebuild_index)
    except (ValueError, CatalogError) as err:
        print(f"musicllm search: {err}", file=sys.stderr)
        return 2
    try:
        audio, digest = embed_audio_file(args.audio, args.checkpoint) if args.audio else (None, None)
        # "More like this" means other tracks: the query file itself is left out when it is in the catalog.
        hits = searcher.search(args.query, audio, filters, k=args.k, exclude=searcher.same_file(digest))
    except (ValueError, CatalogError, AudioError, TextEmbedderMissing) as err:
        print(f"musicllm search: {err}", file=sys.stderr)
        return 2
    finally:
        searcher.close()
    print_hits(hits, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
