"""The OpenAI chat-completions wire format: request bodies in, `GenerationRequest`s out, and the
response, stream-chunk and error bodies back.

    request, options = await parse_chat_request(body, engine, limits)

`input_audio` content parts (base64 WAV/MP3/OGG/FLAC, in any user turn) become "<|audio|>"
placeholders plus decoded clips, in order, so a multi-turn conversation keeps its earlier audio.
Only inline data is read: URLs, file paths, images and files are refused with a 400, so a
request can never make the server open something of its own.

This module knows nothing about HTTP (no FastAPI: errors are `APIError`s carrying a status) and
nothing about how an engine generates; it only needs `engine.model_id`, `engine.sample_rate`
and `engine.load_audio`.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread

from musicllm.audio import AudioError, audio_duration, load_audio
from musicllm.configuration import AUDIO_TOKEN
from musicllm.engines import Completion, GenerationRequest
from musicllm.vocabulary import MAX_AUDIO_SECONDS

AUDIO_FORMATS = ("wav", "mp3", "ogg", "flac")
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MiB = 1024 * 1024
# Client side: soundfile's container names -> the input_audio formats the gateway takes as they are.
_SENT_AS_IS = {"WAV": "wav", "MP3": "mp3", "OGG": "ogg", "FLAC": "flac"}
MAX_CLIP_BYTES = 20 * MiB  # above this a clip is re-encoded (mono FLAC) before it is sent
# Parts that point at something to fetch or that this model cannot read.
_FORBIDDEN_PARTS = {
    "audio_url": "audio must be sent inline as an input_audio part (base64 data); URLs and paths are not fetched",
    "image_url": "this model does not read images",
    "image": "this model does not read images",
    "file": "files are not accepted; send audio as an input_audio part (base64 data)",
    "input_file": "files are not accepted; send audio as an input_audio part (base64 data)",
}
# Standard fields this server cannot honour: refused rather than silently ignored.
_UNSUPPORTED = {
    "tools": "tool calls are not supported",
    "functions": "function calls are not supported",
    "audio": "audio output is not supported",
    "logit_bias": "logit_bias is not supported",
}
_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)


@dataclass
class Limits:
    """What one request may ask of the server. Every field has a `musicllm serve` flag."""

    max_clip_bytes: int = 25 * MiB  # one decoded input_audio upload (the OpenAI audio limit)
    max_request_bytes: int = 80 * MiB  # the whole JSON body (base64 adds a third)
    max_audio_seconds: float = MAX_AUDIO_SECONDS  # one clip, read from its header before decoding
    max_clips: int = 8  # input_audio parts in one conversation
    max_tokens: int = 1024  # the most tokens a request may ask to generate
    default_max_tokens: int = 256  # when the request names none
    # All text of a conversation, counted before anything tokenises it: longer than any context
    # these models have (a token is rarely under 2 characters), far shorter than what would stall.
    max_text_chars: int = 200_000
    max_concurrent: int = 128  # requests in flight at once; more get 503 with Retry-After

    def __post_init__(self):
        for name in ("max_clip_bytes", "max_request_bytes", "max_audio_seconds", "max_clips", "max_tokens",
                     "default_max_tokens", "max_text_chars", "max_concurrent"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)}")
        self.default_max_tokens = min(self.default_max_tokens, self.max_tokens)


class APIError(Exception):
    """A request the server refuses: HTTP status plus the OpenAI error fields."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass
class StreamOptions:
    """The parts of a request that shape the response rather than the generation."""

    model: str
    stream: bool = False
    include_usage: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


