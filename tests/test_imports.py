"""`import musicllm` (and its library modules) must work with no serving or LLM-client packages."""

import subprocess
import sys

OPTIONAL = ["vllm", "gradio", "fastapi", "uvicorn", "openai", "ray"]

SCRIPT = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {OPTIONAL!r}:
            raise ImportError('blocked optional package ' + name)
sys.meta_path.insert(0, Block())
import musicllm
from musicllm import (analysis, audio, builders, checkpoint, configuration, encoders, engine_choice, engines,
                     lengths, modeling, processing, projector, templates, tiny, vllm_engine, vllm_server)
musicllm.MusicLLMForConditionalGeneration
import musicllm.cli
loaded = sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r})
assert not loaded, loaded
print('ok')
"""


def test_library_imports_without_optional_packages():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
