"""Audio retrieval quality ("more like this"): a held-out song's clip as the query, on the procedural corpus.

    python -m eval.benchmarks.retrieval --parts audio        # this part only; the rest of the JSON is kept

The corpus's song families are split: 20% of the families are held out and each of their clips
is a query; the catalog holds the other families' clips, so no excerpt of the query's own song
can be found. The query clip's audio embedding
(musicllm.embeddings, the frozen encoder) goes through serve.catalog.search.Searcher (the catalog's
standardised exact index, the path `musicllm search --audio` takes). Relevance is graded by the
labels a catalog track shares with the query: one point each for the same style (genre), the
same key and mode, the same tempo band (<80, 80-110, 110-140, >=140 BPM) and similar
instrumentation (instrument-set Jaccard >= 0.5), so gains run 0-4. nDCG@10 uses these gains;
recall@10 counts tracks with a gain >= 2 as relevant. Baselines: random order (the mean of 20
shuffles) and a raw log-mel embedding (64-band log-mel mean and standard deviation over time,
standardised the same way). "+ filter": the same audio query with attribute filters a user would
add from the song (its mode and tempo band). Per method also the share of the top 10 agreeing
with the query on each facet.

This module knows the corpus's labels and the catalog's search API; eval.benchmarks.retrieval
runs it and writes the results.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import numpy as np

from eval.benchmarks import ndcg


TEMPO_BANDS = (80, 110, 140)  # BPM edges of the tempo bands an audio match should share
FACETS = ("style", "key", "tempo", "instruments")


def facets_shared(query: dict, other: dict) -> dict[str, bool]:
    """Which of FACETS two clips' labels share (the graded relevance of an audio query)."""
    a, b = set(query.get("instruments") or []), set(other.get("instruments") or [])
    return {"style": query["genre"] == other["genre"],
            "key": (query["key"], query["mode"]) == (other["key"], other["mode"]),
            "tempo": int(np.searchsorted(TEMPO_BANDS, query["tempo_bpm"], side="right")) ==
                     int(np.searchsorted(TEMPO_BANDS, other["tempo_bpm"], side="right")),
            "instruments": bool(a | b) and len(a & b) / len(a | b) >= 0.5}


def graded(ranking: list[int], gains: np.ndarray, k: int = 10) -> tuple[float, float]:
    """(recall@k with gain >= 2 relevant, nDCG@k with the graded gains) of catalog positions."""
    relevant = int((gains >= 2).sum())
    top = gains[ranking[:k]]
    recall = float((top >= 2).sum()) / min(k, relevant) if relevant else 0.0
    return recall, ndcg(top, gains, k)


def logmel_vectors(clips: list[np.ndarray], rate: int) -> np.ndarray:
    """The raw baseline: 64-band log-mel mean | std over time per clip (before standardising)."""
    import librosa

    rows = []
    for clip in clips:
        mel = np.log(librosa.feature.melspectrogram(y=clip, sr=rate, n_mels=64) + 1e-6)
        rows.append(np.concatenate([mel.mean(1), mel.std(1)]))
    return np.stack(rows).astype(np.float32)


