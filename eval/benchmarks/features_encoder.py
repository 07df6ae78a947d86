"""Speed and memory of the `features` encoder, streaming a long track window by window.

    python -m eval.benchmarks.features_encoder                    # 5, 10, 30 s windows x 2, 10 min
    python -m eval.benchmarks.features_encoder --minutes 10 --window-seconds 10
    python -m eval.benchmarks.features_encoder --out eval/benchmarks/results/features_encoder.json

Everything runs on one thread (torch.set_num_threads(1)). The synthetic track (drums, bass and
chords, deterministic) is generated one window at a time and each window's frames are dropped
after use, as a streaming caller would, so memory should grow with the window size and not with
the track length.

Each (window, track length) pair runs twice, each time in a fresh subprocess so that its peak
resident memory (Linux VmHWM) is its own; memory is the peak minus the resident memory after
imports and building the encoder, i.e. what encoding costs:
  - `growth_mib`, `realtime_factor`: the default allocator, as a real process runs. glibc keeps
    freed window buffers on its heap, and fragmentation adds a bounded drift over the first windows.
  - `working_set_mib`: MALLOC_MMAP_THRESHOLD_=64 KiB, so every large buffer goes back to the OS
    when freed and the peak is one window's working set, free of allocator history.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from eval.benchmarks import write_results

SAMPLE_RATE = 16000
DEFAULT_OUT = "eval/benchmarks/results/features_encoder.json"


def synth(start: int, count: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Samples [start, start + count) of an endless 120 BPM groove: kick, hats, bass, chords.
    Made one second at a time, so its float64 temporaries stay small next to the encoder's."""
    out = np.empty(count, dtype=np.float32)
    for offset in range(0, count, sr):
        out[offset : offset + sr] = _synth_piece(start + offset, min(sr, count - offset), sr)
    return out


def _synth_piece(start: int, count: int, sr: int) -> np.ndarray:
    t = (start + np.arange(count)) / sr
    beat = t * 2.0  # 120 BPM
    phase = (beat % 1.0) / 2.0  # seconds since the last beat
    kick = 0.6 * np.sin(2 * np.pi * 55 * t) * np.exp(-phase / 0.06)
    off = ((beat + 0.5) % 1.0) / 2.0
    hats = 0.08 * np.random.default_rng(start).standard_normal(count) * np.exp(-off / 0.015)
    roots = np.array([261.63, 196.00, 220.00, 174.61])[(t // 2).astype(int) % 4]  # C G Am F
    chord = sum(0.07 * np.sin(2 * np.pi * roots * ratio * t) for ratio in (1.0, 1.26, 1.5))
    bass = 0.15 * np.sin(2 * np.pi * roots / 4 * t)
    return kick + hats + chord + bass


def rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) in MiB; the peak falls back to getrusage off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(window_seconds: float, minutes: float) -> dict:
    """One run, in this process: stream the track through the encoder."""
    import torch

    from musicllm import lengths
    from musicllm.configuration import MusicFeaturesConfig, MusicLLMConfig
    from musicllm.encoders import FeaturesEncoder

    torch.set_num_threads(1)
    config = MusicLLMConfig(audio_config=MusicFeaturesConfig())  # text_config: only a config, no weights
    encoder = FeaturesEncoder(config)
    base = rss_mib("VmRSS")
    window = round(window_seconds * SAMPLE_RATE)
    encode_s = total_frames = start = 0
    began = time.perf_counter()
    for count in lengths.window_lengths(round(minutes * 60 * SAMPLE_RATE), window):
        audio = torch.from_numpy(synth(start, count))[None]
        tick = time.perf_counter()
        frames, frame_lens = encoder(audio, torch.tensor([count]))
        encode_s += time.perf_counter() - tick
        total_frames += int(frame_lens.sum())
        start += count
        del frames  # a streaming caller projects a window's frames and lets them go
    wall_s = time.perf_counter() - began
    peak = rss_mib("VmHWM")
    audio_s = start / SAMPLE_RATE
    return dict(
        window_seconds=window_seconds,
        track_minutes=minutes,
        windows=len(lengths.window_lengths(start, window)),
        frames=total_frames,
        encode_seconds=round(encode_s, 3),
        realtime_factor=round(audio_s / encode_s, 1),  # seconds of audio per second, one thread
        realtime_factor_with_synthesis=round(audio_s / wall_s, 1),
        rss_after_build_mib=round(base, 1),
        peak_rss_mib=round(peak, 1),
        growth_mib=round(peak - base, 1),
    )


def run_isolated(window_seconds: float, minutes: float, release_buffers: bool = False) -> dict:
    command = [sys.executable, "-m", "eval.benchmarks.features_encoder", "--worker"]
    command += ["--window-seconds", str(window_seconds), "--minutes", str(minutes)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if release_buffers:
        env["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[2.0, 10.0], help="track lengths (minutes)")
    parser.add_argument(
        "--window-seconds", type=float, nargs="+", default=[5.0, 10.0, 30.0], help="window lengths (seconds)"
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help="where to write the JSON results")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one isolated run
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(measure(args.window_seconds[0], args.minutes[0])))
        return

    rows = []
    print(f"{'window s':>8} {'track min':>9} {'windows':>7} {'x realtime':>10} {'peak RSS MiB':>12} "
          f"{'growth MiB':>10} {'working set MiB':>15}", flush=True)
    for window_seconds in args.window_seconds:
        for minutes in args.minutes:
            row = run_isolated(window_seconds, minutes)
            row["working_set_mib"] = run_isolated(window_seconds, minutes, release_buffers=True)["growth_mib"]
            rows.append(row)
            print(
                f"{window_seconds:>8g} {minutes:>9g} {row['windows']:>7} {row['realtime_factor']:>10.1f} "
                f"{row['peak_rss_mib']:>12.1f} {row['growth_mib']:>10.1f} {row['working_set_mib']:>15.1f}",
                flush=True,
            )
    import torch

    report = dict(
        benchmark="features_encoder",
        threads=1,
        torch=torch.__version__,
        machine=platform.machine(),
        processor=platform.processor() or platform.machine(),
        results=rows,
    )
    write_results(report, args.out)


if __name__ == "__main__":
    main()
