"""`musicllm data annotate`: MIR estimates (musicllm.analysis) for every clip of a manifest.

    musicllm data annotate data/corpus/manifest.jsonl                    # -> manifest.annotated.jsonl
    musicllm data annotate data/corpus/manifest.jsonl --out annotated.jsonl --workers 2
    python -m data_gen.annotate data/corpus/manifest.jsonl

Each output record is the input record with an `estimates` field (any old one is replaced); the
ground-truth `labels` are copied untouched. A clip whose audio cannot be used (missing, corrupt,
too long) or whose analysis fails still gets its one record, with `estimates: {"error": reason}`,
so the output holds every input id exactly once; to retry such clips, delete their lines and
rerun. Audio paths relative to the manifest are rewritten relative to the output's folder when
the two differ.

Resumable: the output is appended one flushed line per clip (`formats.JsonlWriter`), and a rerun
skips the ids already there, so an interrupted run loses at most the clip it was writing.
Records are written in manifest order; `--workers` processes analyse ahead of the writer.

This module knows nothing about how the estimates are computed; it never reads or changes labels.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from data_gen.formats import FormatError, JsonlWriter, done_ids, read_jsonl, validate_clip

# numpy and librosa are imported inside the functions: a spawned worker must set its thread
# limits (one BLAS/OpenMP thread per process, or 2 workers x N threads fight over 2 cores)
# before anything loads them.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
# Clips submitted but not yet written, per worker: the writer waits for the oldest clip (so the
# output keeps the manifest's order) while the workers stay busy on the next ones.
AHEAD_PER_WORKER = 4


class WorkerCrashed(RuntimeError):
    """An analysis process died while analysing a clip; the clips before it are written."""


def default_output(manifest: Path) -> Path:
    return manifest.with_name(f"{manifest.stem}.annotated.jsonl")


def annotate_clip(path: str, max_seconds: float | None) -> dict:
    """Estimates for one audio file, or {"error": reason}; never raises for a bad clip."""
    from musicllm.analysis import analyze_file
    from musicllm.audio import AudioError

    try:
        return analyze_file(path, max_seconds=max_seconds)
    except AudioError as err:
        return {"error": str(err)}
    except Exception as err:  # noqa: BLE001 - one odd clip must not end a 10,000-clip job
        return {"error": f"{path}: analysis failed ({type(err).__name__}: {err})"}


def _init_worker() -> None:
    for variable in THREAD_VARIABLES:
        os.environ.setdefault(variable, "1")


def compile_kernels() -> None:
    """Analyse four seconds of a synthetic chord in this process, before any worker starts.

    librosa's numba kernels are compiled on first use and cached beside librosa's code. Two
    workers compiling them at once can leave a cache that crashes every later process in native
    code (measured: two processes with an empty cache, then a third: a segfault in librosa's
    `estimate_tuning` in 2 of 3 trials). Compiled once here, the workers only read the cache."""
    import numpy as np

    from musicllm.analysis import SAMPLE_RATE, analyze

    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * hz * t) for hz in (220.0, 277.2, 329.6)) * (1 + np.sign(np.sin(2 * np.pi * 2 * t)))
    analyze((0.1 * chord).astype(np.float32), SAMPLE_RATE)


def audio_path(record: dict, base_dir: Path) -> str:
    path = Path(record["audio"])
    return str(path if path.is_absolute() else base_dir / path)


def estimate_all(records: list[dict], base_dir: Path, workers: int, max_seconds: float | None) -> Iterator[dict]:
    """Estimates for `records`, yielded in their order. workers <= 1 runs in this process."""
    paths = [audio_path(record, base_dir) for record in records]
    if workers <= 1 or len(paths) <= 1:
        for path in paths:
            yield annotate_clip(path, max_seconds)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    compile_kernels()
    # spawn, not fork: the parent runs tqdm's monitor thread, and forking a threaded process can
    # deadlock; spawned workers also start with the thread limits set by _init_worker.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
        pending = collections.deque()
        upcoming = iter(paths)
        try:
            for path in upcoming:
                pending.append((path, pool.submit(annotate_clip, path, max_seconds)))
                if len(pending) >= workers * AHEAD_PER_WORKER:
                    break
            while pending:
                path, future = pending.popleft()
                try:
                    estimates = future.result()
                except BrokenProcessPool as err:  # a crash in native code (numba, a codec) kills the worker
                    raise WorkerCrashed(f"the analysis process died at {path} or a clip after it (a crash in "
                                        "native code, not a Python error; `python -X faulthandler -m "
                                        "data_gen.annotate MANIFEST --workers 1` shows where)") from err
                for later in upcoming:  # top the queue up by one
                    pending.append((later, pool.submit(annotate_clip, later, max_seconds)))
                    break
                yield estimates
        finally:  # interrupted (Ctrl-C, a write error): do not wait for clips nobody will write
            for _, future in pending:
                future.cancel()


def output_record(record: dict, estimates: dict, manifest_dir: Path, out_dir: Path) -> dict:
    """The input record with `estimates` set and a relative audio path re-based on `out_dir`."""
    out = dict(record)
    audio = Path(record["audio"])
    if not audio.is_absolute() and manifest_dir.resolve() != out_dir.resolve():
        out["audio"] = os.path.relpath(manifest_dir.resolve() / audio, out_dir.resolve())
    out["estimates"] = estimates
    return out


def load_todo(manifest: Path, out: Path) -> tuple[list[dict], int, int]:
    """(records still to annotate, how many are done already, duplicate ids skipped)."""
    records = [validate_clip(r, f"{manifest}: clip {i}") for i, r in enumerate(read_jsonl(manifest), 1)]
    finished = done_ids(out)
    todo, seen, already = [], set(), 0
    for record in records:  # each id once, even where the manifest repeats it
        if record["id"] in seen:
            continue
        seen.add(record["id"])
        if record["id"] in finished:
            already += 1
        else:
            todo.append(record)
    duplicates = len(records) - len(seen)
    return todo, already, duplicates


def run(manifest: Path, out: Path, workers: int, max_seconds: float | None) -> dict:
    """Annotate `manifest` into `out`; returns counts {annotated, errors, skipped, duplicates}."""
    from tqdm import tqdm

    todo, already, duplicates = load_todo(manifest, out)
    counts = {"annotated": 0, "errors": 0, "skipped": already, "duplicates": duplicates}
    started, audio_seconds = time.perf_counter(), 0.0
    bar = tqdm(total=already + len(todo), initial=already, unit="clip", desc="annotate", dynamic_ncols=True)
    with JsonlWriter(out) as writer, bar:
        for record, estimates in zip(todo, estimate_all(todo, manifest.parent, workers, max_seconds)):
            writer.write(output_record(record, estimates, manifest.parent, out.parent))
            failed = "error" in estimates
            counts["errors" if failed else "annotated"] += 1
            audio_seconds += 0.0 if failed else float(record["duration"])
            speed = audio_seconds / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix_str(f"{speed:.0f}x realtime, {counts['errors']} errors", refresh=False)
            bar.update()
    return counts


def main(argv: list[str] | None = None) -> int:
    from musicllm.analysis import DEFAULT_MAX_SECONDS  # numpy only; librosa loads on first use

    parser = argparse.ArgumentParser(
        prog="musicllm data annotate",
        description="Add MIR estimates (tempo, beats, key, chords, loudness, timbre) to a clip manifest. "
        "Ground-truth labels are left untouched; rerunning resumes where a run stopped.",
    )
    parser.add_argument("manifest", type=Path, help="clip manifest (JSONL); audio paths relative to its folder")
    parser.add_argument("--out", type=Path, default=None,
                        help="output manifest (default: <manifest stem>.annotated.jsonl beside the manifest)")
    parser.add_argument("--workers", type=int, default=2,
                        help="analysis processes (default %(default)s; 1 analyses in this process)")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                        help="record clips longer than this as errors (default %(default)g s)")
    args = parser.parse_args(argv)

    out = args.out or default_output(args.manifest)
    if not args.manifest.is_file():
        print(f"error: {args.manifest}: manifest not found", file=sys.stderr)
        return 2
    if out.resolve() == args.manifest.resolve():
        print("error: --out must differ from the input manifest (it is appended to)", file=sys.stderr)
        return 2
    try:
        counts = run(args.manifest, out, args.workers, args.max_seconds)
    except FormatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except WorkerCrashed as err:
        print(f"error: {err}; {out} keeps every clip written before it: rerun to resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: {out} keeps every clip written so far; rerun the same command to resume",
              file=sys.stderr)
        return 130
    print(f"{out}: {counts['annotated']} annotated, {counts['errors']} unusable (estimates.error), "
          f"{counts['skipped']} already done" + (f", {counts['duplicates']} duplicate ids skipped" if counts["duplicates"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
