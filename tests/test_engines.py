"""The generation engines: transformers (batched, streaming) and vLLM (server and offline) give the
same greedy answers about a clip, stream what they answer, batch concurrent users, refuse bad
requests by name, stop work nobody waits for any more, and say which vLLM server failed and how
(a FakeVLLM plays the failures the real one is never made to have)."""

import asyncio
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from musicllm.engines import EngineRequestError, EngineUnavailable, GenerationRequest, repeating_tokens, word_starts
from serving_fixtures import CONTEXT, KEY_QUESTION, SERVING_ANSWERS, SERVING_CLIPS, VLLM_KEY, serving_conversation

CASES = [(kind, turns) for kind in SERVING_CLIPS for turns in (1, 2)]  # turn 2: audio only in turn 1


def request(kind: str = "piano", turns: int = 1, **settings) -> GenerationRequest:
    return GenerationRequest(serving_conversation(kind, turns), [SERVING_CLIPS[kind]], **{"max_tokens": 24, **settings})


def expected(kind: str, turns: int) -> str:
    return SERVING_ANSWERS[kind][turns - 1]


async def collect(stream) -> list:
    return [delta async for delta in stream]


def test_transformers_engine_answers_about_the_clip(transformers_engine):
    engine = transformers_engine
    assert (engine.name, engine.model_id, engine.sample_rate) == ("transformers", "musicllm", 16000)
    for kind, turns in CASES:
        completion = asyncio.run(engine.complete(request(kind, turns)))
        assert completion.text == expected(kind, turns)
        assert completion.finish_reason == "stop"
        assert completion.prompt_tokens > 50 and completion.completion_tokens > 5


def check_each_question_gets_its_own_kind_of_answer(engine) -> None:
    """What is playing, the tempo (a follow-up), the key: each answer says what was asked (as
    eval.follow reads answers), and never the same sentence for two questions."""
    from eval.follow import kinds_mentioned, responds

    for kind, clip in SERVING_CLIPS.items():
        playing = asyncio.run(engine.complete(request(kind, 1))).text
        tempo = asyncio.run(engine.complete(request(kind, 2))).text
        key = asyncio.run(engine.complete(GenerationRequest(serving_conversation(kind, question=KEY_QUESTION), [clip],
                                                            max_tokens=24))).text
        assert responds("instruments", playing) and "key" not in kinds_mentioned(playing), playing
        assert responds("tempo", tempo) and "key" not in kinds_mentioned(tempo), tempo
        assert responds("key", key) and kinds_mentioned(key) <= {"key", "mode"}, key
        assert len({playing, tempo, key}) == 3


def test_each_question_gets_its_own_kind_of_answer(transformers_engine):
    check_each_question_gets_its_own_kind_of_answer(transformers_engine)


def test_streamed_deltas_concatenate_to_the_completion(transformers_engine):
    deltas = asyncio.run(collect(transformers_engine.stream(request("drums", 2))))
    assert len(deltas) > 3 and all(d.finish_reason is None for d in deltas[:-1])
    assert "".join(d.text for d in deltas) == expected("drums", 2)
    completion = asyncio.run(transformers_engine.complete(request("drums", 2)))
    assert (deltas[-1].finish_reason, deltas[-1].prompt_tokens, deltas[-1].completion_tokens) == (
        "stop", completion.prompt_tokens, completion.completion_tokens)


def test_stop_strings_and_max_tokens_end_the_answer(transformers_engine):
    engine = transformers_engine
    stopped = asyncio.run(collect(engine.stream(request("piano", stop=["played", "quiet"]))))
    assert "".join(d.text for d in stopped) == "A calm solo piano, "  # the stop string is never sent
    assert stopped[-1].finish_reason == "stop"
    short = asyncio.run(engine.complete(request("piano", max_tokens=3)))
    assert (short.finish_reason, short.completion_tokens) == ("length", 3)
    assert expected("piano", 1).startswith(short.text) and short.text


def test_sixteen_concurrent_requests_share_generate_batches(transformers_engine):
    engine = transformers_engine
    requests = [request(kind, turns) for kind, turns in CASES] * 4
    before = engine.batches_run

    async def everyone():
        return await asyncio.gather(*(engine.complete(r) for r in requests))

    completions = asyncio.run(everyone())
    assert [c.text for c in completions] == [expected(k, t) for k, t in CASES] * 4  # batching changes nothing
    assert engine.batches_run - before < len(requests) / 2
    offline = engine.complete_batch(requests[:4])
    assert [c.text for c in offline] == [expected(k, t) for k, t in CASES]