def bad(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def _require(body: dict, name: str):
    if body.get(name) is None:
        raise bad(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
    return body[name]


def _number(body: dict, name: str, low: float, high: float, integer: bool = False):
    value = body[name]
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise bad(f"'{name}' must be {'an integer' if integer else 'a number'}, got {value!r}.", name, "invalid_type")
    if not low <= value <= high:
        raise bad(f"'{name}' must be between {low} and {high}, got {value}.", name)
    return value


def parse_options(body: dict, engine) -> StreamOptions:
    """Model, stream and stream_options; 404 for a model this server does not serve."""
    model = _require(body, "model")
    if model != engine.model_id:
        raise APIError(404, f"The model '{model}' does not exist; this server serves '{engine.model_id}'.",
                       param="model", code="model_not_found")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise bad(f"'stream' must be a boolean, got {stream!r}.", "stream", "invalid_type")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad("'stream_options' must be an object.", "stream_options", "invalid_type")
    if options and not stream:
        raise bad("'stream_options' is only allowed when 'stream' is true.", "stream_options")
    return StreamOptions(model=model, stream=stream, include_usage=bool(options.get("include_usage")))


def parse_sampling(body: dict, limits: Limits) -> dict:
    """max_tokens (or max_completion_tokens), temperature, top_p, frequency_penalty and
    no_repeat_ngram (ours, not OpenAI's: never repeat a run of that many answer tokens nor name
    a list's item twice, 0 = off; the engine's defaults when absent), seed, stop, n."""
    for name, reason in _UNSUPPORTED.items():
        if body.get(name):
            raise bad(f"'{name}': {reason}.", name, "unsupported_parameter")
    if body.get("n") is not None and _number(body, "n", 1, 1, integer=True) != 1:
        raise bad("'n' must be 1.", "n")
    fmt = body.get("response_format")
    if fmt and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise bad("'response_format' must be {\"type\": \"text\"}.", "response_format", "unsupported_parameter")
    sampling = {}
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    if body.get(name) is not None:
        sampling["max_tokens"] = _number(body, name, 1, limits.max_tokens, integer=True)
    else:
        sampling["max_tokens"] = limits.default_max_tokens
    if body.get("temperature") is not None:
        sampling["temperature"] = float(_number(body, "temperature", 0, 2))
    if body.get("top_p") is not None:
        sampling["top_p"] = float(_number(body, "top_p", 0, 1))
        if sampling["top_p"] == 0:
            raise bad("'top_p' must be greater than 0.", "top_p")
    if body.get("frequency_penalty") is not None:
        sampling["frequency_penalty"] = float(_number(body, "frequency_penalty", -2, 2))
    if body.get("no_repeat_ngram") is not None:
        sampling["no_repeat_ngram"] = _number(body, "no_repeat_ngram", 0, 64, integer=True)
    if body.get("seed") is not None:
        sampling["seed"] = _number(body, "seed", -(2**63), 2**63 - 1, integer=True)
    stop = body.get("stop")
    if stop is not None:
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
            raise bad("'stop' must be a non-empty string or a list of up to 4 of them.", "stop", "invalid_type")
        sampling["stop"] = stop
    return sampling


def audio_bytes(part: dict, where: str, limits: Limits) -> bytes:
    """The raw file bytes of one input_audio part, after checking its shape, format and size."""
    audio = part.get("input_audio")
    if not isinstance(audio, dict):
        raise bad(f"{where}.input_audio must be an object with 'data' and 'format'.", f"{where}.input_audio",
                  "invalid_type")
    data, fmt = audio.get("data"), audio.get("format")
    if data is None:
        raise bad(f"Missing required parameter: '{where}.input_audio.data' (base64 audio).",
                  f"{where}.input_audio.data", "missing_required_parameter")
    if not isinstance(data, str):
        raise bad(f"{where}.input_audio.data must be a string of base64 audio, got {type(data).__name__}.",
                  f"{where}.input_audio.data", "invalid_type")
    if not data:
        raise bad(f"{where}.input_audio.data is empty: the upload has no audio in it.",
                  f"{where}.input_audio.data", "empty_audio")
    if fmt not in AUDIO_FORMATS:
        raise bad(f"{where}.input_audio.format: unsupported audio format {fmt!r}; use one of "
                  f"{', '.join(AUDIO_FORMATS)}.", f"{where}.input_audio.format", "unsupported_audio_format")
    data = _DATA_URL.sub("", data, count=1)
    # 4 base64 characters carry 3 bytes: refuse an oversized clip before decoding it.
    if len(data) * 3 // 4 > limits.max_clip_bytes + 3:
        raise APIError(413, f"{where}.input_audio: the audio is larger than the "
                            f"{limits.max_clip_bytes / MiB:g} MiB allowed per clip.",
                       param=f"{where}.input_audio.data", code="audio_too_large")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad(f"{where}.input_audio.data is not valid base64.", f"{where}.input_audio.data", "invalid_base64")
    return raw


def _content(message: dict, where: str, role: str, limits: Limits, uploads: list) -> str:
    """A message's content as text with "<|audio|>" marks; its audio parts appended to `uploads`."""
    content = message.get("content")
    if isinstance(content, str):
        parts = [{"type": "text", "text": content}]
    elif isinstance(content, list) and content:
        parts = content
    else:
        raise bad(f"{where}.content must be a string or a non-empty list of content parts.",
                  f"{where}.content", "invalid_type")
    pieces = []
    for j, part in enumerate(parts):
        at = f"{where}.content[{j}]" if isinstance(content, list) else f"{where}.content"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise bad(f"{at}.text must be a string.", f"{at}.text", "invalid_type")
            if AUDIO_TOKEN in text:
                raise bad(f"{at}: text must not contain the reserved marker {AUDIO_TOKEN}; "
                          "send audio as input_audio parts.", f"{at}.text")
            # The model learned "<|audio|>\n" + question: an audio part followed by text gets the newline.
            if pieces and pieces[-1] == AUDIO_TOKEN and text and not text[0].isspace():
                text = "\n" + text
            pieces.append(text)
        elif kind == "input_audio":
            if role != "user":
                raise bad(f"{at}: input_audio parts are only allowed in user messages.", at)
            if len(uploads) >= limits.max_clips:
                raise bad(f"{at}: more than {limits.max_clips} audio clips in one request.", at, "too_many_clips")
            uploads.append((at + ".input_audio", audio_bytes(part, at, limits)))
            pieces.append(AUDIO_TOKEN)
        elif kind in _FORBIDDEN_PARTS:
            raise bad(f"{at}: content part type {kind!r} is not accepted: {_FORBIDDEN_PARTS[kind]}.", f"{at}.type",
                      "unsupported_content")
        else:
            raise bad(f"{at}: unknown content part type {kind!r}; use 'text' or 'input_audio'.", f"{at}.type",
                      "unsupported_content")
    return "".join(pieces)


def parse_messages(body: dict, limits: Limits) -> tuple[list[dict], list[tuple[str, bytes]]]:
    """Messages with "<|audio|>" marks, and the (field name, file bytes) of each clip, in order."""
    messages = _require(body, "messages")
    if not isinstance(messages, list) or not messages:
        raise bad("'messages' must be a non-empty list.", "messages", "invalid_type")
    parsed, uploads, characters = [], [], 0
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object with 'role' and 'content'.", where, "invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise bad(f"{where}.role: unsupported role {role!r}; use system, user or assistant.", f"{where}.role")
        parsed.append({"role": ROLES[role], "content": _content(message, where, role, limits, uploads)})
        characters += len(parsed[-1]["content"])
        if characters > limits.max_text_chars:
            raise bad(f"messages: the conversation's text is longer than the {limits.max_text_chars:,} characters "
                      f"allowed (passed at {where}).", "messages", "text_too_long")
    if parsed[-1]["role"] == "assistant":
        raise bad("The last message must not be an assistant message.", f"messages[{len(parsed) - 1}].role")
    return parsed, uploads


def decode_clip(engine, name: str, raw: bytes, limits: Limits):
    """Header check for the duration limit (cheap), then the engine's decoder (AudioError on bad audio)."""
    seconds = audio_duration(raw, name=name)
    if seconds > limits.max_audio_seconds:
        raise AudioError(f"{name}: audio is {seconds:.1f} s long; the limit is {limits.max_audio_seconds:g} s per clip")
    return engine.load_audio(raw, name=name)


async def parse_chat_request(body, engine, limits: Limits) -> tuple[GenerationRequest, StreamOptions]:
    """A parsed JSON body -> the engine request and the response options. Raises `APIError`, or
    `AudioError` for audio that does not decode (the message names the content part)."""
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", None, "invalid_type")
    options = parse_options(body, engine)
    sampling = parse_sampling(body, limits)
    messages, uploads = parse_messages(body, limits)
    clips = []
    for name, raw in uploads:
        # Decoding and resampling take real CPU time: off the event loop, so other requests go on.
        clips.append(await anyio.to_thread.run_sync(decode_clip, engine, name, raw, limits))
    return GenerationRequest(messages=messages, clips=clips, **sampling), options


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(completion: Completion, options: StreamOptions) -> dict:
    return {
        "id": options.id, "object": "chat.completion", "created": options.created, "model": options.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text},
                     "logprobs": None, "finish_reason": completion.finish_reason}],
        "usage": usage(completion.prompt_tokens, completion.completion_tokens),
    }


