"""Generation engines: one interface over transformers `generate` and vLLM.

    engine = TransformersEngine.from_checkpoint("~/.cache/musicllm/default/model")
    clip = engine.load_audio("song.mp3")
    request = GenerationRequest([{"role": "user", "content": "<|audio|>\nWhat key is this in?"}], [clip])
    print((await engine.complete(request)).text)
    async for delta in engine.stream(request): ...

A request is a chat (string contents, `<|audio|>` where each clip goes, in order) plus the clips
already decoded at `engine.sample_rate`. The engine renders the prompt with the checkpoint's
processor, runs encoder + projector, and generates. Concurrent requests are batched: here by a
background thread that collects whatever is waiting into one `generate` call; the vLLM engines
(`musicllm.vllm_engine`) leave batching to vLLM.

This module knows nothing about HTTP, vLLM or Gradio (none is imported here): the gateway maps
`EngineRequestError` and `AudioError` to 400s and `EngineUnavailable` to 503, and asks
`engine.problem()` for /health. Which engine a command gets is musicllm.engine_choice's.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable

import numpy as np
import torch

from musicllm.configuration import AUDIO_TOKEN
from musicllm.lists import repeating_item_words

DEFAULT_MODEL_ID = "musicllm"
ROLES = ("system", "user", "assistant")
# How long the batching loop waits for more requests once one has arrived: requests sent together
# by many users land within milliseconds, and a decode step costs far more than this.
COLLECT_SECONDS = 0.01
# Subtracted from a token's logit once for each time the answer has already said it (OpenAI's and
# vLLM's `frequency_penalty`, the answer's tokens only). Greedy decoding of the default model
# looped without it ("features french horn, french horn, french horn, ..."); the README gives
# the measurement behind the value. A request may set its own.
DEFAULT_FREQUENCY_PENALTY = 0.5
# An answer never says the same run of this many tokens twice: a token that begins a word and
# would repeat a run is masked (as `generate`'s no_repeat_ngram_size does, but never inside a word:
# masking the "a" of " tub|a" had the model write "tubo"). The penalty alone still let captions loop
# ("features flute, flute, flute, ...", "warm padre padre padre"); the README gives the
# measurement. With it comes the rule that a list never names one item twice ("tuba, piano,
# tuba": no run repeats), `NoRepeat`. 0 turns both off; a request may set its own.
DEFAULT_NO_REPEAT_NGRAM = 4


def is_ngram_count(value) -> bool:
    """Whether a request's no_repeat_ngram is a count both engines read alike: an int, not a
    bool (True is no count) and not negative."""
    return type(value) is int and value >= 0


class EngineRequestError(ValueError):
    """A request the engine cannot run; the message names the field and the problem."""


class EngineUnavailable(RuntimeError):
    """The engine cannot answer anyone just now (its model server is down or restarting); the
    message says what is wrong. The request itself may be fine: retry later."""


@dataclass
class GenerationRequest:
    messages: list[dict]  # [{"role", "content": str}], "<|audio|>" where each clip goes, in order
    clips: list[np.ndarray]  # mono float32 at engine.sample_rate, one per placeholder
    max_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    frequency_penalty: float = DEFAULT_FREQUENCY_PENALTY
    no_repeat_ngram: int = DEFAULT_NO_REPEAT_NGRAM


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Delta:
    """One streamed piece of text; the last one carries the finish reason and the usage."""
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def validate_request(request: GenerationRequest) -> None:
    """Everything about a request that can be checked without a tokenizer."""
    if not isinstance(request.messages, list) or not request.messages:
        raise EngineRequestError("messages: must be a non-empty list")
    for i, message in enumerate(request.messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise EngineRequestError(f"messages[{i}].role: must be one of {', '.join(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise EngineRequestError(f"messages[{i}].content: must be a string (with {AUDIO_TOKEN} where clips go)")
    placeholders = sum(m["content"].count(AUDIO_TOKEN) for m in request.messages)
    if placeholders != len(request.clips):
        raise EngineRequestError(f"messages: {placeholders} {AUDIO_TOKEN} placeholders but {len(request.clips)} "
                                 "audio clips were given")
    if not isinstance(request.max_tokens, int) or request.max_tokens < 1:
        raise EngineRequestError(f"max_tokens: must be an integer >= 1, got {request.max_tokens!r}")
    if not request.temperature >= 0:
        raise EngineRequestError(f"temperature: must be >= 0, got {request.temperature!r}")
    if not 0 < request.top_p <= 1:
        raise EngineRequestError(f"top_p: must be in (0, 1], got {request.top_p!r}")
    if not -2 <= request.frequency_penalty <= 2:
        raise EngineRequestError(f"frequency_penalty: must be in [-2, 2], got {request.frequency_penalty!r}")
    if not is_ngram_count(request.no_repeat_ngram):
        raise EngineRequestError(f"no_repeat_ngram: must be an integer >= 0 (0 = off), got {request.no_repeat_ngram!r}")
    if not all(isinstance(s, str) and s for s in request.stop):
        raise EngineRequestError("stop: must be a list of non-empty strings")


def check_length(prompt_tokens: int, context: int) -> None:
    """vLLM's rule: a prompt must leave room for at least one answer token. (An answer that would
    overflow the context is cut there, finish_reason "length", as vLLM does.)"""
    if prompt_tokens >= context:
        raise EngineRequestError(f"messages: the prompt is {prompt_tokens} tokens (audio included), not shorter "
                                 f"than the model's context of {context} tokens")


class Engine:
    """The interface both engines implement (see the module docstring)."""
    name: str
    model_id: str
    sample_rate: int

    def load_audio(self, source: bytes | str | Path, name: str | None = None) -> np.ndarray:
        raise NotImplementedError

    async def complete(self, request: GenerationRequest) -> Completion:
        pieces, last = [], Delta("")
        async for last in self.stream(request):
            pieces.append(last.text)
        return Completion("".join(pieces), last.finish_reason or "length", last.prompt_tokens, last.completion_tokens)

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        raise NotImplementedError

    def complete_batch(self, requests: list[GenerationRequest]) -> list[Completion]:
        """All requests at once (the engine batches them). Synchronous: call it outside an event loop."""
        async def everything():
            try:
                return await asyncio.gather(*(self.complete(r) for r in requests))
            finally:
                await self._leave_loop()

        return list(asyncio.run(everything()))

    async def problem(self) -> str | None:
        """Why the engine cannot answer now, or None when it can (for a health check: quick)."""
        return None

    async def _leave_loop(self) -> None:
        """Release what belongs to the running event loop (HTTP clients); the engine stays usable."""

    async def aclose(self) -> None:
        await self._leave_loop()
        self.close()

    def close(self) -> None:
        pass


class LocalModelEngine(Engine):
    """An engine holding the checkpoint in this process: the processor renders prompts, and the
    encoder + projector (+ the LLM's embedding table) turn them into embeddings."""

    def __init__(self, model, processor, model_id: str = DEFAULT_MODEL_ID):
        self.model, self.processor, self.model_id = model, processor, model_id
        self.sample_rate = processor.sample_rate
        self.context = int(model.config.text_config.max_position_embeddings)

    def load_audio(self, source, name: str | None = None) -> np.ndarray:
        return self.processor.load_audio(source, name=name)

    def prompt_ids(self, request: GenerationRequest, context: int | None = None) -> list[int]:
        """The request checked and rendered: token ids with each clip's placeholders expanded."""
        from musicllm.processing import render_conversation

        validate_request(request)
        counts = []
        for i, clip in enumerate(request.clips):
            if not isinstance(clip, np.ndarray) or clip.ndim != 1 or clip.size == 0:
                raise EngineRequestError(f"clips[{i}]: must be a non-empty 1-D array at {self.sample_rate} Hz")
            counts.append(self.processor.num_audio_tokens(clip))
        ids, _ = render_conversation(request.messages, self.processor.tokenizer, counts, add_generation_prompt=True)
        check_length(len(ids), context or self.context)
        return ids

    @torch.no_grad()
    def prompt_embeds(self, ids: list[int], clips: list[np.ndarray]) -> torch.Tensor:
        """(T, D) embeddings of one prompt: text embedded, audio tokens spliced in."""
        audio = self.processor.audio_windows(clips)
        return self.model.embed_inputs(torch.tensor([ids]), audio["audio_values"], audio["audio_lens"])[0]


@dataclass(eq=False)  # identity: jobs are compared by `in` while batching
class _Job:
    """One request inside the batching loop; `emit` is called from the loop's thread."""
    request: GenerationRequest
    ids: list[int]
    emit: Callable[[Delta | BaseException], None]
    cancelled: bool = False


class TransformersEngine(LocalModelEngine):
    """transformers `generate(inputs_embeds=...)`, batched by a background thread.

    Requests wait in a queue; the thread takes the first, gathers whatever else arrived within
    COLLECT_SECONDS and shares its sampling settings (all greedy requests share), up to
    `max_batch_size`, and runs one left-padded `generate`. `_RowTracker` (a stopping criterion,
    called once per step with every row's tokens) routes each row's new text to its request and
    ends rows on their own `max_tokens`, stop strings or cancellation.
    """

    name = "transformers"

    def __init__(self, model, processor, max_batch_size: int = 16, model_id: str = DEFAULT_MODEL_ID):
        super().__init__(model, processor, model_id)
        self.max_batch_size = max_batch_size
        self.batches_run = 0  # generate calls so far (tests check that concurrent requests share them)
        self.tokens_generated = 0  # answer tokens so far (tests check that a cancelled row stops)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="musicllm-generate", daemon=True)
        self._worker.start()

    @classmethod
    def from_checkpoint(cls, directory, max_batch_size: int = 16, threads: int | None = None,
                        model_id: str = DEFAULT_MODEL_ID, device: str | None = None) -> "TransformersEngine":
        """The checkpoint on `device` (default: the GPU when there is one, else the CPU)."""
        from musicllm.checkpoint import default_device, load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        model, processor = load_checkpoint(Path(directory).expanduser(), device=device or default_device())
        return cls(model, processor, max_batch_size=max_batch_size, model_id=model_id)

    def submit(self, request: GenerationRequest, ids: list[int], emit: Callable[[Delta | BaseException], None]) -> _Job:
        if not self._worker.is_alive():
            raise RuntimeError("the transformers engine is closed")
        job = _Job(request, ids, emit)
        self._queue.put(job)
        return job

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        loop, deltas = asyncio.get_running_loop(), asyncio.Queue()

        def emit(item) -> None:  # from the batching thread; a caller whose loop has ended is gone
            if not loop.is_closed():
                loop.call_soon_threadsafe(deltas.put_nowait, item)

        # Rendering and tokenising take CPU time in proportion to the prompt: off the event loop.
        ids = await asyncio.to_thread(self.prompt_ids, request)
        job = self.submit(request, ids, emit)
        try:
            while True:
                item = await deltas.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            job.cancelled = True  # a no-op when finished; otherwise the row stops at the next step

    async def problem(self) -> str | None:
        return None if self._worker.is_alive() else "the transformers engine's generation thread has stopped"

    def close(self) -> None:
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout=60)

    # -- the batching loop (its own thread) --------------------------------------------------

    def _loop(self) -> None:
        waiting: list[_Job] = []
        while True:
            first = waiting.pop(0) if waiting else self._queue.get()
            if first is None:
                return
            deadline = time.monotonic() + COLLECT_SECONDS
            while True:  # everything that arrives meanwhile
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # stop after this batch
                    break
                waiting.append(job)
            batch = [first] + [j for j in waiting if _sampling_key(j.request) == _sampling_key(first.request)]
            batch = [j for j in batch[: self.max_batch_size] if not j.cancelled]
            waiting = [j for j in waiting if j not in batch and not j.cancelled]
            if batch:
                self._run_batch(batch)

    def _run_batch(self, jobs: list[_Job]) -> None:
        try:
            self.batches_run += 1
            self._generate(jobs)
        except Exception as error:  # noqa: BLE001 - every waiting request must hear about it
            for job in jobs:
                job.emit(RuntimeError(f"generation failed: {error}"))

    @torch.no_grad()
    def _generate(self, jobs: list[_Job]) -> None:
        from transformers import StoppingCriteriaList

        longest = max(len(job.ids) for job in jobs)
        pad_id = self.processor.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(jobs), longest), pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, job in enumerate(jobs):  # left padding: every prompt ends where generation starts
            input_ids[row, longest - len(job.ids):] = torch.tensor(job.ids)
            attention_mask[row, longest - len(job.ids):] = 1
        audio = self.processor.audio_windows([clip for job in jobs for clip in job.request.clips])
        device = self.model.device
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        audio = {name: value.to(device) for name, value in audio.items()}
        tracker = _RowTracker(self, jobs)
        request = jobs[0].request
        sampling = dict(do_sample=False) if request.temperature == 0 else dict(
            do_sample=True, temperature=request.temperature, top_p=request.top_p)
        if request.seed is not None:
            torch.manual_seed(request.seed)  # seeded requests run alone (see _sampling_key)
        rules = penalties(request.frequency_penalty, request.no_repeat_ngram, self.processor.tokenizer)
        self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **audio,
                            max_new_tokens=max(tracker.limits), logits_processor=rules,
                            stopping_criteria=StoppingCriteriaList([tracker]), pad_token_id=pad_id, **sampling)
        tracker.finish_all("length")