@pytest.mark.parametrize("change, field", [
    (dict(clips=[]), "1 <|audio|> placeholders but 0 audio clips"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(temperature=-1.0), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(frequency_penalty=2.5), "frequency_penalty"),
    (dict(no_repeat_ngram=-1), "no_repeat_ngram"),
    (dict(no_repeat_ngram=True), "no_repeat_ngram"),
    (dict(messages=[{"role": "robot", "content": "hi"}], clips=[]), "messages[0].role"),
    (dict(clips=[np.zeros(16000 * 300, dtype=np.float32)]), "context of 512 tokens"),
])
def test_bad_requests_are_refused_by_name(transformers_engine, change, field):
    bad = request("piano")
    for name, value in change.items():
        setattr(bad, name, value)
    with pytest.raises(EngineRequestError, match=field.replace("|", r"\|").replace("[", r"\[").replace("]", r"\]")):
        asyncio.run(transformers_engine.complete(bad))


@pytest.fixture(scope="module")
def rambling_engine(tmp_path_factory):
    """An untrained model: its greedy answers run to max_tokens (no EOS), a long job to cancel."""
    from musicllm.engines import TransformersEngine
    from vllm_server import build_tiny_llm

    engine = TransformersEngine.from_checkpoint(build_tiny_llm(tmp_path_factory.mktemp("rambling")).parent)
    yield engine
    engine.close()


def test_cancelling_a_stream_stops_its_work(rambling_engine):
    engine = rambling_engine
    question = GenerationRequest([{"role": "user", "content": "<|audio|>\nWhat is playing?"}], [SERVING_CLIPS["piano"]],
                                 max_tokens=300)
    before = engine.tokens_generated
    full = asyncio.run(engine.complete(question))
    assert (full.finish_reason, full.completion_tokens) == ("length", 300)
    assert engine.tokens_generated - before == 300

    async def leave_after_first_delta():
        stream = engine.stream(question)
        async for _ in stream:
            break
        await stream.aclose()  # what a client disconnect does to the gateway's generator
        # The engine works one batch at a time: this answer comes after the cancelled one ended.
        return await engine.complete(GenerationRequest(question.messages, question.clips, max_tokens=2))

    before = engine.tokens_generated
    assert asyncio.run(leave_after_first_delta()).completion_tokens == 2
    assert engine.tokens_generated - before < 30


# ---- vLLM: a real server (the session's vllm_url) and in-process vllm.LLM ----

@pytest.fixture(scope="module")
def vllm_engine(serving_checkpoint, vllm_url):
    from musicllm.vllm_engine import VLLMServerEngine

    engine = VLLMServerEngine(serving_checkpoint, vllm_url, api_key=VLLM_KEY)
    yield engine
    engine.close()


def test_vllm_server_engine_gives_the_transformers_greedy_answers(vllm_engine, transformers_engine):
    assert (vllm_engine.name, vllm_engine.model_id) == ("vllm", "musicllm")
    for kind, turns in CASES:
        ours = asyncio.run(transformers_engine.complete(request(kind, turns)))
        theirs = asyncio.run(vllm_engine.complete(request(kind, turns)))
        assert theirs == ours  # text, finish reason and usage
        assert theirs.text == expected(kind, turns)
    assert vllm_engine.context == CONTEXT  # asked from the server


def test_the_penalty_and_the_block_on_repeated_runs_decode_alike_in_both_engines(vllm_engine, transformers_engine):
    """A question the fixture never learned, without audio, makes it loop ("v v v v v v") with both
    decoding rules off. A frequency penalty (vLLM's: the answer's own tokens, once per time said)
    breaks the loop, and so does the block on repeated runs of n tokens (here n = 2: " v v" may
    be said once); the vLLM server decodes each setting as the transformers engine does."""
    def ask(engine, **settings) -> str:
        question = GenerationRequest([{"role": "user", "content": "Tell me a long story about dragons."}], [],
                                     max_tokens=24, **settings)
        return asyncio.run(engine.complete(question)).text

    settings = (dict(frequency_penalty=0.0, no_repeat_ngram=0), dict(frequency_penalty=2.0, no_repeat_ngram=0),
                dict(frequency_penalty=0.0, no_repeat_ngram=2))
    looping, penalised, blocked = answers = [ask(transformers_engine, **one) for one in settings]
    assert " v v v v v v" in looping and " v v" not in penalised, answers
    assert " v v" in blocked and " v v v" not in blocked and blocked.count(" v v") == 1, answers
    assert [ask(vllm_engine, **one) for one in settings] == answers