def chunk_body(options: StreamOptions, delta: dict | None, finish_reason: str | None = None,
               usage_: dict | None = None) -> dict:
    """One `chat.completion.chunk`; `delta=None` is the usage-only chunk (no choices)."""
    chunk = {"id": options.id, "object": "chat.completion.chunk", "created": options.created,
             "model": options.model,
             "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                                   "finish_reason": finish_reason}]}
    if options.include_usage:
        chunk["usage"] = usage_  # null on every chunk but the last, as OpenAI does
    return chunk


# ---- the client side: what the web page and `musicllm chat` send ----

def clip_part(path: str | os.PathLike, max_bytes: int = MAX_CLIP_BYTES) -> dict:
    """The `input_audio` content part for a clip file: its own bytes when the gateway reads the
    format and they are small enough, else the decoded audio as 16-bit mono FLAC at up to 24 kHz
    (the model hears mono). AudioError, naming the file, when it does not decode."""
    import soundfile as sf

    name = Path(path).name
    audio_duration(path, name=name)  # header check: a corrupt file fails here with its name
    fmt = _SENT_AS_IS.get(sf.info(path).format)
    if fmt and os.path.getsize(path) <= max_bytes:
        return {"type": "input_audio", "input_audio": {"data": base64.b64encode(Path(path).read_bytes()).decode(),
                                                       "format": fmt}}
    # 24 kHz covers what music encoders hear (MERT: 24 kHz) and keeps 10 minutes of mono FLAC
    # under the gateway's 25 MiB per clip.
    rate = min(sf.info(path).samplerate, 24000)
    buffer = io.BytesIO()
    sf.write(buffer, load_audio(path, rate, name=name), rate, format="FLAC", subtype="PCM_16")
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(buffer.getvalue()).decode(),
                                                   "format": "flac"}}