def _sampling_key(request: GenerationRequest) -> tuple:
    """Requests with equal keys can share one `generate` call."""
    if request.temperature == 0:
        return ("greedy", request.frequency_penalty, request.no_repeat_ngram)
    if request.seed is not None:
        return ("seeded", id(request))  # a seed fixes one request's randomness: it runs alone
    return ("sample", request.temperature, request.top_p, request.frequency_penalty, request.no_repeat_ngram)


class FrequencyPenalty:
    """A `generate` logits processor: each token's logit minus `penalty` times the number of times
    the answer has said it so far, as vLLM applies `frequency_penalty`. The model's `generate`
    starts from embeddings, so `input_ids` holds the answer's tokens only."""

    def __init__(self, penalty: float):
        self.penalty = penalty

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        counts = torch.zeros_like(scores).scatter_add_(1, input_ids, torch.ones_like(input_ids, dtype=scores.dtype))
        return scores - self.penalty * counts


@functools.lru_cache(maxsize=8)
def word_starts(tokenizer) -> frozenset[int]:
    """The tokens that begin a word: their text starts with a space, a punctuation mark or a
    partial byte (so not a letter or a digit). Worked out once per tokenizer (0.1 s for 49k tokens)."""
    return frozenset(i for i, text in enumerate(tokenizer.batch_decode([[i] for i in range(len(tokenizer))]))
                     if not text[:1].isalnum())


