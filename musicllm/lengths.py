"""The audio length math, in one place.

audio samples (any rate) --resample--> samples at the encoder rate
    --split into windows of `audio_window_seconds`--> per-window samples
    --encoder framing (1-D conv stack)--> per-window frames
    --projector stacks `stack_factor` frames, padding the last stack--> per-window LLM tokens
      (stack_factor 0: no frame tokens at all)
      (plus `config.audio_extra_tokens` per window: the projector's summary and attribute tokens)

`num_audio_tokens` is the function the processor, the model's checks, serving and tests call.
Everything here is pure integer arithmetic on config numbers: no audio, no tensors.
"""

from __future__ import annotations

import math
from typing import Sequence


def resampled_length(num_samples: int, orig_sr: int, target_sr: int) -> int:
    """Length of `num_samples` at `orig_sr` once resampled to `target_sr` (rounded up, so a
    non-empty input never becomes empty). `musicllm.audio` pads or trims to exactly this."""
    if orig_sr == target_sr:
        return num_samples
    return -(-num_samples * target_sr // orig_sr)


def conv_frames(num_samples: int, frame_layers: Sequence[Sequence[int]]) -> int:
    """Frames an encoder emits for `num_samples`, given its [kernel, stride, padding] stack."""
    length = num_samples
    for kernel, stride, padding in frame_layers:
        length = max(0, (length + 2 * padding - kernel) // stride + 1)
    return length


def min_window_samples(frame_layers: Sequence[Sequence[int]]) -> int:
    """The fewest samples that give one frame (the receptive field): shorter windows are padded
    with silence up to this length by the encoders."""
    field = 1
    for kernel, stride, padding in reversed(frame_layers):
        field = (field - 1) * stride + kernel - 2 * padding
    return max(field, 1)


def window_lengths(num_samples: int, window_samples: int) -> list[int]:
    """Sample counts of the windows that `num_samples` is cut into: full windows, then the rest."""
    if num_samples <= 0:
        return []
    full, rest = divmod(num_samples, window_samples)
    return [window_samples] * full + ([rest] if rest else [])


def window_frames(window_len: int, frame_layers: Sequence[Sequence[int]]) -> int:
    """Frames of one window, after padding a short window up to the receptive field."""
    return conv_frames(max(window_len, min_window_samples(frame_layers)), frame_layers)


def window_tokens(window_len: int, frame_layers: Sequence[Sequence[int]], stack_factor: int,
                  extra_tokens: int = 0) -> int:
    """LLM tokens of one window: frames stacked `stack_factor` at a time, the last stack padded
    (none with `stack_factor` 0), plus the window's extra (summary and attribute) tokens."""
    frame_tokens = math.ceil(window_frames(window_len, frame_layers) / stack_factor) if stack_factor else 0
    return frame_tokens + extra_tokens


def window_samples(window_seconds: float, sample_rate: int) -> int:
    """Samples in one audio window (the last window of a clip may be shorter)."""
    return round(window_seconds * sample_rate)


def num_audio_tokens(num_samples: int, sample_rate: int, config) -> int:
    """Number of `<|audio|>` tokens a clip of `num_samples` at `sample_rate` becomes.

    `config` is a `MusicLLMConfig` (only its audio length fields are read).
    """
    if num_samples <= 0:
        raise ValueError(f"audio has {num_samples} samples; need at least one")
    samples = resampled_length(num_samples, sample_rate, config.audio_sample_rate)
    window = window_samples(config.audio_window_seconds, config.audio_sample_rate)
    return sum(
        window_tokens(length, config.audio_frame_layers, config.stack_factor, config.audio_extra_tokens)
        for length in window_lengths(samples, window)
    )
