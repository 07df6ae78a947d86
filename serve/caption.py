"""Batch captioning into a catalog (`musicllm caption`): every track of a folder or manifest gets
window captions, a whole-track summary, MIR estimates and an audio embedding.

    musicllm caption ~/Music --out music.db                         # default model; vLLM if installed
    musicllm caption data/corpus/manifest.jsonl --out corpus.db --engine vllm --batch-size 64
    musicllm caption ~/Music --out music.db --export music.jsonl    # also write JSONL (or .csv)
    musicllm caption ~/Music --out part3.db --shard 3/8             # machine 3 of 8 (Slurm array, k8s job)
    musicllm caption --merge part*.db --out music.db                # join the shards' catalogs

Input: a folder (audio files found recursively by suffix, named by their path relative to the
folder), one audio file, or a clip manifest (JSONL with `id`, `audio` relative to the manifest,
and `labels`, `metadata`, `source`, `license` kept as the track's labels and metadata).

What each track gets (serve.catalog documents the tables):
- one caption per window of `--window-seconds` (default: the model's own window; a tail shorter
  than MIN_TAIL of a window joins the window before it), the model asked `--prompt`;
- one whole-track summary (window -1): the model asked `--summary-prompt` about the track's opening,
  as many whole windows as fit `--summary-seconds` and the model's context (its `end` says how
  much it heard). A one-window track's summary is its window caption (the same audio);
- MIR estimates (musicllm.analysis) and the `musicllm.embeddings` vector, so search can filter
  by tempo, key, mode and metre and find similar audio.

Batching: window and summary requests of several tracks go to the engine together (`--batch-size`
per generate call; vLLM offline takes them all at once). Resuming: each track is committed with
its status in one transaction, so a rerun of the same command after any interruption (Ctrl-C,
kill -9, a lost machine) captions exactly the tracks still pending. Unreadable files (missing,
empty, corrupt, silent, not audio, too long) are recorded as failed with the reason and skipped;
`--retry-failed` tries them again. Sharding: `--shard i/N` takes the tracks whose name hashes to
i (serve.catalog.shard_of), so N jobs with the same input split it with no coordination, each
into its own database; `--merge` joins them.

Beyond one machine: N shard jobs, each with its own database, then `--merge`: a Slurm array
(`--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`) or a Kubernetes indexed Job
(`--shard $JOB_COMPLETION_INDEX/N`), each with `--engine vllm` on its GPU. Or Ray (an extra,
`pip install ray`): `--ray-workers N [--ray-address auto]` runs the N shard jobs as Ray tasks
(one GPU each with --engine vllm) and merges their databases (OUT.parts/) into --out. This is Ray
core scheduling whole shards, not Ray Data streaming tracks through vLLM actors: each shard keeps
its exactly-once database, and a rerun resumes every shard.

This module knows nothing about how engines batch or how search reads the catalog.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musicllm.audio import AUDIO_SUFFIXES  # the names load_audio reads as audio
from serve.catalog import Caption, Catalog, CatalogError, TrackSpec, file_hash, shard_of

CAPTION_PROMPT = "Write a caption for this track."  # caption phrasings the default model was trained on
SUMMARY_PROMPT = "Describe this music."
MIN_TAIL = 0.25  # a last window shorter than this fraction of a window joins the one before


@dataclass
class Prepared:
    """A decoded track with its generation requests, waiting for its batch."""
    track_id: int
    audio: np.ndarray
    content_hash: str
    spans: list[tuple[int, int]]  # (start, end) samples of each caption window
    summary_end: int | None  # samples the summary hears from the start; None: window 0's caption
    requests: list = field(default_factory=list)  # GenerationRequest per window, then the summary's
    estimates: dict = field(default_factory=dict)


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
    specs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error})") from None
        if not isinstance(record, dict) or not isinstance(record.get("audio"), str):
            raise ValueError(f"{path}:{number}: a clip record needs an 'audio' path (string)")
        audio = Path(record["audio"]) if os.path.isabs(record["audio"]) else path.parent / record["audio"]
        metadata = dict(record.get("metadata") or {})
        metadata.update({k: record[k] for k in ("source", "license", "split", "duration") if k in record})
        specs.append(TrackSpec(str(record.get("id") or record["audio"]), str(audio.resolve()),
                               labels=dict(record.get("labels") or {}), metadata=metadata))
    return specs


def caption_spans(num_samples: int, window: int) -> list[tuple[int, int]]:
    """(start, end) of each caption window; a short tail (< MIN_TAIL of a window) joins the last."""
    spans = [(start, min(start + window, num_samples)) for start in range(0, num_samples, window)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < MIN_TAIL * window:
        spans[-2:] = [(spans[-2][0], num_samples)]
    return spans


class Captioner:
    """Prepares tracks (decode, analyse, build requests) and commits them in batches."""

    def __init__(self, engine, catalog: Catalog, args: argparse.Namespace, job_id: int):
        from musicllm.embeddings import EMBEDDING_KIND

        self.engine, self.catalog, self.args, self.job_id = engine, catalog, args, job_id
        self.model_name = str(args.checkpoint)
        self.embedding_kind = EMBEDDING_KIND
        seconds = args.window_seconds or engine.processor.config.audio_window_seconds
        self.window = round(seconds * engine.sample_rate)

    def request(self, clip: np.ndarray, prompt: str):
        from musicllm.configuration import AUDIO_TOKEN
        from musicllm.engines import GenerationRequest

        system = [{"role": "system", "content": self.args.system}] if self.args.system else []
        return GenerationRequest(system + [{"role": "user", "content": f"{AUDIO_TOKEN}\n{prompt}"}], [clip],
                                 max_tokens=self.args.max_tokens)

    def summary_end(self, audio: np.ndarray, spans: list) -> int | None:
        """The longest opening of whole windows, up to --summary-seconds, whose prompt leaves
        room for the answer in the model's context; None for a one-window track."""
        if len(spans) < 2:
            return None
        limit = max(1, int(self.args.summary_seconds * self.engine.sample_rate // self.window))
        for count in range(min(limit, len(spans)), 0, -1):
            end = spans[count - 1][1]
            ids = self.engine.prompt_ids(self.request(audio[:end], self.args.summary_prompt))
            if len(ids) + self.args.max_tokens <= self.engine.context or count == 1:
                return end
        return None

    def prepare(self, track) -> Prepared | str:
        """Everything before generation; a string is the reason the track cannot be captioned."""
        from musicllm.audio import AudioError, load_audio
        from musicllm.engines import EngineRequestError

        try:
            audio = load_audio(track.path, self.engine.sample_rate, max_seconds=self.args.max_seconds,
                               allow_silence=False)
            content_hash = file_hash(track.path)
        except AudioError as error:
            return str(error)
        except OSError as error:
            return f"{track.path}: cannot read the file ({error.strerror or error})"
        spans = caption_spans(len(audio), self.window)
        try:
            summary_end = self.summary_end(audio, spans)
            prepared = Prepared(track.id, audio, content_hash, spans, summary_end)
            prepared.requests = [self.request(audio[s:e], self.args.prompt) for s, e in spans]
            if summary_end:
                prepared.requests.append(self.request(audio[:summary_end], self.args.summary_prompt))
            for request in prepared.requests:
                self.engine.prompt_ids(request)  # the engine's own checks, before the batch
        except EngineRequestError as error:
            return f"{track.path}: {error}"
        prepared.estimates = self.analyse(audio)
        return prepared

    def analyse(self, audio: np.ndarray) -> dict:
        if self.args.no_analysis:
            return {}
        from musicllm.analysis import analyze

        try:
            return analyze(audio, self.engine.sample_rate)
        except Exception as error:  # noqa: BLE001 - estimates are optional: the track goes on
            return {"error": f"analysis failed: {error}"}

    def commit(self, batch: list[Prepared]) -> int:
        """Generate every request of the batch at once, then store each track in one transaction.
        Returns the number of captions generated."""
        from musicllm.embeddings import audio_embeddings

        completions = self.engine.complete_batch([r for p in batch for r in p.requests])
        vectors = audio_embeddings(self.engine.model, self.engine.processor, [p.audio for p in batch])
        rate, at = self.engine.sample_rate, 0
        for prepared, vector in zip(batch, vectors):
            texts = [c.text.strip() for c in completions[at: at + len(prepared.requests)]]
            at += len(prepared.requests)
            captions = [Caption(i, s / rate, e / rate, text, self.model_name)
                        for i, ((s, e), text) in enumerate(zip(prepared.spans, texts))]
            summary_end = prepared.summary_end or len(prepared.audio)  # one window: its caption
            captions.append(Caption(-1, 0.0, summary_end / rate, texts[-1], self.model_name))
            self.catalog.finish_track(prepared.track_id, captions=captions, content_hash=prepared.content_hash,
                                      duration=len(prepared.audio) / rate, estimates=prepared.estimates,
                                      embedding=vector, embedding_kind=self.embedding_kind, job_id=self.job_id)
        return len(completions)

    def run(self, tracks: list) -> dict[str, int]:
        from tqdm import tqdm

        counts = {"done": 0, "failed": 0}
        batch: list[Prepared] = []
        # tqdm shows the rate (tracks/s) and the ETA; the postfix counts failures.
        progress = tqdm(total=len(tracks), unit="track", desc="captioning", dynamic_ncols=True)

        def flush() -> None:
            self.commit(batch)
            counts["done"] += len(batch)
            progress.update(len(batch))
            batch.clear()

        try:
            for track in tracks:
                prepared = self.prepare(track)
                if isinstance(prepared, str):
                    self.catalog.fail_track(track.id, prepared, job_id=self.job_id)
                    counts["failed"] += 1
                    progress.set_postfix(failed=counts["failed"], refresh=False)
                    progress.update(1)
                else:
                    batch.append(prepared)
                if sum(len(p.requests) for p in batch) >= self.args.batch_size:
                    flush()
            if batch:
                flush()
        finally:
            progress.close()
        return counts


def open_engine(args: argparse.Namespace):
    """The engine for --engine on --checkpoint (the default model, built if missing)."""
    import torch

    torch.set_num_threads(args.threads)
    if args.checkpoint is None:
        from training.quickstart import ensure_default_model

        args.checkpoint = ensure_default_model(size=args.size)
    from musicllm.engines import TransformersEngine, vllm_available

    if args.engine == "vllm" or (args.engine == "auto" and vllm_available()):
        # vLLM's engine core in this process: nothing spawned, so no __main__ guard is needed.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from musicllm.vllm_engine import VLLMOfflineEngine

        try:
            return VLLMOfflineEngine(args.checkpoint)
        except Exception as error:  # noqa: BLE001 - with auto, any vLLM failure falls back
            if args.engine == "vllm":
                raise
            print(f"vLLM cannot run {args.checkpoint} ({error}); using the transformers engine", file=sys.stderr)

    return TransformersEngine.from_checkpoint(args.checkpoint, max_batch_size=args.batch_size)


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


def caption(args: argparse.Namespace) -> int:
    shard = parse_shard(args.shard)
    specs = discover(Path(args.source))
    if shard:
        specs = [s for s in specs if shard_of(s.name, shard[1]) == shard[0]]
    with Catalog(args.out) as catalog:
        added = catalog.add_tracks(specs)
        if args.retry_failed:
            catalog.retry_failed()
        names = {s.name for s in specs}
        pending = [t for t in catalog.tracks(status="pending") if t.name in names]
        print(f"{args.out}: {len(specs)} tracks in {args.source} ({added} new), {len(pending)} to caption", flush=True)
        if pending:
            engine = open_engine(args)
            mark_interrupted(catalog)
            settings = {k: str(v) for k, v in vars(args).items()} | {"pid": os.getpid(), "host": socket.gethostname()}
            job = catalog.start_job("caption", settings, args.shard, str(args.checkpoint))
            try:
                result = Captioner(engine, catalog, args, job).run(pending)
            except KeyboardInterrupt:
                catalog.end_job(job, "interrupted")
                print(f"interrupted: {catalog.counts()['pending']} tracks left; the same command resumes", file=sys.stderr)
                return 130
            except BaseException:
                catalog.end_job(job, "failed")
                raise
            finally:
                engine.close()
            catalog.end_job(job)
            print(f"captioned {result['done']} tracks, {result['failed']} failed", flush=True)
        print("catalog:", ", ".join(f"{n} {status}" for status, n in catalog.counts().items()))
        if args.export:
            print(f"exported {catalog.export(args.export)} tracks to {args.export}")
    return 0


def caption_with_ray(args: argparse.Namespace) -> int:
    """--ray-workers N: N Ray tasks, task i runs `caption` on shard i/N into its own database in
    OUT.parts/ (resumable like any shard job), then the parts merge into --out. Without
    --ray-address a local Ray instance with N CPUs starts here and stops at the end; with one,
    the tasks run on that cluster (every node needs musicllm installed and the input paths)."""
    import ray

    parts = Path(str(args.out) + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    count = args.ray_workers
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                    os.environ.get("PYTHONPATH")])),
                        "OMP_NUM_THREADS": str(args.threads)}}
    local = dict(num_cpus=count, include_dashboard=False, object_store_memory=128 * 2**20)
    ray.init(**(dict(address=args.ray_address) if args.ray_address else local), runtime_env=env)
    try:
        gpus = 1 if args.engine == "vllm" and ray.cluster_resources().get("GPU", 0) >= count else 0
        job = ray.remote(num_cpus=1, num_gpus=gpus)(_shard_job)
        shards = [argparse.Namespace(**{**vars(args), "shard": f"{i}/{count}", "out": parts / f"part-{i}-of-{count}.db",
                                        "export": None, "ray_workers": None}) for i in range(count)]
        codes = ray.get([job.remote(shard) for shard in shards])
    finally:
        ray.shutdown()
    if any(codes):
        print(f"error: shard jobs exited with {codes}; rerun the same command to resume", file=sys.stderr)
        return 1
    return merge(argparse.Namespace(out=args.out, merge=[shard.out for shard in shards], export=args.export))