def repeating_tokens(answer: list[int], n: int, starts: frozenset[int]) -> list[int]:
    """The tokens of `starts` that, said next, would repeat an n-token run the answer has already
    said (those that followed its last n-1 tokens before)."""
    if n < 1 or len(answer) < n:
        return []
    tail = answer[len(answer) - n + 1:]
    return [answer[i + n - 1] for i in range(len(answer) - n + 1)
            if answer[i + n - 1] in starts and answer[i:i + n - 1] == tail]


class NoRepeat:
    """The one rule both engines decode with when a request's no_repeat_ngram is n > 0: the next
    token may not repeat a run of n tokens the answer has said (`repeating_tokens`), nor begin a
    word that would name an item of the sentence's list again (`musicllm.lists`: "tuba, piano, "
    may not go on with "tuba"). Only tokens that begin a word are masked. As a `generate` logits
    processor it masks each row (the answer's tokens: the model's `generate` starts from embeddings)."""

    def __init__(self, n: int, tokenizer):
        self.n, self.tokenizer, self.starts = n, tokenizer, word_starts(tokenizer)
        self.first_tokens = functools.lru_cache(maxsize=4096)(self._first_tokens)

    def banned(self, answer: list[int]) -> list[int]:
        said = self.tokenizer.decode(answer, skip_special_tokens=True)
        items = [token for word in repeating_item_words(said) for token in self.first_tokens(word)]
        return repeating_tokens(answer, self.n, self.starts) + items

    def _first_tokens(self, word: str) -> tuple[int, ...]:
        """The token that begins `word` (lower case, as the lists give it) after a space, if it
        holds some of the word's letters: not a bare space, which begins every word (a small
        tokenizer's " slow" is " " + "slow"). Not the capitalised spelling: " T" begins "Tuba"
        and every other capitalised T-word."""
        first = self.tokenizer.encode(f" {word}", add_special_tokens=False)[0]
        return (first,) if first in self.starts and self.tokenizer.decode([first]).strip() else ()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for row, answer in enumerate(input_ids.tolist()):
            scores[row, self.banned(answer)] = -float("inf")
        return scores


