"""Session fixtures for serving tests: a tiny trained checkpoint, an engine on it, a vLLM server.

    def test_something(serving_checkpoint, transformers_engine, vllm_url): ...

Registered for every test file by tests/conftest.py, and built at most once per session:
- `serving_checkpoint`: a checkpoint folder (with `language_model/`) of the tiny architecture with
  a test-sized LLM, overfit for a few seconds on the serving conversations, so that greedy
  answers about SERVING_CLIPS are the readable sentences in SERVING_ANSWERS (what is playing;
  the tempo, as a follow-up) and SERVING_KEYS (the key): each question gets its own kind of
  answer, which the journey tests check by what it says (about 10 s to build).
- `transformers_engine`: `TransformersEngine` on it.
- `vllm_url`: a real vLLM OpenAI server (`--enable-prompt-embeds`) on its `language_model/`,
  "http://127.0.0.1:PORT/v1", served as DEFAULT_MODEL_ID with the API key VLLM_KEY; about
  40-60 s to start on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

SAMPLE_RATE = 16000
CONTEXT = 512  # tokens: small enough that a long clip overflows it (tests of the length check)
SYSTEM = {"role": "system", "content": "You are a music assistant."}
QUESTION = "<|audio|>\nWhat is playing?"
FOLLOW_UP = "And the tempo?"


def clicks(seconds: float, bpm: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A bright click on every beat: drums, to the tiny model."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.6 * np.exp(-60 * (t % (60 / bpm))) * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)


def chord(seconds: float, freqs=(262.0, 330.0, 392.0), sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A sustained chord (C major by default): piano, to the tiny model."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.1 * sum(np.sin(2 * np.pi * f * t) for f in freqs)).astype(np.float32)


KEY_QUESTION = "<|audio|>\nWhat key is this in?"
SERVING_CLIPS = {"piano": chord(3.0), "drums": clicks(3.0, 160)}
# Each question has its own kind of answer: instruments, then the tempo (a follow-up), or the key.
SERVING_ANSWERS = {
    "piano": ("A calm solo piano, played softly.", "About 72 BPM, slow and quiet."),
    "drums": ("Fast drums and bass in a rock groove.", "About 160 BPM, very fast."),
}
SERVING_KEYS = {"piano": "It is in C major.", "drums": "It is in A minor."}


def serving_conversation(kind: str, turns: int = 1, answered: bool = False, question: str = QUESTION) -> list[dict]:
    """The chat about SERVING_CLIPS[kind]: the audio question, then (turns=2) the follow-up,
    each answered except (unless `answered`) the last. `question=KEY_QUESTION` asks the key
    instead (one turn)."""
    if question == KEY_QUESTION:
        return [SYSTEM, {"role": "user", "content": question}] + (
            [{"role": "assistant", "content": SERVING_KEYS[kind]}] if answered else [])
    first, second = SERVING_ANSWERS[kind]
    messages = [SYSTEM, {"role": "user", "content": QUESTION}]
    if turns == 2:
        messages += [{"role": "assistant", "content": first}, {"role": "user", "content": FOLLOW_UP}]
    if answered:
        messages.append({"role": "assistant", "content": second if turns == 2 else first})
    return messages


def build_serving_checkpoint(directory: Path, steps: int = 150, seed: int = 0) -> Path:
    """Overfit the tiny architecture on the four SERVING conversations and save it."""
    from musicllm.checkpoint import save_checkpoint
    from musicllm.tiny import build_tiny
    from vllm_server import tokenizer_corpus

    if (directory / "language_model" / "config.json").is_file():
        return directory
    torch.manual_seed(seed)
    texts = tokenizer_corpus() + [a for pair in SERVING_ANSWERS.values() for a in pair] + [QUESTION, FOLLOW_UP]
    texts += list(SERVING_KEYS.values()) + [KEY_QUESTION]
    model, processor = build_tiny(texts, vocab_size=600, stack_factor=25, text_overrides=dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        max_position_embeddings=CONTEXT))
    kinds = [k for k in SERVING_CLIPS for _ in (1, 2, 3)]
    conversations = [serving_conversation(k, turns, answered=True) if turns < 3 else
                     serving_conversation(k, answered=True, question=KEY_QUESTION)
                     for k, turns in zip(kinds, [1, 2, 3] * 2)]
    # and each without the system prompt, as the web chat asks
    kinds, conversations = kinds * 2, conversations + [c[1:] for c in conversations]
    batch = processor(conversations, [[SERVING_CLIPS[k]] for k in kinds], with_labels=True,
                      add_generation_prompt=False, padding_side="right")
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    save_checkpoint(model, processor, directory)
    return directory


@pytest.fixture(scope="session")
def serving_checkpoint(tmp_path_factory) -> Path:
    return build_serving_checkpoint(tmp_path_factory.mktemp("serving") / "checkpoint")


@pytest.fixture(scope="session")
def transformers_engine(serving_checkpoint):
    from musicllm.engines import TransformersEngine

    engine = TransformersEngine.from_checkpoint(serving_checkpoint, max_batch_size=16)
    yield engine
    engine.close()


VLLM_KEY = "serving-fixture-vllm-key"  # as the gateway does: the vLLM server it starts has its own key


@pytest.fixture(scope="session")
def vllm_url(serving_checkpoint, tmp_path_factory):
    from musicllm.vllm_server import start_vllm_server

    with start_vllm_server(serving_checkpoint, tmp_path_factory.mktemp("vllm-serving"), max_model_len=CONTEXT,
                           start_timeout=240.0, api_key=VLLM_KEY) as base_url:
        yield base_url
