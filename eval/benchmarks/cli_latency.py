"""Cold latency of the catalog commands, end to end, and their warm in-process query latency.

    python -m eval.benchmarks.cli_latency                     # default model if built, else a stand-in
    python -m eval.benchmarks.cli_latency --catalog music.db --checkpoint ~/.cache/musicllm/default/model
    python -m eval.benchmarks.cli_latency --tracks 64 --repeats 5 --out /tmp/cli_latency.json

"Cold" is what a user waits for at the terminal: a fresh `python -m musicllm.cli ...` process
(interpreter start, imports, model loading, the query, printing), timed from outside, --repeats
times, the median reported (other work on a shared machine moves single runs a lot). Forms:
  search text (hybrid, the default), search text --text-method bm25, search --audio,
  recommend --audio (LLM reasons), recommend --audio --no-explain, recommend text alone (a
  description: --no-explain is search only; with the LLM's reasons), recommend --audio --url with
  and without reasons (a gateway with the catalog, started here and warmed up first: the command
  is cold, the server not).
For scale: `python -c pass` and `python -c "import torch"`. Then where `recommend --audio` spends
its time, stage by stage, in one fresh process; and warm queries in this process (a `Searcher`
kept open, as in the API): median milliseconds per text, BM25, audio and recommend-candidates
query.

Without --catalog, a catalog of --tracks synthetic 10 s clips is captioned here first (`musicllm
caption --engine transformers`; with the random stand-in model the captions are noise, which
does not change how long a query takes). Its one-off text-embedding index build is timed apart.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eval.benchmarks import benchmark_parser, choose_checkpoint, write_results

DEFAULT_OUT = "eval/benchmarks/results/cli_latency.json"
TEXT_QUERY = "calm piano for studying"
# One fresh process: where `musicllm recommend --audio` (with reasons) spends its time.
STAGES = """
import json, sys, time
marks, last = {}, time.perf_counter()
def mark(name):
    global last
    now = time.perf_counter(); marks[name] = round(now - last, 3); last = now
import torch; torch.set_num_threads(1); mark("import torch")
from musicllm.engines import TransformersEngine; mark("import transformers, peft, musicllm model code")
engine = TransformersEngine.from_checkpoint(sys.argv[1]); mark("load the checkpoint (encoder, projector, LLM)")
from musicllm.embeddings import audio_embedding
from serve.catalog.recommend import Recommender
from serve.catalog.search import Searcher
clip = engine.load_audio(sys.argv[3]); vector = audio_embedding(engine.model, engine.processor, clip)
mark("decode the song and embed it")
recommender = Recommender(Searcher(sys.argv[2]), engine)
hits = recommender.candidates(vector, k=5); mark("open the catalog, search it")
texts = [c.text for c in engine.complete_batch(recommender.requests(hits, clip))]; mark("LLM reasons for 5 picks")
engine.close()
print(json.dumps(marks))
"""


def cold(command: list[str], repeats: int, env: dict) -> dict:
    """Median wall seconds of a fresh process running `command` (after one untimed run that
    fills the OS file cache, as any second use would find it), and its median CPU seconds (user +
    system): on a machine others share, wall time grows with their load, CPU time much less, and
    on an idle machine a one-thread command's wall time is about its CPU time."""
    subprocess.run(command, env=env, capture_output=True, timeout=600)
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return {"seconds": round(statistics.median(walls), 3), "cpu_seconds": round(statistics.median(cpus), 3),
            "all": [round(t, 3) for t in walls]}


def build_catalog(work: Path, checkpoint: Path, tracks: int, sample_rate: int) -> Path:
    """`musicllm caption` over `tracks` synthetic 10 s clips (a groove and chords, varied)."""
    import numpy as np
    import soundfile as sf

    from eval.benchmarks.features_encoder import synth
    from serve.catalog.caption import main as caption

    folder = work / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    n, t = 10 * sample_rate, np.arange(10 * sample_rate) / sample_rate
    for i in range(tracks):
        chord = sum(np.sin(2 * np.pi * f * (1 + i / tracks) * t) for f in (220.0, 277.0, 330.0)) * 0.1
        clip = synth(i * n, n, sample_rate) if i % 2 else chord.astype(np.float32)
        sf.write(folder / f"track{i:04d}.wav", clip, sample_rate)
    out = work / "music.db"
    if caption([str(folder), "--out", str(out), "--checkpoint", str(checkpoint), "--engine", "transformers",
                "--max-tokens", "24", "--no-analysis", "--threads", "1"]):
        raise RuntimeError("musicllm caption failed")
    return out


