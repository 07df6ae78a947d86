"""Audio in, windows out: what a musicllm processor knows about audio.

    extractor = MusicFeatureExtractor(config)
    clip = extractor.load_audio("song.mp3")            # mono float32 at the encoder rate, within the limits
    batch = extractor.audio_windows([clip, other])      # audio_values (W, S) zero-padded, audio_lens (W,)

transformers splits a processor the same way: a feature extractor for the audio, a tokenizer for
the text. The processor (musicllm.processing) holds one, and so does the catalog's embedder that
loads the encoder alone (musicllm.embeddings.AudioEncoder), without the tokenizer. Window lengths
are musicllm.lengths's; decoding and resampling musicllm.audio's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from musicllm.audio import load_audio, split_windows
from musicllm.lengths import window_samples


class MusicFeatureExtractor:
    """Loading and windowing for one `MusicLLMConfig` (its audio rate, window and length limit)."""

    def __init__(self, config):
        self.config = config

    @property
    def sample_rate(self) -> int:
        return int(self.config.audio_sample_rate)

    def load_audio(self, source, name: str | None = None) -> np.ndarray:
        """Decode a path or uploaded bytes to mono float32 at the encoder rate, within limits."""
        return load_audio(source, self.sample_rate, max_seconds=self.config.max_audio_seconds, name=name)

    def audio_windows(self, clips: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """All clips' windows, in order, zero-padded into one batch: `audio_values` (W, S) at the
        encoder rate and `audio_lens` (W,) in samples."""
        window = window_samples(self.config.audio_window_seconds, self.sample_rate)
        windows = [w for clip in clips for w in split_windows(np.asarray(clip, dtype=np.float32), window)]
        audio_values = torch.zeros(len(windows), max((len(w) for w in windows), default=0))
        for i, w in enumerate(windows):
            audio_values[i, : len(w)] = torch.from_numpy(w)
        return {"audio_values": audio_values, "audio_lens": torch.tensor([len(w) for w in windows], dtype=torch.long)}
