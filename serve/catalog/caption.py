"""Batch captioning into a catalog (`musicllm caption`): every track of a folder or manifest gets
window captions, a whole-track summary, MIR estimates and an audio embedding.

    musicllm caption ~/Music --out music.db                         # default model; vLLM if installed
    musicllm caption data/corpus/manifest.jsonl --out corpus.db --engine vllm --batch-size 64
    musicllm caption ~/Music --out music.db --export music.jsonl    # also write JSONL (or .csv)
    musicllm caption ~/Music --out part3.db --shard 3/8             # machine 3 of 8 (Slurm array, k8s job)
    musicllm caption --merge part*.db --out music.db                # join the shards' catalogs
    musicllm caption /shared/music --out music.db --ray-workers 8 --ray-address auto --engine vllm  # Ray Data

Input: a folder (audio files found recursively by suffix, named by their path relative to the
folder), one audio file, or a clip manifest (JSONL with `id`, `audio` relative to the manifest,
and `labels`, `metadata`, `source`, `license` kept as the track's labels and metadata).

What each track gets (serve.catalog.store documents the tables):
- one caption per window of `--window-seconds` (default: the model's own window; a tail shorter
  than MIN_TAIL of a window joins the window before it), the model asked `--prompt`;
- one whole-track summary (window -1): the model asked `--summary-prompt` about the whole track,
  or about as many whole windows as fit `--summary-seconds` and the model's context (its `end`
  says how much it heard). A one-window track's summary is its window caption (the same audio);
- MIR estimates (musicllm.analysis) and the `musicllm.embeddings` vector, so search can filter
  by tempo, key, mode and metre and find similar audio.

Batching: window and summary requests of several tracks go to the engine together (`--batch-size`
per generate call; vLLM offline takes them all at once). Resuming: each track is committed with
its status in one transaction, so a rerun of the same command after any interruption (Ctrl-C,
kill -9, a lost machine) captions exactly the tracks still pending. Unreadable files (missing,
empty, corrupt, silent, not audio, too long) are recorded as failed with the reason and skipped;
`--retry-failed` tries them again. Sharding: `--shard i/N` takes the tracks whose name hashes to
i (serve.catalog.store.shard_of), so N jobs with the same input split it with no coordination, each
into its own database; `--merge` joins them.

Beyond one machine: N shard jobs, each with its own database, then `--merge`: a Slurm array
(`--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`) or a Kubernetes indexed Job
(`--shard $JOB_COMPLETION_INDEX/N`), each with `--engine vllm` on its GPU. Or Ray Data (an extra,
`pip install 'musicllm[ray]'`): `--ray-workers N [--ray-address auto]` streams the pending tracks
through N engine actors (one GPU each with --engine vllm) and stores their records here, one
transaction per track, into --out (serve.catalog.caption_ray).

This module knows nothing about how engines batch (serve.catalog.captioner) or how search reads the catalog.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from pathlib import Path

from musicllm.audio import AUDIO_SUFFIXES  # the names load_audio reads as audio
from musicllm.engines import EngineUnavailable
from musicllm.jsonl import FormatError, read_jsonl
from serve.catalog.store import Catalog, CatalogError, TrackSpec, shard_of
from serve.catalog.captioner import (  # noqa: F401 (caption_spans: re-exported)
    CAPTION_PROMPT, SUMMARY_PROMPT, Captioner, caption_spans, open_engine, resolve_checkpoint, store)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: need N >= 1 and 0 <= i < N")
    return index, count


def discover(source: Path) -> list[TrackSpec]:
    """The tracks of a folder (recursive, by audio suffix), one audio file, or a clip manifest."""
    source = source.expanduser()
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(source).parts))  # ._x.wav, .Trash
        return [TrackSpec(p.relative_to(source).as_posix(), str(p.resolve())) for p in files]
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    if source.suffix == ".jsonl":
        return read_manifest(source)
    return [TrackSpec(source.name, str(source.resolve()))]


def read_manifest(path: Path) -> list[TrackSpec]:
    """A clip manifest's tracks: `id`, `audio` (relative to the manifest), labels and metadata."""
    specs = []
    for number, record in enumerate(read_jsonl(path), 1):
        if not isinstance(record.get("audio"), str):
            raise FormatError(f"{path}: record {number}: a clip record needs an 'audio' path (string)")
        audio = Path(record["audio"]) if os.path.isabs(record["audio"]) else path.parent / record["audio"]
        metadata = dict(record.get("metadata") or {})
        metadata.update({k: record[k] for k in ("source", "license", "split", "duration") if k in record})
        specs.append(TrackSpec(str(record.get("id") or record["audio"]), str(audio.resolve()),
                               labels=dict(record.get("labels") or {}), metadata=metadata))
    return specs