def test_the_block_on_repeated_runs_never_cuts_a_word(tiny_tokenizer):
    """Only a token that begins a word (or is punctuation) is masked when it would repeat a run:
    masking the rest of a word ("tub|a") had the default model misspell it ("tubo") instead."""
    said = "It features trumpet and tuba. It is played on "
    ids = tiny_tokenizer.encode(said + "trumpet and tuba", add_special_tokens=False)
    starts = word_starts(tiny_tokenizer)
    masked = {tiny_tokenizer.decode(ids[:k]): [tiny_tokenizer.decode([t]) for t in repeating_tokens(ids[:k], 3, starts)]
              for k in range(len(ids) + 1)}
    assert masked[said + "trumpet"] == [" and"] and masked[said + "trumpet and tuba"] == ["."]
    assert masked[said + "trumpet and tub"] == [] and masked[said + "tr"] == []  # inside a word
    assert repeating_tokens(ids, 0, starts) == []


def test_the_rule_masks_the_first_token_of_a_listed_item_and_nothing_inside_a_word(tiny_tokenizer):
    from musicllm.engines import NoRepeat

    rule = NoRepeat(4, tiny_tokenizer)

    def masked(said: str) -> set[str]:
        return {tiny_tokenizer.decode([t]) for t in rule.banned(tiny_tokenizer.encode(said, add_special_tokens=False))}

    def first(word: str) -> str:
        return tiny_tokenizer.decode(tiny_tokenizer.encode(word, add_special_tokens=False)[:1])

    assert masked("Fast rock: guitars, bass and") == {first(" guitars"), first(" bass")} == {" gu", " b"}
    assert masked("Fast rock: guitars, bass and dru") == set()  # inside a word
    assert masked("Fast rock: guitars and bass in 4/4.") == set()  # a lead-in, then a new sentence


def test_the_vllm_server_refuses_requests_without_its_own_key(vllm_url):
    """The gateway's key and limits are not bypassed by asking the vLLM port directly."""
    import httpx

    body = {"model": "musicllm", "prompt": "Hello", "max_tokens": 1}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert httpx.post(f"{vllm_url}/completions", json=body, headers=headers, timeout=30).status_code == 401
        assert httpx.get(f"{vllm_url}/models", headers=headers, timeout=30).status_code == 401
    keyed = httpx.get(f"{vllm_url}/models", headers={"Authorization": f"Bearer {VLLM_KEY}"}, timeout=30)
    assert keyed.status_code == 200 and keyed.json()["data"][0]["id"] == "musicllm"


def test_vllm_server_engine_answers_each_question_in_its_own_kind(vllm_engine):
    check_each_question_gets_its_own_kind_of_answer(vllm_engine)


def test_vllm_server_engine_streams_and_serves_concurrent_users(vllm_engine):
    deltas = asyncio.run(collect(vllm_engine.stream(request("drums", 2))))
    assert len(deltas) > 3 and "".join(d.text for d in deltas) == expected("drums", 2)
    assert deltas[-1].finish_reason == "stop" and deltas[-1].completion_tokens > 5
    requests = [request(kind, turns) for kind, turns in CASES] * 4
    assert [c.text for c in vllm_engine.complete_batch(requests)] == [expected(k, t) for k, t in CASES] * 4
    stopped = asyncio.run(vllm_engine.complete(request("piano", stop=["played"])))
    assert (stopped.text, stopped.finish_reason) == ("A calm solo piano, ", "stop")


def test_vllm_server_engine_refuses_bad_requests(vllm_engine):
    too_long = GenerationRequest([{"role": "user", "content": "<|audio|>"}], [np.zeros(16000 * 300, np.float32)])
    with pytest.raises(EngineRequestError, match="context of 512 tokens"):
        asyncio.run(vllm_engine.complete(too_long))
    with pytest.raises(EngineRequestError, match="max_tokens"):
        asyncio.run(vllm_engine.complete(request(max_tokens=0)))
    served, vllm_engine.served_name = vllm_engine.served_name, "no-such-model"
    try:  # what vLLM itself refuses comes back as EngineRequestError with vLLM's message
        with pytest.raises(EngineRequestError, match="vLLM refused the request: .*no-such-model"):
            asyncio.run(vllm_engine.complete(request()))
    finally:
        vllm_engine.served_name = served
    assert asyncio.run(vllm_engine.complete(request())).text == expected("piano", 1)


def test_a_wrong_key_or_no_server_is_reported_with_the_servers_url(serving_checkpoint, vllm_url):
    """What the gateway turns into a 503 names the vLLM server and says what is wrong with it."""
    from musicllm.vllm_engine import VLLMServerEngine
    from musicllm.vllm_server import free_port

    wrong = VLLMServerEngine(serving_checkpoint, vllm_url, api_key="wrong")
    with pytest.raises(EngineUnavailable, match=rf"vLLM server at {re.escape(vllm_url)} refused the API key \(401"):
        asyncio.run(wrong.complete(request()))
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    absent = VLLMServerEngine(serving_checkpoint, nowhere, api_key=VLLM_KEY)
    with pytest.raises(EngineUnavailable, match=rf"vLLM server at {re.escape(nowhere)} is not answering"):
        asyncio.run(absent.complete(request()))
    assert asyncio.run(absent.problem()).startswith(f"the vLLM server at {nowhere} is not answering")


