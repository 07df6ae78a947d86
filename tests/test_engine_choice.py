"""`--engine` means one thing everywhere (musicllm.engine_choice): transformers; vllm or an error
saying why; auto = vllm when it is installed and can answer on this model, else transformers.

The vLLM that answers is tested where it is started for users (the demo test in test_cli.py, the
gateway tests in test_api.py); here, what happens when it cannot: the choice and the messages."""

from __future__ import annotations

import contextlib
import shutil

import pytest

from musicllm import engine_choice
from musicllm.engine_choice import open_engine
from musicllm.engines import EngineUnavailable, GenerationRequest


def answers(engine) -> str:
    request = GenerationRequest(messages=[{"role": "user", "content": "Hello"}], clips=[], max_tokens=2)
    return engine.complete_batch([request])[0].finish_reason


def test_transformers_runs_in_this_process_and_the_stack_closes_it(serving_checkpoint):
    said = []
    with contextlib.ExitStack() as stack:
        engine = open_engine("transformers", serving_checkpoint, stack, say=said.append, max_batch_size=2)
        assert engine.name == "transformers" and answers(engine) in ("stop", "length")
        assert engine._worker.is_alive()
    assert not engine._worker.is_alive() and said == []  # closed on leaving; nothing to report


def test_without_vllm_auto_says_so_and_vllm_refuses(serving_checkpoint, monkeypatch):
    monkeypatch.setattr(engine_choice, "vllm_installed", lambda: False)
    said = []
    with contextlib.ExitStack() as stack:
        assert open_engine("auto", serving_checkpoint, stack, say=said.append).name == "transformers"
        assert len(said) == 1 and "vLLM is not installed" in said[0] and "transformers engine answers" in said[0]
        with pytest.raises(EngineUnavailable, match="vLLM is not installed.*--engine transformers runs without it"):
            open_engine("vllm", serving_checkpoint, stack)


def test_a_model_vllm_cannot_serve_falls_back_with_auto_and_is_an_error_with_vllm(serving_checkpoint, tmp_path,
                                                                                   monkeypatch):
    """A checkpoint without its servable language_model/ folder: vLLM cannot start on it. auto says
    why and answers with transformers; vllm raises, naming the folder."""
    monkeypatch.setattr(engine_choice, "vllm_installed", lambda: True)
    broken = tmp_path / "checkpoint"
    shutil.copytree(serving_checkpoint, broken)
    shutil.rmtree(broken / "language_model")
    said = []
    with contextlib.ExitStack() as stack:
        engine = open_engine("auto", broken, stack, workdir=tmp_path / "vllm", say=said.append, max_batch_size=2)
        assert engine.name == "transformers" and answers(engine) in ("stop", "length")
        assert said[0].startswith("starting vLLM on") and "vLLM cannot run this model" in said[1]
        assert "no servable language_model/ folder" in said[1] and said[1].endswith("the transformers engine answers instead")
        with pytest.raises(EngineUnavailable, match="vLLM cannot run this model: .*no servable language_model/"):
            open_engine("vllm", broken, stack, workdir=tmp_path / "vllm")


def test_a_server_given_by_url_is_used_as_it_is(serving_checkpoint):
    """--vllm-url names someone else's server: auto and vllm use it without a probe (it may still be
    loading), and the engine's health check says what is wrong until it answers."""
    import asyncio

    with contextlib.ExitStack() as stack:
        for kind in ("auto", "vllm"):
            engine = open_engine(kind, serving_checkpoint, stack, vllm_url="http://127.0.0.1:9/v1", say=pytest.fail)
            assert engine.name == "vllm" and engine.base_url == "http://127.0.0.1:9/v1"
            assert "127.0.0.1:9" in asyncio.run(engine.problem())


def test_an_unknown_kind_is_refused_by_name(serving_checkpoint):
    with contextlib.ExitStack() as stack, pytest.raises(ValueError, match="engine must be one of auto, transformers, "
                                                                         "vllm, not 'llama.cpp'"):
        open_engine("llama.cpp", serving_checkpoint, stack)
