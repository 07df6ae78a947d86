"""Checkpoints on disk: a Hugging Face folder, safetensors only, plus a servable LLM export.

    CHECKPOINT/
      config.json              MusicLLMConfig (audio_config, text_config, length fields)
      model.safetensors        audio tower (if it has weights), projector, language model
      tokenizer files          with the chat template and <|audio|>
      language_model/          plain causal LM (LoRA merged) + tokenizer: vLLM serves this folder

LoRA (peft) wraps `model.language_model` during training; `save_lora` / `load_lora` move only
the adapter, and `merge_lora` folds it into the weights. A model with an unmerged adapter is
never saved whole, so a checkpoint always holds plain weights that load without peft.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from musicllm.modeling import MusicLLMForConditionalGeneration, fit_attention
from musicllm.paths import replace_folder
from musicllm.processing import MusicLLMProcessor

LANGUAGE_MODEL_DIR = "language_model"
# The projection matrices of Qwen2/Llama-style decoders; peft's "all-linear" would find them too
# but also catches heads of other architectures.
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def has_lora(model: MusicLLMForConditionalGeneration) -> bool:
    return isinstance(model.language_model, PeftModel)


def add_lora(model, r: int = 16, alpha: int = 32, dropout: float = 0.05, target_modules=None, top_layers: int = 0):
    """Wrap the language model with a fresh trainable LoRA adapter (base weights frozen).

    `top_layers` > 0 puts the adapter on the last that many decoder layers only: when nothing
    below them trains (a frozen projector), backpropagation stops there, and a step of
    SmolLM2-135M with the top 10 of its 30 layers costs about half of one with all of them."""
    layers = None
    if top_layers:
        total = model.language_model.config.num_hidden_layers
        layers = list(range(max(0, total - top_layers), total))
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules or DEFAULT_LORA_TARGETS,
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )
    model.language_model = get_peft_model(model.language_model, config)
    return model


def save_lora(model, directory: str | os.PathLike) -> None:
    """Only the adapter (adapter_config.json + adapter_model.safetensors)."""
    if not has_lora(model):
        raise ValueError("the model has no LoRA adapter to save")
    model.language_model.save_pretrained(directory, safe_serialization=True)


def load_lora(model, directory: str | os.PathLike, trainable: bool = False):
    """Attach a saved adapter to the (plain) language model."""
    if has_lora(model):
        raise ValueError("the model already has a LoRA adapter; merge it first")
    model.language_model = PeftModel.from_pretrained(model.language_model, directory, is_trainable=trainable)
    return model


def merge_lora(model):
    """Fold the adapter into the language model's weights, leaving a plain model."""
    if has_lora(model):
        model.language_model = model.language_model.merge_and_unload()
    return model


def export_language_model(model, tokenizer, directory: str | os.PathLike) -> Path:
    """Write the LLM alone (adapter merged into a copy) with the tokenizer: a folder that
    `AutoModelForCausalLM.from_pretrained` and vLLM load directly."""
    directory = Path(directory)
    language_model = model.language_model
    if isinstance(language_model, PeftModel):
        language_model = copy.deepcopy(language_model).merge_and_unload()
    language_model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def save_checkpoint(model, processor: MusicLLMProcessor, directory: str | os.PathLike, export: bool = True,
                    notes: dict[str, str] | None = None) -> Path:
    """Whole model + tokenizer (+ `language_model/` export, + `notes`: more files by name and text)
    into `directory`, all or nothing: written into a folder beside it, which then takes its place.
    A build that is killed while saving leaves the folder it had (or none), never half a
    checkpoint where its next run would find one and skip the step that writes it."""
    if has_lora(model):
        raise ValueError("the model has an unmerged LoRA adapter: call merge_lora(model) or save_lora(...) instead")
    directory = Path(directory)
    for stale in directory.parent.glob(f"{directory.name}.partial-*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    partial = directory.with_name(f"{directory.name}.partial-{os.getpid()}")
    try:
        model.save_pretrained(partial, safe_serialization=True)
        processor.save_pretrained(partial)
        if export:
            export_language_model(model, processor.tokenizer, partial / LANGUAGE_MODEL_DIR)
        for name, text in (notes or {}).items():
            (partial / name).write_text(text)
        replace_folder(partial, directory)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return directory


def default_device() -> str:
    """Where a model runs unless told otherwise: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_checkpoint(
    directory: str | os.PathLike, dtype: torch.dtype | str | None = None, device: str | None = None
) -> tuple[MusicLLMForConditionalGeneration, MusicLLMProcessor]:
    """(model in eval mode, processor) from a folder written by `save_checkpoint`."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} is not a musicllm checkpoint (no config.json)")
    model = MusicLLMForConditionalGeneration.from_pretrained(directory, dtype=dtype, use_safetensors=True)
    if device:
        model.to(device)
    fit_attention(model, device or "cpu")
    model.eval()
    return model, MusicLLMProcessor.from_pretrained(directory, config=model.config)
