"""The API gateway, as API users meet it: the official `openai` client against a real uvicorn
server on 127.0.0.1, in front of the real vLLM server engine (and the transformers engine).

The checkpoint (tests/serving_fixtures.py) is overfit so that greedy answers about the two
serving clips are known sentences: a right answer shows the audio reached the model.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from musicllm.engines import GenerationRequest
from eval.benchmarks.gateway import flac_claiming
from serving_fixtures import CONTEXT, FOLLOW_UP, SERVING_ANSWERS, SERVING_CLIPS, SYSTEM, VLLM_KEY, serving_conversation
from vllm_server import free_port

MODEL = "musicllm"
KEY = "test-secret"
# Small limits, so that refusing too large / too long input costs little.
LIMITS = dict(max_clip_bytes=1024 * 1024, max_request_bytes=2 * 1024 * 1024, max_audio_seconds=10.0, max_clips=4,
              max_text_chars=50_000)
SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}


def encode(clip: np.ndarray, fmt: str = "wav", sample_rate: int = 16000) -> str:
    """Base64 of `clip` as a `fmt` file."""
    buffer = io.BytesIO()
    sf.write(buffer, clip, sample_rate, format=fmt.upper(), subtype=SUBTYPES[fmt])
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def audio_part(data: str, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


def ask(kind: str, fmt: str = "wav", follow_up: bool = False) -> list[dict]:
    """The question about SERVING_CLIPS[kind] as API users send it; with `follow_up`, the second
    turn (no audio in it) after the first answer."""
    messages = [SYSTEM, {"role": "user", "content": [audio_part(encode(SERVING_CLIPS[kind], fmt), fmt),
                                                     {"type": "text", "text": "What is playing?"}]}]
    if follow_up:
        messages += [{"role": "assistant", "content": SERVING_ANSWERS[kind][0]}, {"role": "user", "content": FOLLOW_UP}]
    return messages


_DIRECT: dict = {}


def direct(engine, kind: str, turns: int = 1) -> str:
    """The engine's own greedy answer to the fixture's conversation (no gateway in between)."""
    if (id(engine), kind, turns) not in _DIRECT:
        request = GenerationRequest(serving_conversation(kind, turns), [SERVING_CLIPS[kind]], max_tokens=32)
        _DIRECT[id(engine), kind, turns] = engine.complete_batch([request])[0].text
    return _DIRECT[id(engine), kind, turns]


def heard(answer: str, kind: str, turns: int = 1) -> bool:
    """The answer starts the way the model answers about this clip ("A calm" piano, "Fast drums";
    "About 72" vs "About 160" BPM): the audio reached the model."""
    return answer.startswith(" ".join(SERVING_ANSWERS[kind][turns - 1].split()[:2]))


class Gateway:
    """A running gateway: its base URL, an `openai` client, and the engine behind it."""

    def __init__(self, url: str, engine, api_key: str | None = None):
        self.url, self.engine = url, engine
        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key=api_key or "unused", max_retries=0, timeout=120)

    def answer(self, messages, **kwargs) -> str:
        return self.client.chat.completions.create(model=MODEL, messages=messages, **kwargs).choices[0].message.content

    def healthy(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def vllm_engine(serving_checkpoint, vllm_url):
    from musicllm.vllm_engine import VLLMServerEngine

    engine = VLLMServerEngine(serving_checkpoint, vllm_url, api_key=VLLM_KEY)
    yield engine
    engine.close()


def _running(engine, **options):
    from serve.gateway.api import create_app, serve_in_thread
    from serve.gateway.openai_format import Limits

    return serve_in_thread(create_app(engine, limits=Limits(**LIMITS), **options))


@pytest.fixture(scope="module")
def vllm_gateway(vllm_engine):
    with _running(vllm_engine) as url:
        yield Gateway(url, vllm_engine)


@pytest.fixture(scope="module")
def transformers_gateway(transformers_engine):
    with _running(transformers_engine) as url:
        yield Gateway(url, transformers_engine)


@pytest.fixture(params=["vllm", "transformers"])
def gateway(request):
    return request.getfixturevalue(f"{request.param}_gateway")


@pytest.mark.parametrize("kind", ["piano", "drums"])
def test_single_turn_answers_about_the_audio(gateway, kind):
    reply = gateway.client.chat.completions.create(model=MODEL, messages=ask(kind), max_tokens=32)
    answer = reply.choices[0].message.content
    assert heard(answer, kind) and answer == direct(gateway.engine, kind)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.object == "chat.completion" and reply.model == MODEL
    assert reply.usage.prompt_tokens > 6 and 0 < reply.usage.completion_tokens <= 32  # 3 s clip = 6 audio tokens
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


@pytest.mark.parametrize("kind", ["piano", "drums"])
def test_each_question_gets_its_own_kind_of_answer(gateway, kind):
    """An API user asks what is playing, then the key, then the tempo: each answer says what was
    asked (eval.follow's reading), and no two are the same sentence."""
    from eval.follow import kinds_mentioned, responds

    key_question = [SYSTEM, {"role": "user", "content": [audio_part(encode(SERVING_CLIPS[kind], "wav"), "wav"),
                                                         {"type": "text", "text": "What key is this in?"}]}]
    playing = gateway.answer(ask(kind), max_tokens=32)
    key = gateway.answer(key_question, max_tokens=32)
    tempo = gateway.answer(ask(kind, follow_up=True), max_tokens=32)
    assert responds("instruments", playing) and responds("key", key) and responds("tempo", tempo), (playing, key, tempo)
    assert "tempo" not in kinds_mentioned(key) and "key" not in kinds_mentioned(tempo)
    assert len({playing, key, tempo}) == 3


@pytest.mark.parametrize("kind", ["piano", "drums"])
def test_multi_turn_keeps_audio_from_the_first_turn(gateway, kind):
    answer = gateway.answer(ask(kind, follow_up=True), max_completion_tokens=32)
    assert heard(answer, kind, turns=2) and answer == direct(gateway.engine, kind, turns=2)


def test_streaming_sends_the_same_answer_in_pieces(gateway):
    stream = gateway.client.chat.completions.create(model=MODEL, messages=ask("drums"), max_tokens=32, stream=True,
                                                    stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == direct(gateway.engine, "drums") and len(pieces) > 3
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= len(pieces)
    assert len({c.id for c in chunks}) == 1


def test_stop_max_tokens_seed_and_the_repetition_rules_reach_the_engine(gateway):
    words = direct(gateway.engine, "piano").split()
    create = gateway.client.chat.completions.create
    stopped = create(model=MODEL, messages=ask("piano"), max_tokens=32, stop=[" " + words[2]])
    assert stopped.choices[0].message.content == " ".join(words[:2]) and stopped.choices[0].finish_reason == "stop"
    cut = create(model=MODEL, messages=ask("piano"), max_tokens=2)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 2
    sampled = [create(model=MODEL, messages=ask("drums"), max_tokens=12, temperature=1.5, top_p=0.9, seed=7)
               .choices[0].message.content for _ in range(2)]
    assert sampled[0] == sampled[1]
    story = [{"role": "user", "content": "Tell me a long story about dragons."}]  # the fixture loops on it
    answers = looping, default, penalised, blocked = [
        create(model=MODEL, messages=story, max_tokens=24, **settings).choices[0].message.content for settings in (
            {"frequency_penalty": 0, "extra_body": {"no_repeat_ngram": 0}}, {}, {"frequency_penalty": 2.0},
            {"frequency_penalty": 0, "extra_body": {"no_repeat_ngram": 2}})]
    assert " v v v v v" in looping and " v v v" not in default and " v v" not in penalised, answers
    assert " v v" in blocked and " v v v" not in blocked, answers


def test_stream_wire_format_ends_with_done(vllm_gateway):
    body = {"model": MODEL, "messages": ask("piano"), "max_tokens": 8, "stream": True}
    with httpx.stream("POST", f"{vllm_gateway.url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[1][6:])["object"] == "chat.completion.chunk"


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_compressed_formats_are_decoded(vllm_gateway, fmt):
    assert vllm_gateway.answer(ask("piano", fmt), max_tokens=32) == direct(vllm_gateway.engine, "piano")


def test_models_and_health(gateway):
    assert [m.id for m in gateway.client.models.list().data] == [MODEL]
    assert gateway.client.models.retrieve(MODEL).id == MODEL
    health = httpx.get(f"{gateway.url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["model"] == MODEL


def test_sixteen_concurrent_requests_are_all_answered(gateway):
    kinds = ["piano", "drums"] * 8
    batches_before = getattr(gateway.engine, "batches_run", 0)

    async def everyone():
        client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=120)
        try:
            return await asyncio.gather(*(client.chat.completions.create(model=MODEL, messages=ask(k), max_tokens=32)
                                          for k in kinds))
        finally:
            await client.close()

    replies = asyncio.run(everyone())
    assert [r.choices[0].message.content for r in replies] == [direct(gateway.engine, k) for k in kinds]
    if hasattr(gateway.engine, "batches_run"):  # the transformers engine: served together, not one by one
        assert gateway.engine.batches_run - batches_before < len(kinds)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), dtype=np.float32)


def with_part(part: dict) -> list[dict]:
    return [{"role": "user", "content": [part, {"type": "text", "text": "What is playing?"}]}]


BAD_REQUESTS = {  # name -> (request keyword arguments, status, error code, words the message must contain)
    "corrupt audio": (dict(messages=with_part(audio_part(base64.b64encode(b"RIFF" + bytes(300)).decode()))),
                      400, "invalid_audio", "corrupt audio"),
    "not audio": (dict(messages=with_part(audio_part(base64.b64encode(b"hello, world! " * 30).decode(), "mp3"))),
                  400, "invalid_audio", "a text file, not audio"),
    "unsupported format": (dict(messages=with_part(audio_part(encode(silence(1)), "aac"))),
                           400, "unsupported_audio_format", "'aac'"),
    "not base64": (dict(messages=with_part(audio_part("not base64!!"))), 400, "invalid_base64", "base64"),
    "too long": (dict(messages=with_part(audio_part(encode(silence(12))))), 400, "invalid_audio", "limit is 10 s"),
    "too large": (dict(messages=with_part(audio_part(base64.b64encode(bytes(1300 * 1024)).decode()))),
                  413, "audio_too_large", "1 MiB"),
    "too many clips": (dict(messages=[{"role": "user", "content": [audio_part(encode(silence(1)))] * 5}]),
                       400, "too_many_clips", "more than 4"),
    "audio url": (dict(messages=with_part({"type": "audio_url", "audio_url": {"url": "file:///etc/passwd"}})),
                  400, "unsupported_content", "not fetched"),
    "image": (dict(messages=with_part({"type": "image_url", "image_url": {"url": "http://127.0.0.1/x.png"}})),
              400, "unsupported_content", "images"),
    "unknown model": (dict(model="gpt-4o-audio-preview"), 404, "model_not_found", "gpt-4o-audio-preview"),
    "missing messages": (dict(messages=None), 400, "missing_required_parameter", "'messages'"),
    "empty content": (dict(messages=[{"role": "user", "content": []}]), 400, "invalid_type", "messages[0].content"),
    "max_tokens over the cap": (dict(max_tokens=100_000), 400, "invalid_value", "max_tokens"),
    "frequency_penalty out of range": (dict(frequency_penalty=3), 400, "invalid_value", "'frequency_penalty' must be"),
    "no_repeat_ngram not an integer": (dict(no_repeat_ngram=2.5), 400, "invalid_type",
                                       "'no_repeat_ngram' must be an integer"),
    "prompt longer than the context": (dict(messages=[{"role": "user", "content": "piano " * 2000}]),
                                       400, "invalid_request", "context"),
    "request body too large": (dict(messages=[{"role": "user", "content": "x" * (3 * 1024 * 1024)}]),
                               413, "request_too_large", "2 MiB"),
    "text too long": (dict(messages=[{"role": "user", "content": "piano " * 9000}, {"role": "user", "content": "hi"}]),
                      400, "text_too_long", "longer than the 50,000 characters allowed (passed at messages[0])"),
    "empty audio data": (dict(messages=with_part(audio_part(""))), 400, "empty_audio", "has no audio in it"),
    "audio data not a string": (dict(messages=with_part({"type": "input_audio", "input_audio": {"data": 12345,
                                                                                                "format": "wav"}})),
                                400, "invalid_type", "must be a string of base64 audio, got int"),
    # 4 channels x 96 kHz x 590 s, in a few kB: refused from the header, before any decoding.
    "audio that decodes to gigabytes": (dict(messages=with_part(audio_part(
        base64.b64encode(flac_claiming(4, 96000, 590)).decode(), "flac"))),
        400, "invalid_audio", "226,560,000 samples (4 channels x 96000 Hz x 590.0 s)"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(gateway, case):
    kwargs, status, code, words = BAD_REQUESTS[case]
    request = dict(model=MODEL, messages=ask("piano"), max_tokens=16) | kwargs
    if request["messages"] is None:
        del request["messages"]
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json=request, timeout=60)
    error = response.json()["error"]
    assert response.status_code == status, error
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    assert error["type"] == "invalid_request_error" and words in error["message"]
    assert gateway.healthy()


def test_a_refused_streaming_request_gets_a_400_not_a_broken_stream(gateway):
    with pytest.raises(openai.BadRequestError, match="context"):
        gateway.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "piano " * 2000}],
                                               stream=True)
    assert gateway.healthy()


