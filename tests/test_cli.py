"""The `musicllm` command as a user runs it: help, verbs, and errors that name the problem."""

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import openai
import psutil
import pytest
import soundfile as sf

from musicllm.cli import COMMANDS, main
from musicllm.audio import test_clip
from serve.gateway.openai_format import clip_part

from test_builders import save_llm


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "musicllm.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_help_lists_every_verb_and_each_verb_has_help():
    result = run("--help")
    assert result.returncode == 0
    for verb in COMMANDS:
        assert verb in result.stdout
    for verb in ["build", "inspect", "info", "quickstart", "demo"]:
        verb_help = run(verb, "--help")
        assert verb_help.returncode == 0 and "usage: musicllm " + verb in verb_help.stdout


def test_unknown_verb_fails_with_usage(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown verb 'frobnicate'" in capsys.readouterr().err


def test_inspect_reports_good_files_and_names_bad_ones(tmp_path, capsys):
    good = tmp_path / "good.wav"
    sf.write(good, np.zeros(44100 * 3, dtype=np.float32) + 0.1, 44100)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"this is not audio at all" * 10)
    assert main(["inspect", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert "good.wav: 3.00 s, 1 window(s), 6 audio tokens" in captured.out
    assert "bad.mp3" in captured.err and "error:" in captured.err


def test_commands_other_than_demo_and_quickstart_say_how_to_build_a_missing_default_model(tmp_path):
    """chat, serve and caption do not start a half-hour build behind the user's back: without a
    default model (an empty MUSICLLM_HOME) each stops at once, says where the model should be and
    which command builds it, and leaves the folder empty."""
    import os

    env = {**os.environ, "MUSICLLM_HOME": str(tmp_path / "home")}
    song = tmp_path / "song.wav"
    sf.write(song, test_clip(sample_rate=22050), 22050)
    for argv in (["chat", "--audio", str(song), "What key is this in?"], ["serve", "--port", "0"],
                 ["caption", str(song), "--out", str(tmp_path / "music.db")]):
        done = run(*argv, env=env)
        assert done.returncode != 0, argv
        assert f"there is no default model at {tmp_path / 'home' / 'default' / 'model'}" in done.stderr, (argv, done.stderr)
        assert "build it with `musicllm quickstart`" in done.stderr and "Traceback" not in done.stderr, argv
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("config.json"))


def test_build_writes_a_loadable_checkpoint(tmp_path, capsys):
    llm = save_llm(tmp_path / "llm", "qwen2")
    assert main(["build", "--audio", "features", "--text", str(llm), "--out", str(tmp_path / "ckpt"),
                 "--stack-factor", "10"]) == 0
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["model_type"] == "musicllm" and config["stack_factor"] == 10
    assert (tmp_path / "ckpt" / "language_model" / "model.safetensors").is_file()


class Demo:
    """`musicllm demo` as a subprocess whose output is collected line by line as it comes."""

    def __init__(self, *args, env, preexec_fn=None):
        self.process = subprocess.Popen([sys.executable, "-m", "musicllm.cli", "demo", *args], env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        preexec_fn=preexec_fn)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()  # a failed check must not leave the demo (and its vLLM) running

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.process.poll() is None, f"demo exited ({self.process.returncode}):\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout:.0f} s:\n{self.output[-3000:]}"
            time.sleep(0.5)

    def url(self, label: str) -> str:
        return re.search(rf"^  {label}\s+(http://\S+)", self.output, re.MULTILINE).group(1)

    def stop(self, sig=signal.SIGINT, timeout: float = 90.0) -> list:
        """Send `sig`; return the processes it had started (gone, if the demo cleaned up)."""
        self.commands = []
        if self.process.poll() is not None:
            return []
        children = psutil.Process(self.process.pid).children(recursive=True)
        for child in children:
            with contextlib.suppress(psutil.Error):
                self.commands.append(" ".join(child.cmdline()))
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:  # the test fails below; leave nothing running
                for child in children:
                    with contextlib.suppress(psutil.Error):
                        child.kill()
                self.process.kill()
        time.sleep(0.5)  # the reader thread takes the last lines
        return children


def port_of(sock: socket.socket) -> int:
    """A listening socket's port, bound on first use: a port someone else holds."""
    if sock.getsockname()[1] == 0:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
    return sock.getsockname()[1]


def alive(processes) -> list:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def port_open(url: str) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", int(url.split(":")[2].split("/")[0]))) == 0


@pytest.mark.timeout(2700)
def test_quickstart_then_demo_as_a_new_user_would(tmp_path):
    """The README's main job on a fresh home folder (small size): `musicllm demo` builds the default
    model (every pipeline step once), starts vLLM, the gateway and the web chat, answers through
    the API and serves the page; Ctrl-C stops everything it started and exits 0. A second start
    reuses the model."""
    env = {"MUSICLLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    with socket.socket() as taken, Demo("--size", "small", "--web-port", str(port_of(taken)), env=env) as demo:
        # A journey, not a speed test (benchmarks measure speed): the small build took 15+ min on a
        # slow day here (2026-12-03: stage 2 at 7-10 s a step), and in the whole suite, beside an
        # idle vLLM server of another test's fixture, the test took 1506 s of the 1800 it had.
        demo.wait_for("Press Ctrl-C to stop.", timeout=2400)
        out = demo.output
        for step in ["synthesise the procedural corpus", "write captions", "MIR estimates",
                     "synthesise the out-of-distribution corpus", "silence and noise clips and their answers",
                     "build the model from its backbones",
                     "train the attribute heads", "train instruct", "give the LLM the heads of the best held-out score",
                     "evaluate"]:
            assert f"[done] {step}" in out, step
        assert "train pretrain" not in out and "train read" not in out  # a pretrained LLM needs neither
        assert "stopped after step 200 of 240" in out  # stage 2 in three processes (STAGE2_CHUNK)
        assert "building the default model" in out and "starting vLLM" in out and "(vllm engine" in out
        api, web = demo.url("API"), demo.url("web chat")
        assert api.startswith("http://127.0.0.1:") and web.startswith("http://127.0.0.1:")
        taken_port = port_of(taken)  # someone else's server held the web port: the demo moved aside
        assert f"port {taken_port} is in use; the web chat takes port" in out and f":{taken_port}" not in web

        assert "access    this machine only; no key: anyone who can connect may use them" in out
        # The vLLM server behind the gateway has a key of its own: its port is no back door.
        vllm = re.search(r"vLLM ready at (http://\S+)", out).group(1)
        assert vllm != api and httpx.get(f"{vllm}/models", timeout=30).status_code == 401

        clip = tmp_path / "clip.wav"
        sf.write(clip, test_clip(sample_rate=22050), 22050)
        client = openai.OpenAI(base_url=api, api_key="none")
        model = client.models.list().data[0].id
        check_answers_respond_to_the_question(client, model, clip)
        check_a_silent_file_is_called_silent(client, model, tmp_path / "silence.wav")
        with urllib.request.urlopen(web, timeout=30) as page:
            assert page.status == 200 and "Caption this" in page.read().decode()
        check_recommendations_come_from_the_catalog(client, clip, tmp_path / "default" / "catalog.db", out)

        started = demo.stop(signal.SIGINT)
        assert demo.process.returncode == 0, demo.output[-3000:]
        assert "stopped." in demo.output
        assert any("vllm.entrypoints.openai.api_server" in command for command in demo.commands)
        assert alive(started) == [], [p.cmdline() for p in alive(started)]
        assert not port_open(api) and not port_open(web)

    home = tmp_path / "default"
    assert json.loads((home / "model" / "BUILD.json").read_text())["trained"] is True
    report = (home / "eval" / "REPORT.md").read_text()
    assert "Does the model listen?" in report and "mir-baseline" in report and "respond to the question" in report
    assert "| model | robust parser |" in report  # the answers it wrote, not only its options' likelihoods
    assert "Does the model listen?" in (home / "eval" / "ood" / "REPORT.md").read_text()

    with Demo("--engine", "transformers", env=env) as again:
        again.wait_for("Press Ctrl-C to stop.", timeout=180)
        again.stop(signal.SIGTERM)
    assert again.process.returncode == 0 and "building" not in again.output and "(transformers engine" in again.output
    assert f"({held_out(home)} tracks, complete: reused)" in again.output  # the catalog is not captioned twice


@pytest.mark.timeout(300)
def test_stopping_the_demo_while_it_builds_stops_the_build_too(tmp_path):
    """SIGTERM while `musicllm demo` builds the default model: the build (a child process) stops
    where it is, says how to resume, and the demo exits 0 with nothing left running."""
    env = {"MUSICLLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    with Demo("--size", "small", env=env) as demo:
        demo.wait_for("[....] synthesise the procedural corpus", timeout=240)
        started = demo.stop(signal.SIGTERM, timeout=120)
        assert demo.process.returncode == 0, demo.output[-3000:]
        assert "quickstart: interrupted; run it again to resume" in demo.output and "stopped." in demo.output
        assert "Traceback" not in demo.output, demo.output[-3000:]
        assert any("quickstart" in command for command in demo.commands)
        assert alive(started) == [], [p.cmdline() for p in alive(started)]
    assert not (tmp_path / "default" / "model").exists()


def check_answers_respond_to_the_question(client, model: str, clip: Path) -> None:
    """A new user asks two different things about one clip: each answer is about what was asked
    (eval.follow's reading of an answer), and the two answers differ."""
    from eval.follow import kinds_mentioned, responds

    answers = {}
    for kind, question in (("instruments", "What instruments are playing?"), ("key", "What key is this in?")):
        reply = client.chat.completions.create(model=model, max_tokens=48, messages=[{"role": "user", "content": [
            clip_part(clip), {"type": "text", "text": question}]}])
        answers[kind] = reply.choices[0].message.content
    assert responds("instruments", answers["instruments"]), answers
    assert responds("key", answers["key"]) and "tempo" not in kinds_mentioned(answers["key"]), answers
    assert answers["instruments"] != answers["key"]


def check_a_silent_file_is_called_silent(client, model: str, path: Path) -> None:
    """A new user uploads a silent recording and asks its key: the answer says it is silent
    (data_gen/not_music.py), not a key nobody played."""
    from eval.follow import NOT_MUSIC_WORDS, stated_tonics

    sf.write(path, np.zeros(4 * 22050, dtype=np.float32), 22050)
    reply = client.chat.completions.create(model=model, max_tokens=48, messages=[{"role": "user", "content": [
        clip_part(path), {"type": "text", "text": "What key is this in?"}]}])
    answer = reply.choices[0].message.content
    assert NOT_MUSIC_WORDS["silence"].search(answer) and not stated_tonics(answer), answer


def held_out(home: Path) -> int:
    """Clips of the default corpus the model did not train on (the demo's catalog)."""
    splits = [json.loads(line)["split"] for line in (home / "corpus" / "manifest.jsonl").read_text().splitlines()]
    assert len(splits) == 72 and 0 < splits.count("train") < 72
    return splits.count("valid") + splits.count("test")


def check_recommendations_come_from_the_catalog(client, clip, catalog_path, out: str) -> None:
    """The demo captioned the held-out clips of the default corpus (72 clips at --size small)
    into its catalog, and "recommend something similar" (POST /v1/recommend, what the web chat
    sends) names only catalog tracks, each with a reason."""
    import sqlite3

    n = held_out(catalog_path.parent)
    assert f"catalog: captioning {n} of {n} clips of the default corpus" in out and f"catalog   {catalog_path}" in out
    with sqlite3.connect(catalog_path) as db:
        done = dict(db.execute("SELECT name, json_extract(metadata, '$.title') FROM tracks WHERE status = 'done'"))
    assert len(done) == n
    reply = client.post("/recommend", cast_to=object, body={"input_audio": clip_part(clip)["input_audio"], "k": 5})
    picks = reply["data"]
    assert len(picks) == 5 and len({p["name"] for p in picks}) == 5
    for pick in picks:
        assert pick["name"] in done and pick["title"] in (done[pick["name"]], pick["name"])
        assert isinstance(pick["reason"], str) and len(pick["reason"]) > 10


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.timeout(300)
def test_ctrl_c_stops_the_demo_even_when_started_with_sigint_ignored(serving_checkpoint, tmp_path):
    """A job put in the background of a script (`nohup make demo &`, CI) inherits SIGINT ignored,
    and Python then installs no KeyboardInterrupt handler: the demo installs its own. With
    --api-key, the web chat asks for the key as the API does."""
    env = {"MUSICLLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    from musicllm.vllm_server import free_port

    with Demo("--checkpoint", str(serving_checkpoint), "--engine", "transformers", "--api-port", str(free_port()),
              "--web-port", str(free_port()), "--api-key", "demo-secret", env=env, preexec_fn=ignore_sigint) as demo:
        demo.wait_for("Press Ctrl-C to stop.", timeout=240)
        # With a key, the banner says what it protects, and it protects both doors.
        assert "(sign in with the API key as the password)" in demo.output and "(API key required)" in demo.output
        assert "access    this machine only; the web chat and the API need the key" in demo.output
        assert httpx.get(demo.url("web chat") + "/config", timeout=30).status_code == 401
        assert httpx.get(demo.url("API") + "/models", timeout=30).status_code == 401
        demo.stop(signal.SIGINT, timeout=60)
        assert demo.process.returncode == 0 and "stopped." in demo.output, demo.output[-2000:]


def test_demo_catalog_is_built_once_resumed_and_reused(tmp_path, monkeypatch, capsys, transformers_engine,
                                                        serving_checkpoint):
    """The demo's catalog of the default corpus: captioned with the engine it was given (a file
    that cannot be read is recorded, not fatal), only new or unfinished clips at the next start,
    reused once complete; --catalog and --no-catalog choose otherwise."""
    import sqlite3

    from serve.demo import choose_catalog, parse_args
    from serving_fixtures import SAMPLE_RATE, chord, clicks

    monkeypatch.setenv("MUSICLLM_HOME", str(tmp_path))
    corpus = tmp_path / "default" / "corpus"
    corpus.mkdir(parents=True)
    clips = {"piano": chord(3.0), "drums": clicks(3.0, 160), "bells": chord(3.0, (523.0, 659.0, 784.0))}
    for name, clip in clips.items():
        sf.write(corpus / f"{name}.wav", clip, SAMPLE_RATE)

    def manifest(*names):  # and a clip the model trained on, which the demo's catalog leaves out
        (corpus / "manifest.jsonl").write_text("".join(
            json.dumps({"id": n, "audio": f"{n}.wav", "labels": {"genre": "test", "tempo_bpm": 100}}) + "\n"
            for n in names) + json.dumps({"id": "trained", "audio": "piano.wav", "split": "train"}) + "\n")

    def statuses(path):
        with sqlite3.connect(path) as db:
            return dict(db.execute("SELECT name, status FROM tracks"))

    manifest("piano", "drums", "missing")
    path = choose_catalog(parse_args([]), serving_checkpoint, transformers_engine)
    assert path == tmp_path / "default" / "catalog.db" and (tmp_path / "default" / "catalog.db.index" / "text").is_dir()
    assert statuses(path) == {"piano": "done", "drums": "done", "missing": "failed"}
    assert "captioning 3 of 3 clips" in capsys.readouterr().out
    manifest("piano", "drums", "missing", "bells")  # one clip more (or a start interrupted before it)
    choose_catalog(parse_args([]), serving_checkpoint, transformers_engine)
    assert "captioning 1 of 4 clips" in capsys.readouterr().out and statuses(path)["bells"] == "done"
    choose_catalog(parse_args([]), serving_checkpoint, transformers_engine)
    assert "(3 tracks, complete: reused)" in capsys.readouterr().out

    assert choose_catalog(parse_args(["--no-catalog"]), serving_checkpoint, transformers_engine) is None
    assert choose_catalog(parse_args(["--catalog", str(path)]), serving_checkpoint, transformers_engine) == path
    with pytest.raises(FileNotFoundError, match="--catalog .*nope.db: no such catalog"):
        choose_catalog(parse_args(["--catalog", str(tmp_path / "nope.db")]), serving_checkpoint, transformers_engine)
    other = parse_args(["--checkpoint", str(serving_checkpoint)])
    assert choose_catalog(other, serving_checkpoint, transformers_engine) is None
    assert "--checkpoint is not the default model" in capsys.readouterr().out
