"""A real vLLM OpenAI-compatible server for tests: started as a subprocess on 127.0.0.1, always stopped.

    from vllm_server import build_tiny_llm, vllm_server   # tests/ is on sys.path, as for conftest

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        pytest.importorskip("vllm")
        work = tmp_path_factory.mktemp("vllm")
        with vllm_server(build_tiny_llm(work / "ckpt"), work) as base_url:   # "http://127.0.0.1:PORT/v1"
            yield base_url

The process handling is the product's (`musicllm.vllm_server.serve_model`: caches and temporary
files inside the test's folder, KV cache pinned to 1 GiB, one OpenMP thread, chunked prefill off
on CPU, the process group stopped on exit, the log's tail in the error of a server that does not
start). This file adds test defaults: the served name "tiny", max_model_len 2048, and an untrained
tiny LLM to serve. A tiny model starts in 35-60 s on 2 cores. Serving tests that need audio use
the session fixtures in serving_fixtures.py instead (a trained checkpoint, prompt embeddings).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Iterator

from musicllm.vllm_server import NO_CHUNKED_PREFILL, free_port, serve_model  # noqa: F401 (re-exported)

SERVED_NAME = "tiny"
# Guided decoding for a weak model: compact JSON (no whitespace runs between tokens) with the
# guidance backend, which also honours `pattern` next to length bounds (xgrammar refuses those).
COMPACT_JSON = ["--structured-outputs-config", '{"backend": "guidance", "disable_any_whitespace": true}']


def tokenizer_corpus(n: int = 300, seed: int = 0) -> list[str]:
    """Sentences in the words the writers use, enough for a 600-token BPE vocabulary."""
    rng = random.Random(seed)
    words = dict(
        key=[f"{t} {m}" for t in "C C# D Eb E F F# G Ab A Bb B".split() for m in ("major", "minor")],
        instrument=["piano", "acoustic guitar", "bass", "drums", "strings", "flute", "synth pad", "violin", "cello"],
        genre=["rock", "jazz", "classical", "electronic dance", "folk", "ambient", "latin", "funk"],
        mood=["calm", "happy", "sad", "energetic", "tense", "dreamy", "playful", "dark"],
    )
    return [f"A {rng.choice(words['mood'])} {rng.choice(words['genre'])} piece in {rng.choice(words['key'])} at "
            f"{rng.randint(50, 200)} BPM in {rng.choice(['3/4', '4/4', '6/8'])}, with "
            f"{' and '.join(rng.sample(words['instrument'], 2))}. Q: What is the tempo? A: About "
            f"{rng.randint(50, 200)} BPM." for _ in range(n)]


def build_tiny_llm(directory: str | os.PathLike, seed: int = 0) -> Path:
    """An untrained tiny Qwen2 checkpoint (seconds to build); returns its servable
    `language_model/` folder. Its answers are noise: tests of it check structure, not meaning."""
    import torch

    from musicllm.checkpoint import LANGUAGE_MODEL_DIR, save_checkpoint
    from musicllm.tiny import build_tiny

    directory = Path(directory)
    if not (directory / LANGUAGE_MODEL_DIR / "config.json").is_file():
        torch.manual_seed(seed)
        model, processor = build_tiny(tokenizer_corpus(), vocab_size=600, text_overrides=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1))
        save_checkpoint(model, processor, directory)
    return directory / LANGUAGE_MODEL_DIR


def vllm_server(model_dir: str | os.PathLike, workdir: str | os.PathLike, served_name: str = SERVED_NAME,
                extra_args: list[str] = (), max_model_len: int = 2048, start_timeout: float = 240.0,
                chunked_prefill: bool = False) -> Iterator[str]:
    """Serve `model_dir` with vLLM on a free port: a context manager yielding the base URL
    ("http://127.0.0.1:PORT/v1"). `extra_args` go to the server as they are (e.g. COMPACT_JSON,
    "--enable-prompt-embeds"). The log is `workdir/vllm.log`."""
    return serve_model(model_dir, workdir, served_name=served_name, extra_args=extra_args,
                       max_model_len=max_model_len, start_timeout=start_timeout, chunked_prefill=chunked_prefill)
