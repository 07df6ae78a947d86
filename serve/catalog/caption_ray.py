"""Batch captioning on Ray Data: tracks stream through engine actors, records stream back.

    pip install 'musicllm[ray]'                                   # ray[data] (pulls pyarrow)
    musicllm caption ~/Music --out music.db --ray-workers 2       # a local Ray instance, 2 actors
    ray start --head                                              # on the head node, then on each worker:
    ray start --address HEAD:6379                                 #   (GPU nodes: --num-gpus 1)
    musicllm caption /shared/music --out music.db --ray-workers 8 --ray-address auto --engine vllm

How it runs: the driver (this process) adds the tracks to --out and keeps only the pending ones,
so tracks already done or failed never enter the dataset. A Ray Dataset of (track id, audio
path) rows goes through `map_batches` with CaptionActor, an actor class that opens the engine
once (`--engine vllm`: the vLLM offline engine, one GPU per actor when the cluster has a GPU
per actor; otherwise the transformers engine on CPU) and turns each batch of tracks into
serve.catalog.captioner records. The records stream back to the driver (`iter_rows`), which stores each
in its own transaction as it arrives: the catalog has one writer, and exactly-once holds as in a
local run. A run killed at any moment loses only records in flight: their tracks are still
pending, and the same command picks them up.

On a cluster every node needs musicllm installed (or the driver's source folder, which is put
on the workers' PYTHONPATH here) and the audio paths readable under the same names (a shared
filesystem); the model folder (--checkpoint) likewise. Only the driver writes the database.

This module knows nothing about the catalog beyond the ids and paths of pending tracks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

LOCAL_OBJECT_STORE = 256 * 2**20  # a local instance's object store: records are small, audio never travels


class CaptionActor:
    """One engine per actor; `__call__` captions a batch of tracks ({"id", "path"} columns)."""

    def __init__(self, args: argparse.Namespace):
        import torch

        from serve.catalog.captioner import Captioner, open_engine

        torch.set_num_threads(args.threads)
        self.engines = contextlib.ExitStack()  # the actor's engine lives as long as the actor
        self.captioner = Captioner(open_engine(args, self.engines), args)

    def __call__(self, batch: dict) -> dict:
        tracks = [SimpleNamespace(id=int(i), path=str(p)) for i, p in zip(batch["id"], batch["path"])]
        # JSON text per record: ragged captions and floats travel through Arrow as one string column.
        return {"record": [json.dumps(r) for r in self.captioner.records(tracks)]}


def ray_env(args: argparse.Namespace) -> dict:
    """The workers' runtime_env: this source tree importable, torch threads pinned."""
    source = str(Path(__file__).resolve().parents[2])
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])),
                         "OMP_NUM_THREADS": str(args.threads)}}


def require_ray_data() -> None:
    """A clear error, before any work, where Ray Data is not installed (ray alone lacks pyarrow)."""
    try:
        import ray.data  # noqa: F401
    except ImportError as error:
        raise ValueError(f"--ray-workers needs Ray Data ({error}): pip install 'musicllm[ray]'") from None


@contextlib.contextmanager
def ray_records(args: argparse.Namespace, pending: list) -> Iterator[Iterator[dict]]:
    """`with ray_records(args, tracks) as records:` Ray up, the records of `tracks` as they finish,
    Ray down. Without --ray-address a local instance with --ray-workers CPUs starts and stops."""
    import ray

    from serve.catalog.captioner import resolve_checkpoint

    resolve_checkpoint(args)  # the default model's folder, found once here (or a clear error), not in every actor
    workers = args.ray_workers
    local = dict(num_cpus=workers, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE)
    ray.init(**(dict(address=args.ray_address) if args.ray_address else local), runtime_env=ray_env(args),
             log_to_driver=False, logging_level=logging.WARNING)
    try:
        context = ray.data.DataContext.get_current()
        # The driver's own bar counts stored tracks; Ray Data's bars and start lines would break it.
        context.enable_progress_bars = context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        gpus = 1 if args.engine == "vllm" and ray.cluster_resources().get("GPU", 0) >= workers else 0
        rows = [{"id": track.id, "path": track.path} for track in pending]
        # Small blocks so that every actor gets work at once and records come back steadily.
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * workers)))
        captioned = dataset.map_batches(
            CaptionActor, fn_constructor_kwargs={"args": argparse.Namespace(**vars(args))},
            batch_size=args.batch_size, compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1, num_gpus=gpus, batch_format="numpy")
        yield (json.loads(row["record"]) for row in captioned.iter_rows())
    finally:
        ray.shutdown()
