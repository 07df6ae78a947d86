"""Speed of the procedural corpus: clips per wall second and x realtime, for 1 and 2 workers.

    python -m eval.benchmarks.render_speed                            # 20 clips of 20 s, 1 and 2 workers
    python -m eval.benchmarks.render_speed --clips 40 --workers 1 2 --seconds 10 --repeats 5
    python -m eval.benchmarks.render_speed --out eval/benchmarks/results/render_speed.json

Two measurements:
  - `in_process`: compose + render of each clip in this process, the soundfont already loaded:
    the synthesizer's own speed, without files or processes.
  - `corpus`: the real `musicllm data synth` command into a temporary folder, for each worker
    count: worker start-up and soundfont loading, composing, rendering, FLAC encoding and the
    manifest, i.e. what a user waits for. Clips are the same (same seed) in every run.

x realtime is seconds of audio written (music plus release tail) per wall second. Each
measurement runs --repeats times and the fastest run is reported (all wall times are saved):
other work on the same cores only ever slows a run down, and two workers only help where a
second core is free, so the 1-minute load average before the runs is saved too.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from eval.benchmarks import write_results

DEFAULT_OUT = "eval/benchmarks/results/render_speed.json"


def in_process(clips: int, seconds: float) -> dict:
    from data_gen.procedural import render
    from data_gen.procedural.composer import compose

    render.soundfont()  # loaded before the clock starts, as a worker's initializer does
    audio_seconds, started = 0.0, time.perf_counter()
    for seed in range(clips):
        song = compose(seed, seconds=seconds)
        audio_seconds += len(render.render(song.midi, song.seconds)) / render.SAMPLE_RATE
    wall = time.perf_counter() - started
    return {"clips": clips, "wall_s": round(wall, 3), "clips_per_s": round(clips / wall, 2),
            "audio_s": round(audio_seconds, 1), "x_realtime": round(audio_seconds / wall, 1)}


def best_of(repeats: int, measure) -> dict:
    """The fastest of `repeats` runs of `measure()`, with every run's wall time."""
    load = os.getloadavg()[0]
    runs = [measure() for _ in range(repeats)]
    best = min(runs, key=lambda r: r["wall_s"])
    return {**best, "all_wall_s": [r["wall_s"] for r in runs], "load_average_before": round(load, 2)}


def corpus(clips: int, seconds: float, workers: int) -> dict:
    from data_gen import formats
    from data_gen.procedural.corpus import main

    with tempfile.TemporaryDirectory() as folder:
        argv = ["--out", folder, "--clips", str(clips), "--min-seconds", str(seconds),
                "--max-seconds", str(seconds), "--long-every", "0", "--workers", str(workers)]
        started = time.perf_counter()
        code = main(argv)
        wall = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"musicllm data synth exited with {code}")
        records = list(formats.read_jsonl(Path(folder) / "manifest.jsonl"))
        audio_seconds = sum(r["duration"] for r in records)
        megabytes = sum(f.stat().st_size for f in (Path(folder) / "clips").iterdir()) / 2**20
    return {"workers": workers, "clips": len(records), "wall_s": round(wall, 3),
            "clips_per_s": round(len(records) / wall, 2), "audio_s": round(audio_seconds, 1),
            "x_realtime": round(audio_seconds / wall, 1), "flac_mib": round(megabytes, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=20, help="clips per run (default 20)")
    p.add_argument("--seconds", type=float, default=20.0, help="music per clip in seconds (default 20)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time (default 1 2)")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement; the fastest counts (default 3)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from data_gen.procedural import render

    result = {
        "benchmark": "render_speed",
        "clip_seconds": args.seconds,
        "release_seconds": render.RELEASE_SECONDS,
        "sample_rate": render.SAMPLE_RATE,
        "soundfont": Path(render.soundfont_path()).name,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "repeats": args.repeats,
        "in_process": best_of(args.repeats, lambda: in_process(args.clips, args.seconds)),
        "corpus": [best_of(args.repeats, lambda w=w: corpus(args.clips, args.seconds, w)) for w in args.workers],
    }
    print(f"in process (render only): {result['in_process']['clips_per_s']} clips/s, "
          f"{result['in_process']['x_realtime']}x realtime")
    for run in result["corpus"]:
        print(f"synth command, {run['workers']} worker(s): {run['clips_per_s']} clips/s, "
              f"{run['x_realtime']}x realtime ({run['clips']} clips in {run['wall_s']} s)")
    write_results(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