class BreaksMidway:
    """The transformers engine, failing after its second streamed piece."""

    def __init__(self, engine):
        self.engine, self.name, self.model_id, self.sample_rate = engine, "breaks", engine.model_id, engine.sample_rate

    def load_audio(self, source, name=None):
        return self.engine.load_audio(source, name=name)

    async def problem(self):
        return await self.engine.problem()

    async def stream(self, request):
        count = 0
        async for delta in self.engine.stream(request):
            count += 1
            if count > 2:
                raise RuntimeError("the engine fell over")
            yield delta


def test_an_engine_failure_mid_stream_reaches_the_client_as_an_error(transformers_engine):
    with _running(BreaksMidway(transformers_engine)) as url:
        gateway = Gateway(url, None)
        stream = gateway.client.chat.completions.create(model=MODEL, messages=ask("piano"), stream=True)
        with pytest.raises(openai.APIError, match="Internal server error"):
            list(stream)
        assert gateway.healthy()


def test_the_openai_client_raises_on_bad_audio_with_the_message(vllm_gateway):
    with pytest.raises(openai.BadRequestError) as raised:
        vllm_gateway.answer(BAD_REQUESTS["corrupt audio"][0]["messages"])
    assert raised.value.body["param"] == "messages[0].content[0].input_audio"
    assert vllm_gateway.answer(ask("piano"), max_tokens=32) == direct(vllm_gateway.engine, "piano")