def caption_into(catalog: Catalog, records, total: int, job_id: int) -> dict[str, int]:
    """Store each record as it arrives (one transaction per track) under a progress bar."""
    from tqdm import tqdm

    counts = {"done": 0, "failed": 0}
    # tqdm shows the rate (tracks/s) and the ETA; the postfix counts failures.
    with tqdm(total=total, unit="track", desc="captioning", dynamic_ncols=True) as progress:
        for record in records:
            store(catalog, record, job_id)
            counts["failed" if "error" in record else "done"] += 1
            if "error" in record:
                progress.set_postfix(failed=counts["failed"], refresh=False)
            progress.update(1)
    return counts


def mark_interrupted(catalog: Catalog) -> None:
    """Jobs still 'running' whose process on this host is gone were killed: say so."""
    for job in catalog.jobs():
        settings = job["settings"]
        if job["status"] == "running" and settings.get("host") == socket.gethostname():
            try:
                os.kill(int(settings.get("pid", 0)), 0)
            except (ProcessLookupError, ValueError):
                catalog.end_job(job["id"], "interrupted")
            except PermissionError:  # alive, another user's
                pass


def pending_tracks(catalog: Catalog, specs: list[TrackSpec], retry_failed: bool = False) -> tuple[int, list]:
    """Add `specs` to the catalog (tracks already there are kept as they are) and return (how
    many were new, those of them still to caption): what a rerun resumes from."""
    added = catalog.add_tracks(specs)
    if retry_failed:
        catalog.retry_failed()
    names = {s.name for s in specs}
    return added, [t for t in catalog.tracks(status="pending") if t.name in names]


def caption(args: argparse.Namespace) -> int:
    if args.ray_workers:
        from serve.catalog.caption_ray import require_ray_data

        require_ray_data()
    shard = parse_shard(args.shard)
    specs = discover(Path(args.source))
    if shard:
        specs = [s for s in specs if shard_of(s.name, shard[1]) == shard[0]]
    with Catalog(args.out) as catalog:
        added, pending = pending_tracks(catalog, specs, args.retry_failed)
        print(f"{args.out}: {len(specs)} tracks in {args.source} ({added} new), {len(pending)} to caption", flush=True)
        if pending:
            try:
                result = run_job(args, catalog, pending)
            except KeyboardInterrupt:
                print(f"interrupted: {catalog.counts()['pending']} tracks left; the same command resumes", file=sys.stderr)
                return 130
            print(f"captioned {result['done']} tracks, {result['failed']} failed", flush=True)
        print("catalog:", ", ".join(f"{n} {status}" for status, n in catalog.counts().items()))
        if args.export:
            print(f"exported {catalog.export(args.export)} tracks to {args.export}")
    return 0


def run_job(args: argparse.Namespace, catalog: Catalog, pending: list, engine=None,
            kind: str = "caption") -> dict[str, int]:
    """Caption `pending` as one job of the catalog's job table, each track stored as it finishes.

    Who generates: `engine`, one already running (the caller closes it; `args.checkpoint` must be
    its model), else the --engine opened here on --checkpoint and closed after, or (--ray-workers)
    Ray Data actors. The job ends "finished", or "interrupted" (Ctrl-C) / "failed" (any other
    error), re-raised; the tracks it did not store stay pending for the next run."""
    if engine is None:
        resolve_checkpoint(args)  # the job records the model (the default one must exist)
    mark_interrupted(catalog)
    settings = {k: str(v) for k, v in vars(args).items()} | {"pid": os.getpid(), "host": socket.gethostname()}
    job = catalog.start_job(kind, settings, args.shard, str(args.checkpoint))
    try:
        result = caption_pending(args, catalog, pending, job, engine)
    except KeyboardInterrupt:
        catalog.end_job(job, "interrupted")
        raise
    except BaseException:
        catalog.end_job(job, "failed")
        raise
    catalog.end_job(job)
    return result


