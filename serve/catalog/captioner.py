"""The captioning worker: turns catalog tracks into finished records (captions, estimates, embedding).

    captioner = Captioner(open_engine(args, stack), args)
    for record in captioner.records(tracks):     # tracks: anything with .id and .path
        store(catalog, record, job_id)           # one transaction per track

A record is a plain JSON-ready dict, so the same worker runs in this process (`musicllm caption`)
or inside a Ray Data actor whose records stream back to the driver (serve.catalog.caption_ray):
    {"track_id", "error"}                                    the track cannot be captioned
    {"track_id", "content_hash", "duration", "estimates", "embedding": [floats],
     "embedding_kind", "captions": [[window, start, end, text, model], ...]}
Window -1 is the whole-track summary (serve.catalog.schema). Every caption is the model's text
without the sentences that contradict the track's own facts (its labels, else the MIR estimates
stored beside it), repeat an earlier sentence or are broken (serve.catalog.grounding); a caption with
nothing left is stored empty.

This module knows nothing about where tracks come from or how the catalog is sharded; only
`store` touches the catalog.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from musicllm.paths import default_model
from serve.catalog.store import Caption, Catalog, file_hash
from serve.catalog.schema import merged_attributes
from serve.catalog.grounding import checked

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
    attributes: dict = field(default_factory=dict)  # the track's facts (labels, else estimates): captions are checked against them


def caption_spans(num_samples: int, window: int) -> list[tuple[int, int]]:
    """(start, end) of each caption window; a short tail (< MIN_TAIL of a window) joins the last."""
    spans = [(start, min(start + window, num_samples)) for start in range(0, num_samples, window)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < MIN_TAIL * window:
        spans[-2:] = [(spans[-2][0], num_samples)]
    return spans


class Captioner:
    """Prepares tracks (decode, analyse, build requests) and generates them in batches of
    `args.batch_size` requests. `args`: the `musicllm caption` options (serve.catalog.caption.parse_args)."""

    def __init__(self, engine, args: argparse.Namespace):
        from musicllm.embeddings import EMBEDDING_KIND

        self.engine, self.args = engine, args
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
        """The longest opening of whole windows, up to --summary-seconds (default: the whole
        track), whose prompt leaves room for the answer in the model's context; None for a
        one-window track."""
        if len(spans) < 2:
            return None
        limit = len(spans)
        if self.args.summary_seconds is not None:
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
        known = merged_attributes(getattr(track, "labels", None) or {}, prepared.estimates)
        prepared.attributes = {name: value for name, value in known.items() if value not in (None, [])}
        return prepared

    def analyse(self, audio: np.ndarray) -> dict:
        if self.args.no_analysis:
            return {}
        from musicllm.analysis import analyze

        try:
            return analyze(audio, self.engine.sample_rate)
        except Exception as error:  # noqa: BLE001 - estimates are optional: the track goes on
            return {"error": f"analysis failed: {error}"}

    def generate(self, batch: list[Prepared]) -> list[dict]:
        """Generate every request of the batch at once; one finished record per track."""
        from musicllm.embeddings import audio_embeddings

        completions = self.engine.complete_batch([r for p in batch for r in p.requests])
        vectors = audio_embeddings(self.engine.model, self.engine.processor, [p.audio for p in batch])
        rate, at, records = self.engine.sample_rate, 0, []
        for prepared, vector in zip(batch, vectors):
            # Each caption without the sentences that contradict the track's facts, repeat or break (serve.catalog.grounding)
            texts = [checked(c.text, prepared.attributes) for c in completions[at: at + len(prepared.requests)]]
            at += len(prepared.requests)
            captions = [[i, s / rate, e / rate, text, self.model_name]
                        for i, ((s, e), text) in enumerate(zip(prepared.spans, texts))]
            summary_end = prepared.summary_end or len(prepared.audio)  # one window: its caption
            captions.append([-1, 0.0, summary_end / rate, texts[-1], self.model_name])
            records.append({"track_id": prepared.track_id, "content_hash": prepared.content_hash,
                            "duration": len(prepared.audio) / rate, "estimates": prepared.estimates,
                            "embedding": vector.tolist(), "embedding_kind": self.embedding_kind,
                            "captions": captions})
        return records

    def records(self, tracks: Iterable) -> Iterator[dict]:
        """A record per track, failures at once, captioned tracks a batch at a time."""
        batch: list[Prepared] = []
        for track in tracks:
            prepared = self.prepare(track)
            if isinstance(prepared, str):
                yield {"track_id": track.id, "error": prepared}
                continue
            batch.append(prepared)
            if sum(len(p.requests) for p in batch) >= self.args.batch_size:
                yield from self.generate(batch)
                batch = []
        if batch:
            yield from self.generate(batch)


def store(catalog: Catalog, record: dict, job_id: int | None = None) -> None:
    """Commit one record in one transaction (a track not pending any more is left alone)."""
    if "error" in record:
        catalog.fail_track(record["track_id"], record["error"], job_id=job_id)
        return
    catalog.finish_track(record["track_id"], captions=[Caption(*c) for c in record["captions"]],
                         content_hash=record["content_hash"], duration=record["duration"],
                         estimates=record["estimates"], embedding=np.asarray(record["embedding"], dtype=np.float32),
                         embedding_kind=record["embedding_kind"], job_id=job_id)


def resolve_checkpoint(args: argparse.Namespace) -> None:
    """--checkpoint, or the default model (stops, saying how to build it, when it is missing)."""
    if args.checkpoint is None:
        args.checkpoint = default_model()


def open_engine(args: argparse.Namespace, stack: contextlib.ExitStack):
    """The engine --engine means (musicllm.engine_choice; vLLM in this process, for batches) on
    --checkpoint (the default model unless given); `stack` closes it."""
    import torch

    from musicllm.engine_choice import open_engine as choose

    torch.set_num_threads(args.threads)
    resolve_checkpoint(args)
    # vLLM's engine core in this process: nothing spawned, so no __main__ guard is needed.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return choose(args.engine, args.checkpoint, stack, offline=True, max_batch_size=args.batch_size,
                  say=lambda text: print(text, file=sys.stderr, flush=True))