def penalties(frequency_penalty: float, no_repeat_ngram: int, tokenizer) -> list:
    """The logits processors for `generate` that decode as a request asks (none for 0 and 0)."""
    from transformers import LogitsProcessorList

    return LogitsProcessorList([FrequencyPenalty(frequency_penalty)] * bool(frequency_penalty)
                               + [NoRepeat(no_repeat_ngram, tokenizer)] * bool(no_repeat_ngram))


class _RowTracker:
    """Follows each row of a batched `generate`: decodes its tokens, cuts at stop strings, holds
    back text that may still become a stop string (or is half a UTF-8 character), and emits
    Deltas to the row's request. As a stopping criterion it tells `generate` which rows are done."""

    def __init__(self, engine: TransformersEngine, jobs: list[_Job]):
        self.engine, self.jobs, self.tokenizer = engine, jobs, engine.processor.tokenizer
        eos = engine.model.language_model.generation_config.eos_token_id
        self.eos = {e for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None}
        self.tokens: list[list[int]] = [[] for _ in jobs]
        self.limits = [min(job.request.max_tokens, engine.context - len(job.ids)) for job in jobs]
        self.sent = [0] * len(jobs)  # characters of text already emitted
        self.done = [False] * len(jobs)

    def __call__(self, input_ids: torch.Tensor, scores=None, **kwargs) -> torch.Tensor:
        new = input_ids[:, -1].tolist()
        for row, job in enumerate(self.jobs):
            if self.done[row]:
                continue
            if job.cancelled:
                self.done[row] = True
                continue
            self.tokens[row].append(new[row])
            self.engine.tokens_generated += 1  # before any Delta goes out, so callers see it counted
            if new[row] in self.eos:
                self._finish(row, "stop", self._text(row, drop_last=True))
            else:
                self._advance(row)
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)

    def _text(self, row: int, drop_last: bool = False) -> str:
        ids = self.tokens[row][:-1] if drop_last else self.tokens[row]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _advance(self, row: int) -> None:
        text, stops = self._text(row), self.jobs[row].request.stop
        hits = [text.find(s) for s in stops if s in text]
        if hits:
            return self._finish(row, "stop", text[: min(hits)])
        if len(self.tokens[row]) >= self.limits[row]:
            return self._finish(row, "length", text)
        safe = len(text.rstrip("\ufffd"))  # an incomplete multi-byte character decodes to U+FFFD
        for stop in stops:  # a tail that starts a stop string must wait for the next tokens
            for k in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:k]):
                    safe = min(safe, len(text) - k)
                    break
        if safe > self.sent[row]:
            self.jobs[row].emit(Delta(text[self.sent[row]: safe]))
            self.sent[row] = safe

    def _finish(self, row: int, reason: str, text: str) -> None:
        self.done[row] = True
        job = self.jobs[row]
        job.emit(Delta(text[self.sent[row]:], reason, len(job.ids), len(self.tokens[row])))

    def finish_all(self, reason: str) -> None:
        """Rows `generate` ended without this tracker deciding (e.g. the context filled up)."""
        for row, job in enumerate(self.jobs):
            if not self.done[row] and not job.cancelled:
                self._finish(row, reason, self._text(row))
