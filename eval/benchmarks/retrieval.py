"""Catalog search: text and audio retrieval quality on the procedural corpus; vector index speed at 100k.

    python -m eval.benchmarks.retrieval                          # corpus synthesised under --work
    python -m eval.benchmarks.retrieval --corpus ~/.cache/musicllm/default/corpus --tracks 100000

Quality. Every clip of the corpus becomes a catalog document the way `serve.catalog.search` builds it:
captions (the offline template writer's caption and summary, a stand-in for the model's) plus
attribute words. The clip's genre and mood labels are HELD OUT: neither captions nor attributes
state them. Queries are phrased from held-out labels of sampled clips (mood, genre) combined with
stated ones (tempo word, mode, an instrument), e.g. "calm piano for studying" or "fast minor-key
rock"; a track is relevant when its labels satisfy every part of the query. Reported per method:
recall@10 (relevant found in the top 10 over min(10, relevant)) and nDCG@10 (binary gains):
- metadata-bm25: BM25 over the attribute keywords alone (what file tags give), the baseline;
- bm25: BM25 over captions + attributes;  embedding: all-MiniLM-L6-v2 cosine over the same text;
- hybrid: the two fused by reciprocal rank (serve.catalog.search's "hybrid").
BM25 is the catalog's own: serve.catalog.text_rank.FullTextIndex (SQLite FTS5 and its bm25()),
here an in-memory table of the documents.

Audio quality ("more like this", a held-out song's audio as the query): eval/benchmarks/retrieval_audio.py.

Speed. --tracks random unit vectors (424 dims: the default encoder's embedding size) through
serve.catalog.index.VectorIndex (FAISS flat when installed, numpy otherwise) and, for the path to 10M,
FAISS HNSW and IVF-PQ: build time, single-query latency (median and p95, one thread), recall@10
against exact search, and memory per track. Text speed: the FTS5 full-text table (FullTextIndex)
over --tracks short documents: build time and query latency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from eval.benchmarks import ndcg, write_results

DEFAULT_OUT = "eval/benchmarks/results/retrieval.json"
HELD_OUT = ("genre", "mood")
MOOD_WORDS = {"calm": ["calm", "relaxing", "peaceful"], "dreamy": ["dreamy", "floating"],
              "sad": ["sad", "melancholic"], "dark": ["dark", "brooding"], "tense": ["tense", "intense"],
              "happy": ["happy", "cheerful"], "playful": ["playful", "bouncy"], "energetic": ["energetic", "upbeat"]}
PURPOSES = ["", " for studying", " to relax to", " for a party", " for a road trip"]
DEPTH = 100  # how deep each ranking goes before fusion (serve.catalog.search asks for at least 100)


def corpus_manifest(corpus: Path | None, work: Path, clips: int) -> tuple[Path, list[dict]]:
    """(corpus folder, its clip records); a corpus is synthesised under `work` when none is given."""
    from musicllm.jsonl import read_jsonl

    if corpus is None:
        from data_gen.procedural.corpus import main as synth

        corpus = work / "corpus"
        synth(["--out", str(corpus), "--clips", str(clips), "--min-seconds", "5", "--max-seconds", "8",
               "--long-every", "0", "--workers", "1"])
    return Path(corpus), list(read_jsonl(Path(corpus) / "manifest.jsonl"))


def documents(clips: list[dict]) -> tuple[list[str], list[str]]:
    """(caption documents, metadata keyword documents), held-out labels removed from both."""
    from data_gen.writers.template import TemplateWriter
    from serve.catalog.search import track_document

    writer, provenance = TemplateWriter(), {"writer": "template", "model": "rules", "prompt_version": "1", "seed": 0}
    full, meta = [], []
    for clip in clips:
        stated = {k: v for k, v in clip["labels"].items() if k not in HELD_OUT}
        seen = dict(clip, labels=stated)
        captions = [r["messages"][1]["content"] for task in ("caption", "summary")
                    if isinstance(r := writer.write_one(seen, task, 0, provenance), dict)]
        attributes = {k: stated.get(k) for k in ("tempo_bpm", "key", "mode", "time_signature", "instruments")}
        full.append(track_document(attributes, captions))
        meta.append(track_document(attributes, []))
    return full, meta


def make_queries(clips: list[dict], count: int, seed: int = 0) -> list[dict]:
    """Queries phrased from sampled clips' labels; `relevant` = indexes of clips matching all parts."""
    rng = random.Random(seed)
    parts_of = {
        "mood": lambda l: (rng.choice(MOOD_WORDS[l["mood"]]), lambda m: m["mood"] == l["mood"]),
        "genre": lambda l: (l["genre"], lambda m: m["genre"] == l["genre"]),
        "tempo": lambda l: ("slow", lambda m: m["tempo_bpm"] < 80) if l["tempo_bpm"] < 80 else
                           ("fast", lambda m: m["tempo_bpm"] >= 140) if l["tempo_bpm"] >= 140 else None,
        "mode": lambda l: (f"{l['mode']}-key", lambda m: m["mode"] == l["mode"]),
        "instrument": lambda l: (lambda name: (name, lambda m: name in m["instruments"]))(rng.choice(l["instruments"])),
    }
    shapes = [("mood", "instrument"), ("tempo", "mode", "genre"), ("mood", "genre"), ("genre", "instrument"),
              ("mood",), ("genre",), ("tempo", "instrument"), ("mood", "mode", "instrument")]
    queries, seen = [], set()
    for attempt in range(count * 20):
        if len(queries) >= count:
            break
        labels = clips[rng.randrange(len(clips))]["labels"]
        parts = [parts_of[name](labels) for name in shapes[attempt % len(shapes)]]
        if None in parts:
            continue
        words = [w for w, _ in parts]
        ordered = words[:-1] + [words[-1] if words[-1] in labels["instruments"] else f"{words[-1]} music"]
        text = " ".join(ordered) + rng.choice(PURPOSES)
        relevant = [i for i, clip in enumerate(clips) if all(test(clip["labels"]) for _, test in parts)]
        if text in seen or not 2 <= len(relevant) <= len(clips) // 4:
            continue
        seen.add(text)
        queries.append({"text": text, "relevant": relevant, "shape": "+".join(shapes[attempt % len(shapes)])})
    return queries


