"""Train one stage of a music LLM (`musicllm train`).

    musicllm train training/configs/tiny.yaml --stage=pretrain --out=runs/tiny/pretrain
    musicllm train training/configs/tiny.yaml --stage=align --model.init_from=runs/tiny/pretrain/model
    accelerate launch --num_processes 8 -m training.train training/configs/mert95m-qwen1.5b.yaml --stage=instruct
    accelerate launch --config_file my_fsdp_or_deepspeed.yaml -m training.train CONFIG ...

Stages: pretrain (stage 0, tiny preset only: the small LLM learns the language of the generated
text), align (stage 1: the projector learns to speak to the frozen LLM from captions), instruct
(stage 2: LoRA on the LLM plus the projector, on captions, Q&A and multiple choice; loss on
assistant tokens only). The frozen encoder's output is cached once per clip. An instruct run on
text-only conversations (no audio) tunes the LLM alone.

Started again with the same command, a killed run resumes from its last checkpoint (weights of
the trained parameters, optimizer, scheduler, step) and continues the same loss curve; a
finished run is left as it is. `--stop_after=N` trains N more steps, checkpoints and exits: a
run in several processes (or in the jobs of a time-limited queue). Writes OUT/model (a
checkpoint), OUT/log.jsonl, OUT/tb (TensorBoard), OUT/loss.png.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object, send_to_device, set_seed
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from musicllm.checkpoint import add_lora, load_checkpoint, merge_lora, save_checkpoint, save_lora
from musicllm.modeling import fit_attention
from musicllm.runconfig import ConfigError, load_run_config, to_dict
from training.curves import plot_log
from training.data import ConversationData, StepSampler, TextData, collate, load_conversations
from training.features import FeatureCache
from training.settings import ModelSettings, Stage, TrainConfig


def features_settings(settings: ModelSettings) -> dict:
    """The features encoder's `MusicFeaturesConfig` fields, from the run settings."""
    return dict(key_sharpness=settings.key_sharpness, bass_chroma=settings.bass_chroma,
                bass_tempogram=settings.bass_tempogram, tagger=settings.tagger)


def build_backbones(settings: ModelSettings):
    """(model, processor) from pretrained backbones (`settings.audio`, `settings.text`), with a
    fresh projector."""
    from musicllm.builders import build_from_backbones

    layer = settings.audio_layer if settings.audio_layer == "weighted" else int(settings.audio_layer)
    features = window = None
    if settings.audio == "features":
        features, window = features_settings(settings), settings.window_seconds
    return build_from_backbones(settings.audio, settings.text, audio_layer=layer, dtype=settings.dtype,
                                audio_trust_remote_code=settings.audio_trust_remote_code,
                                trust_remote_code=settings.trust_remote_code, stack_factor=settings.stack_factor,
                                audio_summary_tokens=settings.summary_tokens, features=features,
                                audio_window_seconds=window,
                                projector_hidden_size=settings.projector_hidden_size or None)


def build_model(config: TrainConfig, accelerator: Accelerator, records: list[dict]):
    """(model, processor) the stage starts from."""
    settings = config.model
    if settings.init_from:
        return load_checkpoint(settings.init_from)
    if settings.preset == "backbones":
        return build_backbones(settings)
    if config.stage != Stage.PRETRAIN:
        raise ConfigError(f"stage {config.stage.value} needs model.init_from (the previous stage's model folder) "
                          "or model.preset=backbones")
    if settings.tagger:
        raise ConfigError("model.tagger needs model.preset=backbones (the builder loads the tagger's weights)")
    # Stage 0 of the tiny preset: the tokenizer is trained on this run's text. The main process
    # builds it once; the others load the same files.
    init = config.out_dir / "init"
    with accelerator.main_process_first():
        if accelerator.is_main_process and not (init / "config.json").is_file():
            from musicllm.configuration import MusicFeaturesConfig
            from musicllm.tiny import build_tiny

            texts = [m["content"].replace("<|audio|>", "") for r in records for m in r["messages"]]
            model, processor = build_tiny(texts, settings.vocab_size, stack_factor=settings.stack_factor,
                                          audio_summary_tokens=settings.summary_tokens,
                                          audio_window_seconds=settings.window_seconds,
                                          audio_config=MusicFeaturesConfig(**features_settings(settings)),
                                          text_overrides=settings.text_overrides,
                                          projector_hidden_size=settings.projector_hidden_size or None)
            save_checkpoint(model, processor, init, export=False)
    return load_checkpoint(init)


