"""`musicllm chat`: one answer about a file, through a running gateway (the real command in a
subprocess, with the `openai` client) and in-process (the transformers engine on a checkpoint),
and the one-line errors for files it cannot use."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicllm.engines import GenerationRequest
from serving_fixtures import SERVING_CLIPS, SYSTEM, serving_conversation

KEY = "chat-secret"
QUESTION = "What is playing?"


def write_wav(path: Path, clip: np.ndarray) -> Path:
    sf.write(path, clip, 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("chat-audio")
    corrupt = folder / "broken.wav"
    corrupt.write_bytes(b"RIFF" + bytes(200))
    return {"piano": write_wav(folder / "piano.wav", SERVING_CLIPS["piano"]),
            "long": write_wav(folder / "long.wav", np.tile(SERVING_CLIPS["drums"], 4)),  # 12 s
            "corrupt": corrupt}


@pytest.fixture(scope="module")
def expected(transformers_engine) -> str:
    """What the model says about the piano clip to the fixture's own conversation."""
    request = GenerationRequest(serving_conversation("piano"), [SERVING_CLIPS["piano"]], max_tokens=32)
    return asyncio.run(transformers_engine.complete(request)).text


@pytest.fixture(scope="module")
def gateway(transformers_engine):
    """A gateway with a key and an 8 s clip limit, on 127.0.0.1."""
    from serve.gateway.api import create_app, serve_in_thread
    from serve.gateway.openai_format import Limits

    app = create_app(transformers_engine, api_key=KEY, limits=Limits(max_audio_seconds=8.0))
    with serve_in_thread(app) as url:
        yield f"{url}/v1"


def musicllm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUSICLLM_API_KEY": ""}
    return subprocess.run([sys.executable, "-m", "musicllm.cli", "chat", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=Path(__file__).parents[1])


def test_chat_through_the_gateway_streams_the_answer(gateway, files, expected):
    done = musicllm("--url", gateway, "--api-key", KEY, "--audio", str(files["piano"]), "--system", SYSTEM["content"],
                    "--max-tokens", "32", QUESTION)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_chat_in_process_on_a_checkpoint(serving_checkpoint, files, expected, capsys):
    from serve.chat import main

    code = main(["--checkpoint", str(serving_checkpoint), "--threads", "1", "--audio", str(files["piano"]),
                 "--system", SYSTEM["content"], "--max-tokens", "32", QUESTION])
    assert code == 0
    assert capsys.readouterr().out.strip() == expected


def test_chat_answers_what_was_asked(gateway, files):
    """`musicllm chat` asked two different things about one file: an instrument answer, then a key."""
    from eval.follow import kinds_mentioned, responds

    answers = {}
    for kind, question in (("instruments", QUESTION), ("key", "What key is this in?")):
        done = musicllm("--url", gateway, "--api-key", KEY, "--audio", str(files["piano"]), "--system",
                        SYSTEM["content"], "--max-tokens", "32", question)
        assert done.returncode == 0, done.stderr
        answers[kind] = done.stdout.strip()
    assert responds("instruments", answers["instruments"]) and "piano" in answers["instruments"], answers
    assert responds("key", answers["key"]) and "C major" in answers["key"], answers
    assert "instruments" not in kinds_mentioned(answers["key"])


@pytest.mark.parametrize("where", ["gateway", "in-process"])
def test_a_corrupt_file_gives_one_line_naming_it(gateway, serving_checkpoint, files, where):
    target = ["--url", gateway, "--api-key", KEY] if where == "gateway" else ["--checkpoint", str(serving_checkpoint)]
    done = musicllm(*target, "--audio", str(files["corrupt"]), QUESTION)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {files['corrupt']}: corrupt audio")


def test_unusable_files_are_refused_before_any_model_is_loaded(tmp_path):
    """NaN samples, an over-long file and a text file named .mp3 are refused by name, in one line,
    before the checkpoint is even looked at (this one does not exist), not after a 6 s load."""
    from eval.benchmarks.gateway import flac_claiming

    nan = SERVING_CLIPS["piano"].copy()
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    (tmp_path / "long.flac").write_bytes(flac_claiming(1, 16000, 700))
    (tmp_path / "notes.mp3").write_text("liner notes, not audio\n" * 20)
    expected = {"nan.wav": "audio contains NaN or infinite samples", "long.flac": "700.0 s long; the limit is 600 s",
                "notes.mp3": "a text file, not audio"}
    for name, words in expected.items():
        done = musicllm("--checkpoint", str(tmp_path / "no-such-model"), "--audio", str(tmp_path / name), QUESTION)
        assert done.returncode == 1 and done.stdout == "", done.stderr
        assert done.stderr.startswith(f"error: {tmp_path / name}: ") and words in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and "Note:" not in done.stderr  # no mpg123 chatter either


def test_gateway_refusals_are_one_line_naming_the_file(gateway, files):
    too_long = musicllm("--url", gateway, "--api-key", KEY, "--audio", str(files["long"]), QUESTION)
    assert too_long.returncode == 1
    assert too_long.stderr == (f"error: the gateway answered 400: {files['long']}: "
                               "audio is 12.0 s long; the limit is 8 s per clip\n")
    wrong_key = musicllm("--url", gateway, "--api-key", "nope", "--audio", str(files["piano"]), QUESTION)
    assert wrong_key.returncode == 1 and wrong_key.stderr.startswith("error: the gateway answered 401: ")
    assert wrong_key.stderr.count("\n") == 1


def test_chat_without_audio_asks_about_the_test_clip(gateway):
    done = musicllm("--url", gateway, "--api-key", KEY, "--max-tokens", "8")
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