def metrics(ranking: list[int], relevant: set[int], k: int = 10) -> tuple[float, float]:
    hits = [1.0 if i in relevant else 0.0 for i in ranking[:k]]
    return sum(hits) / min(k, len(relevant)), ndcg(hits, [1.0] * len(relevant), k)


def quality(clips: list[dict], n_queries: int) -> dict:
    from serve.catalog.text_rank import FullTextIndex, TextEmbedder, reciprocal_rank_fusion

    full, meta = documents(clips)
    queries = make_queries(clips, n_queries)
    embedder = TextEmbedder()
    started = time.perf_counter()
    doc_vectors = embedder.embed(full)
    embed_seconds = time.perf_counter() - started
    bm25_full, bm25_meta = FullTextIndex(), FullTextIndex()
    bm25_full.add(range(len(full)), full)
    bm25_meta.add(range(len(meta)), meta)
    methods = {
        "metadata-bm25": lambda q, v: [i for i, _ in bm25_meta.search(q, DEPTH)],
        "bm25": lambda q, v: [i for i, _ in bm25_full.search(q, DEPTH)],
        "embedding": lambda q, v: [int(i) for i in np.argsort(-(doc_vectors @ v), kind="stable")],
    }
    methods["hybrid"] = lambda q, v: [i for i, _ in sorted(reciprocal_rank_fusion(
        [methods["bm25"](q, v), methods["embedding"](q, v)[:DEPTH]]).items(), key=lambda x: (-x[1], x[0]))]
    query_vectors = embedder.embed([q["text"] for q in queries])
    results = {}
    for name, rank in methods.items():
        scores = [metrics(rank(q["text"], v), set(q["relevant"])) for q, v in zip(queries, query_vectors)]
        results[name] = {"recall@10": round(float(np.mean([s[0] for s in scores])), 4),
                         "ndcg@10": round(float(np.mean([s[1] for s in scores])), 4),
                         "ndcg@10_by_query_shape": {shape: round(float(np.mean(
                             [s[1] for s, q in zip(scores, queries) if q["shape"] == shape])), 3)
                             for shape in sorted({q["shape"] for q in queries})}}
    return {"tracks": len(clips), "queries": len(queries), "held_out_labels": list(HELD_OUT),
            "median_relevant_per_query": statistics.median(len(q["relevant"]) for q in queries),
            "caption_embedding_seconds_per_track": round(embed_seconds / len(full), 5),
            "methods": results, "example_queries": [q["text"] for q in queries[:12]]}