def audio_quality(clips: list[dict], corpus: Path, checkpoint: Path | None, seed: int = 0) -> dict:
    """Query by a held-out family's clip: audio embedding vs log-mel vs random (see the docstring)."""
    from musicllm.embeddings import EMBEDDING_KIND, Standardizer, audio_embeddings
    from serve.catalog.store import Catalog, TrackSpec
    from serve.catalog.filters import Filters
    from serve.catalog.search import Searcher

    model, processor = _embedding_model(checkpoint)
    rng = random.Random(seed)
    families = sorted({c["family"] for c in clips})
    held_out = set(rng.sample(families, max(2, len(families) // 5)))
    catalog_clips = [c for c in clips if c["family"] not in held_out]
    queries = [c for c in clips if c["family"] in held_out]
    audio = {c["id"]: processor.load_audio(str(corpus / c["audio"])) for c in catalog_clips + queries}
    started = time.perf_counter()
    vectors = {c["id"]: v for c, v in zip(catalog_clips + queries, audio_embeddings(
        model, processor, [audio[c["id"]] for c in catalog_clips + queries]))}
    embed_s = (time.perf_counter() - started) / len(vectors)
    mel = logmel_vectors([audio[c["id"]] for c in catalog_clips + queries], processor.sample_rate)
    standardise = Standardizer.fit(mel[:len(catalog_clips)])
    mel_catalog, mel_queries = standardise(mel[:len(catalog_clips)]), standardise(mel[len(catalog_clips):])
    rankings: dict[str, list[list[int]]] = {"random (mean of 20 shuffles)": [], "log-mel mean+std": [],
                                            "audio embedding": [], "audio embedding + filter (mode, tempo band)": []}
    with tempfile.TemporaryDirectory(prefix="musicllm-audio-retrieval-") as folder:
        catalog = Catalog(Path(folder) / "catalog.db")
        catalog.add_tracks([TrackSpec(c["id"], str(corpus / c["audio"]), labels=c["labels"]) for c in catalog_clips])
        position = {t.id: n for n, t in enumerate(catalog.tracks())}  # add order = catalog_clips order
        for track in catalog.tracks():
            catalog.finish_track(track.id, captions=[], embedding=vectors[track.name], embedding_kind=EMBEDDING_KIND)
        searcher = Searcher(catalog)
        for n, query in enumerate(queries):
            labels, band = query["labels"], np.searchsorted(TEMPO_BANDS, query["labels"]["tempo_bpm"], side="right")
            edges = (0, *TEMPO_BANDS, 400)
            filters = Filters(mode=labels["mode"], tempo=(edges[band], edges[band + 1] - 0.001))
            for name, chosen in (("audio embedding", None), ("audio embedding + filter (mode, tempo band)", filters)):
                hits = searcher.search(audio=vectors[query["id"]], filters=chosen, k=10)
                rankings[name].append([position[h.track_id] for h in hits])
            rankings["log-mel mean+std"].append(np.argsort(-(mel_catalog @ mel_queries[n]), kind="stable")[:10].tolist())
        searcher.close()
    results = {}
    for name, ranked in rankings.items():
        scores, agree = [], {facet: [] for facet in FACETS}
        for n, query in enumerate(queries):
            shared = [facets_shared(query["labels"], c["labels"]) for c in catalog_clips]
            gains = np.array([sum(s.values()) for s in shared], dtype=float)
            orders = [rng.sample(range(len(catalog_clips)), 10) for _ in range(20)] if name.startswith("random") \
                else [ranked[n]]
            for order in orders:
                scores.append(graded(order, gains))
                for facet in FACETS:
                    agree[facet].append(np.mean([shared[i][facet] for i in order]) if order else 0.0)
        results[name] = {"recall@10": round(float(np.mean([s[0] for s in scores])), 4),
                         "ndcg@10": round(float(np.mean([s[1] for s in scores])), 4),
                         "top10_share_agreeing": {f: round(float(np.mean(v)), 3) for f, v in agree.items()}}
    return {"catalog_tracks": len(catalog_clips), "queries": len(queries), "held_out_families": len(held_out),
            "relevance": "gain = shared facets of 4 (style, key+mode, tempo band, instruments Jaccard>=0.5); "
                         "recall@10 counts gain>=2 as relevant; nDCG@10 graded",
            "embedding": EMBEDDING_KIND, "encoder": type(model.audio_tower).__name__,
            "embedding_seconds_per_clip": round(embed_s, 4), "methods": results}


def _embedding_model(checkpoint: Path | None):
    """The checkpoint's model, or (none given) an untrained tiny model: the audio embedding uses
    only the frozen encoder, the weight-free features encoder of the default preset."""
    if checkpoint is not None:
        from musicllm.checkpoint import load_checkpoint

        return load_checkpoint(checkpoint)
    from musicllm.tiny import build_tiny

    return build_tiny(["a calm piano piece", "fast loud rock with drums"], vocab_size=300)