def set_trainable(model, config: TrainConfig) -> list[torch.nn.Parameter]:
    """Freeze all, then unfreeze what the stage trains; returns the trainable parameters."""
    model.requires_grad_(False)
    if config.stage == Stage.PRETRAIN:
        model.language_model.requires_grad_(True)
    else:
        if config.stage == Stage.INSTRUCT:
            lora = config.lora
            add_lora(model, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, target_modules=lora.targets or None,
                     top_layers=lora.top_layers)
        projector = model.multi_modal_projector
        projector.requires_grad_(True)
        for param in projector.attribute_parameters():  # trained on labels (training/attributes.py), then kept
            param.requires_grad_(False)
        if getattr(model.audio_tower, "layer_weights", None) is not None:
            model.audio_tower.layer_weights.requires_grad_(True)
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return [p for p in model.parameters() if p.requires_grad]


def frozen_linears_in(model, dtype: torch.dtype) -> list[torch.nn.Linear]:
    """Stores the LLM's frozen linear weights in `dtype` (bf16 under bf16 autocast, which casts
    them to it at every use anyway: the same products, without the copy; stage 2 of the default,
    2 CPU cores: 2.08 -> 1.91 s a step). The tied input embedding stays as it is (the lookup is
    not autocast). Returns the modules, for putting their weights back with `weights_in`."""
    tied = model.language_model.get_input_embeddings().weight
    cast = [m for m in model.language_model.modules() if isinstance(m, torch.nn.Linear)
            and not m.weight.requires_grad and m.weight is not tied and m.weight.dtype != dtype]
    weights_in(cast, dtype)
    return cast


def weights_in(modules: list[torch.nn.Linear], dtype: torch.dtype) -> None:
    """Stores the modules' weights in `dtype` (the values as they are, rounded to it)."""
    for module in modules:
        module.weight.data = module.weight.data.to(dtype)


def lr_lambda(config: TrainConfig):
    """Linear warmup from lr/warmup, then cosine down to lr * min_lr_ratio. After the warmup this
    is transformers' get_cosine_with_min_lr_schedule_with_warmup to the last digit (checked at
    200 steps); its warmup starts at 0, a step that learns nothing, so the warmup stays ours."""
    warmup, total, floor = config.optim.warmup_steps, config.max_steps, config.optim.min_lr_ratio

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return schedule


def weights_digest(model) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def latest_checkpoint(out: Path) -> Path | None:
    steps = sorted((out / "checkpoints").glob("step-*"))
    return steps[-1] if steps else None


def save_training_state(accelerator, model, optimizer, scheduler, step: int, config: TrainConfig) -> None:
    """OUT/checkpoints/step-N: trained weights (safetensors), optimizer, scheduler, step.
    Written under a temporary name and renamed, so a kill never leaves half a checkpoint."""
    if not accelerator.is_main_process:
        return
    final = config.out_dir / "checkpoints" / f"step-{step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    unwrapped = accelerator.unwrap_model(model)
    weights = {n: p.detach().cpu().clone() for n, p in unwrapped.named_parameters() if p.requires_grad}
    save_file(weights, tmp / "trainable.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(torch.get_rng_state(), tmp / "rng.pt")  # dropout continues as if never stopped
    (tmp / "state.json").write_text(json.dumps({"step": step}))
    os.replace(tmp, final)
    for old in sorted((config.out_dir / "checkpoints").glob("step-???????"))[: -config.keep_checkpoints]:
        shutil.rmtree(old)


def load_training_state(path: Path, accelerator, model, optimizer, scheduler) -> int:
    unwrapped = accelerator.unwrap_model(model)
    weights = load_file(path / "trainable.safetensors")
    missing = set(weights) - {n for n, _ in unwrapped.named_parameters()}
    if missing:
        raise RuntimeError(f"{path}: checkpoint has parameters this model lacks: {sorted(missing)[:5]}")
    unwrapped.load_state_dict(weights, strict=False)
    # weights_only: optimizer state is tensors and numbers; nothing else is unpickled.
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    return json.loads((path / "state.json").read_text())["step"]


def make_dataset(config: TrainConfig, files: list[str], splits: list[str], model, processor):
    records = load_conversations(files, splits)
    if config.stage == Stage.PRETRAIN:
        return TextData(records, processor.tokenizer, config.data.max_length)
    cache = FeatureCache(config.data.feature_cache or config.out_dir.parent / "feature_cache", model, processor)
    cache.warm([p for r in records for p in r["audio"]])
    return ConversationData(records, processor.tokenizer, cache, config.data.max_length)


@torch.no_grad()
def validation_loss(model, dataset, pad_id: int, batch_size: int, device) -> float:
    model.eval()
    losses = []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))], pad_id)
        losses.append(model(**send_to_device(batch, device)).loss.item())
    model.train()
    return sum(losses) / max(1, len(losses))