def _latencies(search, queries: np.ndarray) -> dict:
    times = []
    for q in queries:
        started = time.perf_counter()
        search(q)
        times.append(time.perf_counter() - started)
    times.sort()
    return {"median_ms": round(1000 * statistics.median(times), 3),
            "p95_ms": round(1000 * times[int(0.95 * (len(times) - 1))], 3)}


def _faiss_options(faiss, measure, vectors: np.ndarray, rng, report: dict) -> None:
    """HNSW and IVF-PQ (with and without an exact re-rank), the options for 10M tracks."""
    tracks, dim = vectors.shape

    def hnsw():
        ix = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        ix.hnsw.efConstruction = 40
        ix.add(vectors)
        ix.hnsw.efSearch = 64
        return ix

    def ivfpq():
        quantizer = faiss.IndexFlatIP(dim)
        ix = faiss.IndexIVFPQ(quantizer, dim, 1024, 53, 8, faiss.METRIC_INNER_PRODUCT)  # 424 = 53 * 8
        ix.train(vectors[rng.choice(tracks, min(tracks, 50_000), replace=False)])
        ix.add(vectors)
        ix.nprobe = 64
        return ix

    def rerank(ix, q, depth=200):  # IVF-PQ candidates, re-scored exactly (the 10M recipe)
        _, cand = ix.search(q[None], depth)
        cand = cand[0][cand[0] >= 0]
        return cand[np.argsort(-(vectors[cand] @ q))][:10].tolist()

    measure("faiss HNSW32 (efSearch 64)", hnsw, lambda ix, q: ix.search(q[None], 10)[1][0].tolist(), 4 * dim + 8 + 32 * 8)
    trained = {}  # the same trained IVF-PQ index, searched with and without the exact re-rank
    measure("faiss IVF1024,PQ53 (nprobe 64) + exact re-rank of 200", lambda: trained.setdefault("ix", ivfpq()), rerank, 53 + 8)
    measure("faiss IVF1024,PQ53 (nprobe 64)", lambda: trained["ix"], lambda ix, q: ix.search(q[None], 10)[1][0].tolist(),
            53 + 8)
    report["options"]["faiss IVF1024,PQ53 (nprobe 64)"]["build_s"] = report["options"][
        "faiss IVF1024,PQ53 (nprobe 64) + exact re-rank of 200"]["build_s"]


def speed(tracks: int, dim: int, n_queries: int, seed: int = 0) -> dict:
    """Build time, latency and recall@10 of the vector index options at `tracks` vectors."""
    from serve.catalog.index import VectorIndex, faiss_module, normalise

    faiss = faiss_module()
    if faiss is not None:
        faiss.omp_set_num_threads(1)  # every option on one thread, like the numpy path
    rng = np.random.default_rng(seed)
    # Clustered vectors (like real embeddings, unlike uniform noise) so approximate indexes are tested fairly.
    centres = normalise(rng.standard_normal((256, dim)))
    vectors = normalise(centres[rng.integers(0, 256, tracks)] + 0.6 * normalise(rng.standard_normal((tracks, dim))))
    queries = normalise(centres[rng.integers(0, 256, n_queries)] + 0.6 * normalise(rng.standard_normal((n_queries, dim))))
    ids = np.arange(tracks, dtype=np.int64)
    report = {"tracks": tracks, "dim": dim, "queries": n_queries, "options": {}}
    exact = [set(np.argsort(-(vectors @ q))[:10].tolist()) for q in queries]

    def measure(name, build, search, memory_bytes=None):
        started = time.perf_counter()
        built = build()
        build_s = time.perf_counter() - started
        found = [search(built, q) for q in queries]
        recall = statistics.mean(len(set(f) & e) / 10 for f, e in zip(found, exact))
        report["options"][name] = {"build_s": round(build_s, 3), **_latencies(lambda q: search(built, q), queries),
                                   "recall@10_vs_exact": round(recall, 4),
                                   "bytes_per_track": memory_bytes}

    def index_build():
        index = VectorIndex(dim)
        index.add(ids, vectors)
        return index

    measure("VectorIndex (serve.catalog.index, exact)", index_build,
            lambda ix, q: [i for i, _ in ix.search(q, 10)], 4 * dim + 8)
    allowed = ids[rng.random(tracks) < 0.1]  # a filter that keeps 10% of the catalog
    with tempfile.TemporaryDirectory() as folder:
        index = index_build()
        started = time.perf_counter()
        index.save(folder)
        save_s = time.perf_counter() - started
        started = time.perf_counter()
        loaded = VectorIndex.load(folder)
        loaded.search(queries[0], 10)
        report["index_save_s"], report["index_load_and_first_query_s"] = round(save_s, 3), round(
            time.perf_counter() - started, 3)
        report["options"]["VectorIndex (serve.catalog.index, exact)"]["filtered_10pct_median_ms"] = _latencies(
            lambda q: loaded.search(q, 10, allowed=allowed), queries[:20])["median_ms"]
        started = time.perf_counter()
        loaded.add(np.arange(tracks, tracks + 100), normalise(rng.standard_normal((100, dim))))
        loaded.save()
        report["incremental_add_100_and_save_s"] = round(time.perf_counter() - started, 3)
    if faiss is not None:
        _faiss_options(faiss, measure, vectors, rng, report)
    return report