def caption_pending(args: argparse.Namespace, catalog: Catalog, pending: list, job: int, engine=None) -> dict[str, int]:
    """The records of `pending` from `engine`, a new --engine, or Ray Data actors, stored here."""
    if args.ray_workers:
        from serve.catalog.caption_ray import ray_records

        with ray_records(args, pending) as records:
            return caption_into(catalog, records, len(pending), job)
    with contextlib.ExitStack() as stack:  # an engine opened here is closed here; a caller's goes on serving
        engine = engine or open_engine(args, stack)
        return caption_into(catalog, Captioner(engine, args).records(pending), len(pending), job)


def merge(args: argparse.Namespace) -> int:
    with Catalog(args.out) as catalog:
        for other in args.merge:
            result = catalog.merge(other)
            print(f"{other}: {result['added']} tracks added, {result['updated']} updated")
        print("catalog:", ", ".join(f"{n} {status}" for status, n in catalog.counts().items()))
        if args.export:
            print(f"exported {catalog.export(args.export)} tracks to {args.export}")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="musicllm caption", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", help="a folder of audio (recursive), one audio file, or a clip manifest .jsonl")
    parser.add_argument("--out", type=Path, required=True, help="the catalog database (SQLite), created if missing")
    parser.add_argument("--checkpoint", type=Path, default=None, help="model folder (default: the default model, `musicllm quickstart`)")
    parser.add_argument("--engine", default="auto", choices=["auto", "transformers", "vllm"],
                        help="vllm: vLLM offline (in-process vllm.LLM; 2.2x the transformers engine's clips/s "
                             "on 2 CPU cores, eval/benchmarks/captioning.py); transformers: batched generate; "
                             "auto (default): vllm when "
                             "installed and able to load the model, else transformers")
    parser.add_argument("--batch-size", type=int, default=16, help="caption requests per generate call (and per commit group)")
    parser.add_argument("--shard", default=None, help="i/N: caption only shard i of N (stable hash of each track's name)")
    parser.add_argument("--export", type=Path, default=None, help="also write the catalog to this .jsonl or .csv file")
    parser.add_argument("--window-seconds", type=float, default=None,
                        help="caption window length in seconds (default: the model's audio window)")
    parser.add_argument("--summary-seconds", type=float, default=None,
                        help="most audio the whole-track summary hears, from the start (default: the whole track; "
                             "always capped by the model's context)")
    parser.add_argument("--max-tokens", type=int, default=64, help="longest caption, in tokens")
    parser.add_argument("--prompt", default=CAPTION_PROMPT, help="the question asked about each window")
    parser.add_argument("--summary-prompt", default=SUMMARY_PROMPT, help="the question asked for the whole-track summary")
    parser.add_argument("--system", default=None, help="a system message before each question (default: none)")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="longer files are recorded as failed")
    parser.add_argument("--no-analysis", action="store_true", help="skip the MIR estimates (tempo, key, ...)")
    parser.add_argument("--retry-failed", action="store_true", help="try the tracks that failed before again")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="DB",
                        help="merge these catalogs (e.g. shards) into --out instead of captioning")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--ray-workers", type=int, default=None, metavar="N",
                        help="caption on N Ray Data actors, each holding an engine, records streamed back and "
                             "stored here (needs `pip install 'musicllm[ray]'`)")
    parser.add_argument("--ray-address", default=None,
                        help="a running Ray cluster (e.g. auto); default: a local Ray instance with N CPUs")
    args = parser.parse_args(argv)
    if args.merge and args.source:
        parser.error("give either PATH_OR_MANIFEST to caption or --merge DB..., not both")
    if not args.merge and not args.source:
        parser.error("PATH_OR_MANIFEST is required (a folder, an audio file or a manifest .jsonl)")
    if args.batch_size < 1 or args.max_tokens < 1:
        parser.error("--batch-size and --max-tokens must be at least 1")
    if args.window_seconds is not None and args.window_seconds <= 0:
        parser.error("--window-seconds must be positive")
    if args.export is not None and args.export.suffix not in (".jsonl", ".csv"):
        parser.error(f"--export {args.export}: the file must end in .jsonl or .csv")
    try:
        parse_shard(args.shard)
    except ValueError as error:
        parser.error(str(error))
    if args.ray_workers is not None and (args.ray_workers < 1 or args.merge):
        parser.error("--ray-workers needs N >= 1, and no --merge")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.merge:
            return merge(args)
        return caption(args)
    except (FileNotFoundError, ValueError, CatalogError, EngineUnavailable) as error:  # --engine vllm without vLLM
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