def warm_queries(catalog: Path, checkpoint: Path, song: Path, repeats: int) -> dict:
    """Median milliseconds per query with a Searcher (and the encoder) already loaded."""
    from musicllm.embeddings import AudioEncoder, audio_embedding
    from serve.catalog.recommend import Recommender
    from serve.catalog.search import Searcher

    encoder = AudioEncoder.from_checkpoint(checkpoint)
    clip = encoder.processor.load_audio(str(song))
    searcher = Searcher(catalog)
    vector = audio_embedding(encoder, encoder.processor, clip)
    forms = {
        "text_hybrid": lambda: searcher.search(TEXT_QUERY, k=10),
        "audio_embed_song": lambda: audio_embedding(encoder, encoder.processor, clip),
        "audio_search": lambda: searcher.search(audio=vector, k=10),
        "recommend_candidates": lambda: Recommender(searcher).candidates(vector, k=5),
    }
    report = {}
    for name, query in forms.items():
        query()  # first call: indexes loaded
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            query()
            times.append(time.perf_counter() - started)
        report[name] = round(1000 * statistics.median(times), 2)
    searcher.text_method = "bm25"
    searcher.search(TEXT_QUERY, k=10)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        searcher.search(TEXT_QUERY, k=10)
        times.append(time.perf_counter() - started)
    report["text_bm25"] = round(1000 * statistics.median(times), 2)
    searcher.close()
    return report


def cold_forms(catalog: Path, checkpoint: Path, song: Path, gateway: str, repeats: int, env: dict) -> dict:
    cli = [sys.executable, "-m", "musicllm.cli"]
    at = ["--catalog", str(catalog)]
    forms = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "search TEXT (hybrid, default)": cli + ["search", TEXT_QUERY, *at],
        "search TEXT --text-method bm25": cli + ["search", TEXT_QUERY, *at, "--text-method", "bm25"],
        "search --audio": cli + ["search", "--audio", str(song), *at, "--checkpoint", str(checkpoint)],
        "recommend --audio (LLM reasons)": cli + ["recommend", "--audio", str(song), *at, "--checkpoint", str(checkpoint)],
        "recommend --audio --no-explain": cli + ["recommend", "--audio", str(song), *at, "--checkpoint", str(checkpoint),
                                                 "--no-explain"],
        "recommend TEXT --no-explain": cli + ["recommend", TEXT_QUERY, *at, "--no-explain"],  # search only
        "recommend TEXT (LLM reasons)": cli + ["recommend", TEXT_QUERY, *at, "--checkpoint", str(checkpoint)],
        "recommend --audio --url (warm gateway)": cli + ["recommend", "--audio", str(song), "--url", gateway],
        "recommend --audio --url --no-explain": cli + ["recommend", "--audio", str(song), "--url", gateway,
                                                       "--no-explain"],
    }
    report = {}
    for name, command in forms.items():
        report[name] = cold(command, repeats, env)
        print(f"  {name:42s} {report[name]['seconds']:6.2f} s wall  {report[name]['cpu_seconds']:6.2f} s CPU", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, DEFAULT_OUT)
    parser.add_argument("--catalog", type=Path, default=None,
                        help="an existing catalog made with --checkpoint's encoder (default: build one here)")
    parser.add_argument("--tracks", type=int, default=64, help="clips in the catalog built here")
    parser.add_argument("--repeats", type=int, default=3, help="timed cold runs per form; the median is reported")
    parser.add_argument("--warm-repeats", type=int, default=50, help="timed warm queries per form")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")

    import soundfile as sf
    import torch

    from eval.benchmarks.features_encoder import synth
    from musicllm.engines import TransformersEngine
    from serve.gateway.api import create_app, serve_in_thread
    from serve.catalog.store import Catalog
    from serve.catalog.search import Searcher

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="musicllm-cli-latency-") as tmp:
        work = Path(tmp)
        checkpoint, model = choose_checkpoint(args.checkpoint, work)
        engine = TransformersEngine.from_checkpoint(checkpoint)
        song = work / "song.wav"
        sf.write(song, synth(0, 10 * engine.sample_rate, engine.sample_rate), engine.sample_rate)
        catalog = args.catalog.expanduser() if args.catalog else build_catalog(work, checkpoint, args.tracks,
                                                                                engine.sample_rate)
        started = time.perf_counter()
        searcher = Searcher(catalog)
        searcher.search(TEXT_QUERY, k=1)  # one-off: text embeddings of every track stored, indexes written
        searcher.close()
        index_build = round(time.perf_counter() - started, 2)
        print(f"checkpoint {checkpoint} ({model}); catalog {catalog}; first search (index build) {index_build} s")
        try:
            with serve_in_thread(create_app(engine, catalog=catalog)) as url:
                print("cold commands (fresh process each, median):", flush=True)
                forms = cold_forms(catalog, checkpoint, song, url + "/v1", args.repeats, env)
        finally:
            engine.close()
        stages = subprocess.run([sys.executable, "-c", STAGES, str(checkpoint), str(catalog), str(song)], env=env,
                                capture_output=True, text=True, timeout=600)
        breakdown = json.loads(stages.stdout.strip().splitlines()[-1]) if stages.returncode == 0 else stages.stderr
        print("recommend --audio, stage by stage:", breakdown)
        warm = warm_queries(catalog, checkpoint, song, args.warm_repeats)
        print("warm, in process (ms):", warm)
        with Catalog(catalog) as opened:
            tracks = opened.counts()["done"]
    write_results({
        "benchmark": "cli_latency", "model": model, "checkpoint": str(checkpoint), "catalog_tracks": tracks,
        "text_query": TEXT_QUERY, "repeats": args.repeats, "threads": 1, "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()), "machine": platform.machine(), "python": platform.python_version(),
        "torch": torch.__version__, "first_search_index_build_s": index_build,
        "cold_seconds": forms, "recommend_audio_stages_s": breakdown, "warm_ms": warm,
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