def _shard_job(args: argparse.Namespace) -> int:
    """One Ray task: a whole shard job, in the worker process."""
    return caption(args)


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
    parser.add_argument("--checkpoint", type=Path, default=None, help="model folder (default: the default model, built if missing)")
    parser.add_argument("--size", default="default", choices=["default", "small"],
                        help="quickstart size if the default model has to be built")
    parser.add_argument("--engine", default="auto", choices=["auto", "transformers", "vllm"],
                        help="vllm: vLLM offline (in-process vllm.LLM; 3-4x the transformers engine's clips/s "
                             "on 2 CPU cores, eval/benchmarks/captioning.py); transformers: batched generate; "
                             "auto (default): vllm when "
                             "installed and able to load the model, else transformers")
    parser.add_argument("--batch-size", type=int, default=16, help="caption requests per generate call (and per commit group)")
    parser.add_argument("--shard", default=None, help="i/N: caption only shard i of N (stable hash of each track's name)")
    parser.add_argument("--export", type=Path, default=None, help="also write the catalog to this .jsonl or .csv file")
    parser.add_argument("--window-seconds", type=float, default=None,
                        help="caption window length in seconds (default: the model's audio window)")
    parser.add_argument("--summary-seconds", type=float, default=30.0,
                        help="most audio the whole-track summary hears, from the start (also capped by the context)")
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
                        help="split the work over N Ray tasks (shards i/N, merged into --out; needs `pip install ray`)")
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
    if args.ray_workers is not None and (args.ray_workers < 1 or args.shard or args.merge):
        parser.error("--ray-workers needs N >= 1, and no --shard or --merge (it makes and merges the shards)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.merge:
            return merge(args)
        return caption_with_ray(args) if args.ray_workers else caption(args)
    except (FileNotFoundError, ValueError, CatalogError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