@pytest.mark.parametrize("raw, words", [(b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"),
                                        (json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
                                         "'model'"),
                                        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply")])
def test_malformed_bodies_get_400(transformers_gateway, raw, words):
    response = httpx.post(f"{transformers_gateway.url}/v1/chat/completions", content=raw, timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400 and words in response.json()["error"]["message"]


def test_unknown_routes_and_methods_get_openai_errors(transformers_gateway):
    missing = httpx.post(f"{transformers_gateway.url}/v1/completions", json={}, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(f"{transformers_gateway.url}/v1/chat/completions", timeout=10)
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_api_key_is_required_when_configured(vllm_engine):
    with _running(vllm_engine, api_key=KEY) as url:
        wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0, timeout=60)
        with pytest.raises(openai.AuthenticationError) as raised:
            wrong.chat.completions.create(model=MODEL, messages=ask("piano"))
        assert raised.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        missing = httpx.post(f"{url}/v1/chat/completions", json={"model": MODEL, "messages": ask("piano")}, timeout=10)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # probes need no key
        keyed = Gateway(url, vllm_engine, api_key=KEY)
        assert keyed.answer(ask("drums"), max_tokens=32) == direct(vllm_engine, "drums")


class SlowStream:
    """The transformers engine with a pause between streamed pieces, recording how each stream
    ended: enough time for a client to walk away mid-answer."""

    def __init__(self, engine, pause: float):
        self.engine, self.name, self.model_id, self.sample_rate = engine, "slow", engine.model_id, engine.sample_rate
        self.pause = pause
        self.ended: list[str] = []
        self.in_flight = self.most_in_flight = 0

    def load_audio(self, source, name=None):
        return self.engine.load_audio(source, name=name)

    async def problem(self):
        return await self.engine.problem()

    async def stream(self, request):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        how = "cancelled"
        try:
            async for delta in self.engine.stream(request):
                await asyncio.sleep(self.pause)
                if delta.finish_reason is not None:
                    how = "finished"
                yield delta
        finally:
            self.in_flight -= 1
            self.ended.append(how)


def test_client_disconnect_stops_the_engine_stream(transformers_engine):
    slow = SlowStream(transformers_engine, pause=0.3)
    with _running(slow) as url:
        body = {"model": MODEL, "messages": ask("piano"), "max_tokens": 32, "stream": True}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
            next(response.iter_lines())  # the first event arrived; now the client goes away
        deadline = time.monotonic() + 10
        while not slow.ended and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.ended == ["cancelled"]


def test_streams_run_side_by_side_not_one_after_another(transformers_engine):
    slow = SlowStream(transformers_engine, pause=0.05)
    with _running(slow) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)

        def one(kind):
            stream = client.chat.completions.create(model=MODEL, messages=ask(kind), max_tokens=32, stream=True)
            answers.append("".join(c.choices[0].delta.content or "" for c in stream))

        answers: list[str] = []
        threads = [threading.Thread(target=one, args=(kind,)) for kind in ("piano", "drums", "piano", "drums")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert sorted(answers) == sorted(direct(transformers_engine, k) for k in ("piano", "drums", "piano", "drums"))
    assert slow.most_in_flight == 4 and slow.ended == ["finished"] * 4


def test_more_requests_than_the_limit_get_503_with_retry_after_and_health_still_answers(transformers_engine):
    from serve.gateway.api import create_app, serve_in_thread
    from serve.gateway.openai_format import Limits

    slow = SlowStream(transformers_engine, pause=0.4)
    body = {"model": MODEL, "messages": ask("piano"), "max_tokens": 6, "stream": True}
    with serve_in_thread(create_app(slow, limits=Limits(max_concurrent=1))) as url:
        first: list[str] = []

        def hold_the_only_slot():
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as response:
                first.extend(response.iter_lines())

        holder = threading.Thread(target=hold_the_only_slot)
        holder.start()
        deadline = time.monotonic() + 30
        while slow.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        busy = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "server_busy" and "retry" in busy.json()["error"]["message"]
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200  # a busy server is not a dead one
        holder.join(timeout=60)
        assert "data: [DONE]" in first  # the admitted stream finished
        again = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
        assert again.status_code == 200 and "data: [DONE]" in again.text  # the slot is free again


def test_a_huge_text_request_is_refused_at_once_while_health_keeps_answering(transformers_engine):
    """20 MB of text used to be tokenised on the event loop: /health waited 17.9 s, and 60 MB
    grew the gateway by 7 GB. Now the characters are counted first, and CPU work is off the loop."""
    from serve.gateway.api import create_app, serve_in_thread

    huge = {"model": MODEL, "messages": [{"role": "user", "content": "la " * (7 * 1024 * 1024)}]}  # 21 MB
    with serve_in_thread(create_app(transformers_engine)) as url:  # the default limits
        outcome = {}

        def send():
            started = time.monotonic()
            outcome["response"] = httpx.post(f"{url}/v1/chat/completions", json=huge, timeout=60)
            outcome["seconds"] = time.monotonic() - started

        sender = threading.Thread(target=send)
        sender.start()
        worst = 0.0
        while sender.is_alive():
            started = time.monotonic()
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.1)
        sender.join()
    response = outcome["response"]
    assert response.status_code == 400 and response.json()["error"]["code"] == "text_too_long"
    assert "200,000 characters" in response.json()["error"]["message"]
    assert outcome["seconds"] < 5 and worst < 1.0, (outcome["seconds"], worst)


def vllm_processes() -> list:
    import psutil

    found = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "vllm.entrypoints.openai.api_server" in " ".join(process.cmdline()):
                found.append(process)
    return found


@pytest.mark.timeout(900)
def test_when_vllm_dies_the_gateway_answers_503_says_so_on_health_and_recovers(serving_checkpoint, tmp_path):
    """Fault injection: the vLLM server under the gateway is killed. Requests get a clear 503
    (not a 500), /health reports it, the server is started again, and answers come back the same;
    leaving stops everything."""
    from musicllm.vllm_engine import VLLMServerEngine
    from musicllm.vllm_server import new_api_key, start_vllm_server

    key = new_api_key()
    with start_vllm_server(serving_checkpoint, tmp_path / "vllm", max_model_len=CONTEXT, start_timeout=240.0,
                           api_key=key, restarts=1) as url:
        engine = VLLMServerEngine(serving_checkpoint, url, api_key=key)
        try:
            with _running(engine) as gateway_url:
                gateway = Gateway(gateway_url, engine)
                before = gateway.answer(ask("piano"), max_tokens=32)
                port = url.rsplit(":", 1)[1].split("/")[0]
                (server,) = [p for p in vllm_processes() if port in p.cmdline()]
                server.kill()  # a crash: no chance to clean up
                server.wait(timeout=30)

                body = {"model": MODEL, "messages": ask("piano"), "max_tokens": 8}
                down = httpx.post(f"{gateway_url}/v1/chat/completions", json=body, timeout=60)
                assert down.status_code == 503 and down.headers["retry-after"] == "5", down.text
                error = down.json()["error"]
                assert error["code"] == "engine_unavailable" and "vLLM server" in error["message"]
                health = httpx.get(f"{gateway_url}/health", timeout=10)
                assert health.status_code == 503 and health.json()["status"] == "unavailable"
                assert "vLLM server" in health.json()["error"]

                deadline = time.monotonic() + 300
                while httpx.get(f"{gateway_url}/health", timeout=10).status_code != 200:
                    assert time.monotonic() < deadline, (tmp_path / "vllm" / "vllm.log").read_text()[-3000:]
                    time.sleep(2)
                assert gateway.answer(ask("piano"), max_tokens=32) == before  # back, and the same model
        finally:
            engine.close()
    assert [p for p in vllm_processes() if port in p.cmdline()] == []  # the restarted server is stopped too


def test_musicllm_serve_answers_and_stops_on_ctrl_c(serving_checkpoint, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "musicllm.cli", "serve", "--checkpoint", str(serving_checkpoint),
               "--engine", "transformers", "--threads", "1", "--port", str(port), "--api-key", KEY,
               "--max-audio-seconds", "5"]
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while not _answers(f"{url}/health"):
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        gateway = Gateway(url, None, api_key=KEY)
        assert heard(gateway.answer(ask("piano"), max_tokens=32), "piano")
        with pytest.raises(openai.BadRequestError, match="the limit is 5 s"):  # --max-audio-seconds reached the app
            gateway.answer(with_part(audio_part(encode(silence(6)))))
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