class FakeVLLM(BaseHTTPRequestHandler):
    """What the real server is never made to do here: answer a 500 (`server.mode` "fail"), send an
    error event inside a stream ("error event"), or stream until the client leaves ("endless":
    then `server.gone` is set)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, content_type: str, body: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")  # the body ends when the connection does
        self.end_headers()
        if body is not None:
            self.wfile.write(json.dumps(body).encode())

    def _event(self, payload: dict) -> None:
        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()

    def do_GET(self) -> None:
        self._answer(200, "application/json", {"object": "list", "data": [{"id": "musicllm", "max_model_len": CONTEXT}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.server.mode == "fail":
            return self._answer(500, "application/json", {"error": {"message": "EngineCore died", "code": 500}})
        self._answer(200, "text/event-stream")
        self._event({"choices": [{"index": 0, "text": "A calm", "finish_reason": None}]})
        if self.server.mode == "error event":
            return self._event({"error": {"message": "the engine failed mid-answer", "code": 500}})
        try:
            for _ in range(400):  # 10 s unless the client leaves
                time.sleep(0.025)
                self._event({"choices": [{"index": 0, "text": " la", "finish_reason": None}]})
        except OSError:  # broken pipe, connection reset: the client closed the connection
            self.server.gone.set()


@pytest.fixture(scope="module")
def fake_vllm(serving_checkpoint):
    """(server, engine): a FakeVLLM on 127.0.0.1 and a VLLMServerEngine that uses it."""
    from musicllm.vllm_engine import VLLMServerEngine

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeVLLM)
    server.mode, server.gone, server.daemon_threads = "fail", threading.Event(), True
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    engine = VLLMServerEngine(serving_checkpoint, f"http://127.0.0.1:{server.server_port}/v1")
    yield server, engine
    engine.close()
    server.shutdown()
    server.server_close()
    thread.join()


def test_vllm_server_failures_are_errors_that_name_the_server(fake_vllm):
    server, engine = fake_vllm
    url = re.escape(engine.base_url)
    server.mode = "fail"
    with pytest.raises(RuntimeError, match=rf"the vLLM server at {url} failed \(500\): EngineCore died"):
        asyncio.run(engine.complete(request()))
    server.mode = "error event"  # after a first piece of the answer
    with pytest.raises(RuntimeError, match=rf"the vLLM server at {url} failed \(500\): the engine failed mid-answer"):
        asyncio.run(engine.complete(request()))


def test_leaving_a_vllm_stream_closes_its_connection(fake_vllm):
    """What a client disconnect does to the gateway's generator; vLLM aborts a request whose
    connection has closed."""
    server, engine = fake_vllm
    server.mode = "endless"
    server.gone.clear()

    async def leave_after_first_delta():
        stream = engine.stream(request())
        async for _ in stream:
            break
        await stream.aclose()
        return await asyncio.to_thread(server.gone.wait, 5)

    assert asyncio.run(leave_after_first_delta())  # not the 10 s the server would stream for


OFFLINE_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from serving_fixtures import SERVING_CLIPS, serving_conversation
from musicllm.engines import GenerationRequest
from musicllm.vllm_engine import VLLMOfflineEngine

if __name__ == "__main__":
    engine = VLLMOfflineEngine({checkpoint!r})
    requests = [GenerationRequest(serving_conversation(kind, turns), [SERVING_CLIPS[kind]], max_tokens=24)
                for kind in SERVING_CLIPS for turns in (1, 2)]
    print("RESULT", json.dumps([vars(c) for c in engine.complete_batch(requests)]))
    engine.close()
"""


def test_vllm_offline_engine_gives_the_same_greedy_answers(serving_checkpoint, transformers_engine, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from musicllm.vllm_server import vllm_env

    script = tmp_path / "offline.py"
    script.write_text(OFFLINE_SCRIPT.format(tests=str(Path(__file__).parent), checkpoint=str(serving_checkpoint)))
    env = dict(vllm_env(tmp_path), VLLM_ENABLE_V1_MULTIPROCESSING="0")  # in-process engine core: ~3 s start
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300,
                          cwd=os.getcwd())
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    offline = json.loads(lines[0][len("RESULT "):])
    ours = transformers_engine.complete_batch([request(kind, turns) for kind, turns in CASES])
    assert offline == [vars(c) for c in ours]