def text_speed(tracks: int, n_queries: int = 20) -> dict:
    """Build time and query latency of the FTS5 full-text table over `tracks` short documents."""
    from serve.catalog.text_rank import FullTextIndex

    docs = ["A calm piano piece in C major at 72 BPM, soft and slow, three beats to the bar.",
            "Fast distortion guitar and drums in E minor at 168 BPM, loud, four beats to the bar."] * (tracks // 2)
    started = time.perf_counter()
    index = FullTextIndex()
    index.add(range(len(docs)), docs)
    build_s = time.perf_counter() - started
    # Half the documents match the query, and every match is scored: a heavy case, not a typical one.
    query = _latencies(lambda q: index.search(q, DEPTH), ["calm piano for studying"] * n_queries)
    return {"tracks": len(docs), "engine": "SQLite FTS5 bm25()", "build_s": round(build_s, 3),
            "query_median_ms": query["median_ms"], "query_p95_ms": query["p95_ms"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.benchmarks.retrieval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=None,
                        help="a procedural corpus folder with manifest.jsonl (default: synthesise one under --work)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--clips", type=int, default=320, help="clips to synthesise when no --corpus is given")
    parser.add_argument("--queries", type=int, default=120, help="text queries built from held-out labels")
    parser.add_argument("--tracks", type=int, default=100_000, help="synthetic vectors (speed) and documents (text-speed)")
    parser.add_argument("--dim", type=int, default=424, help="vector size for the speed part")
    parser.add_argument("--speed-queries", type=int, default=200, help="queries timed per index option")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the text embedding model)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="model whose encoder embeds the audio (default: an untrained tiny model: the "
                             "embedding uses only the weight-free features encoder)")
    parser.add_argument("--parts", nargs="+", choices=["quality", "audio", "speed", "text-speed"],
                        default=["quality", "audio", "speed", "text-speed"],
                        help="what to measure; a part not measured keeps its numbers from an existing --out file")
    parser.add_argument("--out", default=DEFAULT_OUT, help="where the JSON results go")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs"
    with tempfile.TemporaryDirectory(prefix="musicllm-retrieval-") as scratch:
        if {"quality", "audio"} & set(args.parts):
            corpus, clips = corpus_manifest(args.corpus, args.work or Path(scratch), args.clips)
        if "quality" in args.parts:
            report["quality"] = quality(clips, args.queries)
            print(json.dumps(report["quality"]["methods"], indent=1))
        if "audio" in args.parts:
            from eval.benchmarks.retrieval_audio import audio_quality

            report["audio_quality"] = audio_quality(clips, corpus, args.checkpoint)
            print(json.dumps(report["audio_quality"]["methods"], indent=1))
    if "speed" in args.parts:
        report["speed"] = speed(args.tracks, args.dim, args.speed_queries)
    if "text-speed" in args.parts:
        report["text_speed"] = text_speed(args.tracks)
    write_results(report, out)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