def resolve_mixed_precision(setting: str) -> str:
    """"auto" -> "bf16" where bf16 matmuls are native, else "no"; other settings as they are.

    On a CPU without native bf16, autocast emulates it and runs slower than float32; with it
    (AVX512-BF16 here) a tiny-preset step took 0.44 s instead of 0.74 s, side by side."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    native = [getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return "bf16" if any(native) else "no"


def train(config: TrainConfig) -> Path | None:
    """Trains the stage; returns its model's folder, or None when `stop_after` stopped it first."""
    out = config.out_dir
    if (out / "model" / "config.json").is_file():
        print(f"{out}/model exists: stage {config.stage.value} is done (delete it to train again)")
        return out / "model"
    # cpu=True where there is no GPU: under torchrun, accelerate otherwise gives every CPU
    # process rank 0 (seen with accelerate 1.15).
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(config.mixed_precision), gradient_accumulation_steps=config.grad_accum,
                              cpu=not torch.cuda.is_available())
    torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // accelerator.num_processes))
    set_seed(config.seed)
    if not config.data.train:
        raise ConfigError("data.train lists no conversation files")
    out.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        (out / "config.json").write_text(json.dumps(to_dict(config), indent=2))

    model, processor = build_model(config, accelerator, load_conversations(config.data.train, config.data.splits))
    fit_attention(model, accelerator.device)
    params = set_trainable(model, config)
    loaded_dtype = model.language_model.get_input_embeddings().weight.dtype
    # Not under FSDP or DeepSpeed, which flatten the parameters into groups of one dtype.
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    cast = frozen_linears_in(model, torch.bfloat16) if accelerator.mixed_precision == "bf16" and not sharded else []
    pad_id = processor.tokenizer.pad_token_id or 0
    with accelerator.main_process_first():  # the main process fills the feature cache first
        train_data = make_dataset(config, config.data.train, config.data.splits, model, processor)
        valid_data = make_dataset(config, config.data.valid, ["valid"], model, processor) if config.data.valid else None
    if train_data.skipped:
        accelerator.print(f"left out {train_data.skipped} conversations longer than {config.data.max_length} tokens")

    optimizer = torch.optim.AdamW(params, lr=config.optim.lr, betas=tuple(config.optim.betas),
                                  weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))
    model, optimizer = accelerator.prepare(model, optimizer)
    step = 0
    if (resume := latest_checkpoint(out)) is not None:
        step = load_training_state(resume, accelerator, model, optimizer, scheduler)
        accelerator.print(f"resuming from {resume} (step {step})")
    stop_at = min(config.max_steps, step + config.stop_after) if config.stop_after > 0 else config.max_steps
    log = TrainLog(out, step, accelerator.is_main_process)

    sampler = StepSampler(len(train_data), config.batch_size, config.max_steps, step, config.seed,
                          accelerator.process_index, accelerator.num_processes, config.grad_accum,
                          train_data.lengths(), config.data.group_by_length)
    # Not accelerate-prepared (the sampler shards by itself): each batch goes to the device here.
    loader = DataLoader(train_data, batch_sampler=sampler, collate_fn=lambda items: collate(items, pad_id))
    model.train()
    progress = tqdm(total=config.max_steps, initial=step, desc=f"{config.stage.value}", unit="step",
                    disable=not accelerator.is_main_process)
    micro_losses, started = [], time.time()
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**send_to_device(batch, accelerator.device)).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(params, config.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad()
        micro_losses.append(loss.detach())
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        step += 1
        step_loss = accelerator.reduce(torch.stack(micro_losses).mean(), "mean").item()
        micro_losses = []
        progress.update(1)
        progress.set_postfix(loss=f"{step_loss:.3f}")
        entry = {"step": step, "loss": step_loss, "lr": scheduler.get_last_lr()[0], "elapsed": time.time() - started}
        if valid_data is not None and ((config.eval_every and step % config.eval_every == 0) or step == config.max_steps):
            entry["valid_loss"] = validation_loss(model, valid_data, pad_id, config.batch_size, accelerator.device)
        log.write(entry, force=step % config.log_every == 0 or "valid_loss" in entry or step == config.max_steps)
        if step % config.save_every == 0 or step == stop_at:
            save_training_state(accelerator, model, optimizer, scheduler, step, config)
            accelerator.wait_for_everyone()
        if step == stop_at:
            break
    progress.close()
    if step < config.max_steps:
        log.close()
        accelerator.print(f"stopped after step {step} of {config.max_steps} (stop_after={config.stop_after}): "
                          "the same command continues")
        end_run(accelerator)
        return None
    weights_in(cast, loaded_dtype)  # LoRA merges into them there, with the values trained against
    # Every process reports a digest of its weights: data-parallel replicas must agree.
    digests = gather_object([weights_digest(accelerator.unwrap_model(model))])
    if accelerator.is_main_process:
        log.last["replica_digests"] = digests
        finish(accelerator.unwrap_model(model), processor, config, log)
    accelerator.wait_for_everyone()
    end_run(accelerator)
    return out / "model"


def end_run(accelerator: Accelerator) -> None:
    """Ends the run's process group; a process of a multi-process run then exits at once.

    Its data-parallel model keeps the gloo (or NCCL) process group alive past destroy_process_group,
    and freeing it joins the group's worker thread while holding the GIL. A worker still releasing a
    finished collective whose tensors Python has let go needs the GIL too: both wait forever (seen
    about once in five two-process runs on 2 busy cores, py-spy: ~ProcessGroupGloo joining, the worker
    in decref_pyobject). Everything is written and every rank has passed the last barrier here, so
    the process leaves without running destructors."""
    accelerator.end_training()
    if accelerator.num_processes > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def finish(model, processor, config: TrainConfig, log: "TrainLog") -> None:
    out = config.out_dir
    if config.stage == Stage.INSTRUCT:
        save_lora(model, out / "adapter")
        merge_lora(model)
    record = {"stage": config.stage.value, "steps": config.max_steps, "final": log.last}
    save_checkpoint(model, processor, out / "model", notes={"TRAIN.json": json.dumps(record, indent=2)})
    log.close()
    plot_log(out / "log.jsonl", out / "loss.png", title=f"stage {config.stage.value}")
    print(f"wrote {out / 'model'}")


class TrainLog:
    """log.jsonl (+ TensorBoard when installed). On resume, entries past the resumed step are
    dropped so that the curve continues without a duplicated stretch."""

    def __init__(self, out: Path, step: int, enabled: bool):
        self.enabled, self.last, self.path = enabled, {}, out / "log.jsonl"
        self.tb = None
        if not enabled:
            return
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if line.strip().endswith("}")
                    and json.loads(line)["step"] <= step]
            self.path.write_text("".join(line + "\n" for line in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"), purge_step=step + 1 if step else None)
        except ImportError:
            pass

    def write(self, entry: dict, force: bool) -> None:
        self.last = entry
        if not self.enabled or not force:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        if self.tb is not None:
            for key in ("loss", "lr", "valid_loss"):
                if key in entry:
                    self.tb.add_scalar(key, entry[key], entry["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        print("settings (--key=value, dots for nested):")
        print(json.dumps(to_dict(TrainConfig()), indent=2))
        return 0
    config_file, overrides = (argv[0], argv[1:]) if not argv[0].startswith("--") else (None, argv)
    try:
        config = load_run_config(TrainConfig, config_file, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    train(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
