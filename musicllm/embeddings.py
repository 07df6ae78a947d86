"""Audio embeddings for search and recommendation: one fixed-size vector per track.

    clip = processor.load_audio("song.mp3")
    vector = audio_embedding(model, processor, clip)            # (embedding_dim(model.config),) float32
    vectors = audio_embeddings(model, processor, [clip_a, clip_b])   # (2, dim), the batch form
    encoder = AudioEncoder.from_checkpoint("ckpt/")                 # the encoder alone, for search
    vector = audio_embedding(encoder, encoder.processor, clip)     # the same vector, no LLM loaded

What the vector is (kind EMBEDDING_KIND): the frozen encoder's frames of each window (the same
windows the model hears, `audio_window_seconds` long), summarised per window by their mean and
standard deviation over time, averaged over the windows weighted by their frame counts; then each
half (means, spreads) is standardised across its dimensions (zero mean, unit variance, so that
neither half nor any block of large features dominates by scale alone), the halves concatenated
and the whole L2-normalised. Dimension: 2 x D_enc (`config.audio_hidden_size`): 424 for the
default features encoder (212-wide frames: log-mel, chroma, key strengths, tempogram, ...).
Cosine similarity is then a plain dot product.

Only the frozen encoder is used (no projector, no LLM), so embeddings stay valid while the
projector and LLM are retrained, and two checkpoints with the same encoder give the same vectors.
A catalog's vectors become more discriminative after a per-dimension standardisation fitted on
the catalog itself (`Standardizer`): dimensions every track shares stop counting. Queries must
then go through the same fitted standardiser.

`AudioEncoder.from_checkpoint` loads only the frozen encoder of a checkpoint (its config and its
`audio_tower.*` weights if it has any), not the tokenizer, the projector, the LLM or peft:
search and recommend commands that only embed a song start faster with it.

This module knows nothing about catalogs or indexes: it turns decoded clips into vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from musicllm.lengths import window_samples

# Stored beside each vector (catalog `embeddings.kind`): bump the version when the recipe changes.
EMBEDDING_KIND = "audio-meanstd-v1"
# Windows encoded per encoder call: bounds memory on long tracks (a 10 s window is ~160k samples).
WINDOWS_PER_CALL = 32
_EPS = 1e-6


def embedding_dim(config) -> int:
    """Length of the vectors `audio_embedding` returns for a `MusicLLMConfig`."""
    return 2 * int(config.audio_hidden_size)


def _standardise_halves(raw: np.ndarray) -> np.ndarray:
    """(N, 2D) [means | spreads] -> each half z-scored across its D dims, rows L2-normalised."""
    half = raw.shape[1] // 2
    parts = []
    for block in (raw[:, :half], raw[:, half:]):
        centred = block - block.mean(axis=1, keepdims=True)
        parts.append(centred / np.maximum(centred.std(axis=1, keepdims=True), _EPS))
    joined = np.concatenate(parts, axis=1)
    return (joined / np.maximum(np.linalg.norm(joined, axis=1, keepdims=True), _EPS)).astype(np.float32)


def _window_statistics(model, processor, clips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per window of every clip, in order: (W, 2D) frame mean | std, and (W,) frame counts."""
    import torch  # here, not at the top: search needs only `Standardizer`, and torch takes 1.5 s to import

    windows = processor.audio_windows(clips)
    values, lens = windows["audio_values"], windows["audio_lens"]
    stats, counts = [], []
    for start in range(0, len(lens), WINDOWS_PER_CALL):
        with torch.no_grad():
            frames, frame_lens = model.encode_audio(values[start:start + WINDOWS_PER_CALL],
                                                    lens[start:start + WINDOWS_PER_CALL])
        frames = frames.float()  # W, F, D
        mask = (torch.arange(frames.shape[1])[None, :] < frame_lens[:, None]).float()[..., None]  # W, F, 1
        n = frame_lens.clamp_min(1).float()[:, None]  # W, 1
        mean = (frames * mask).sum(1) / n
        var = (((frames - mean[:, None]) ** 2) * mask).sum(1) / n  # padding frames never count
        stats.append(torch.cat([mean, var.sqrt()], dim=-1))
        counts.append(frame_lens.clamp_min(1))
    return torch.cat(stats).numpy().astype(np.float64), torch.cat(counts).numpy().astype(np.float64)


def audio_embeddings(model, processor, clips: Sequence[np.ndarray]) -> np.ndarray:
    """(len(clips), embedding_dim) float32, each row L2-normalised (see the module docstring).

    `clips`: mono float32 arrays at `processor.sample_rate` (`processor.load_audio` gives them),
    each non-empty. All clips' windows are encoded together, WINDOWS_PER_CALL at a time."""
    clips = [np.asarray(clip, dtype=np.float32) for clip in clips]
    for i, clip in enumerate(clips):
        if clip.ndim != 1 or clip.size == 0:
            raise ValueError(f"clips[{i}]: must be a non-empty 1-D array at {processor.sample_rate} Hz, "
                             f"got shape {clip.shape}")
    if not clips:
        return np.zeros((0, embedding_dim(model.config)), dtype=np.float32)
    stats, counts = _window_statistics(model, processor, clips)
    window = window_samples(processor.config.audio_window_seconds, processor.sample_rate)
    raw, start = [], 0
    for clip in clips:
        n_windows = -(-len(clip) // window)
        weights = counts[start:start + n_windows]
        raw.append((stats[start:start + n_windows] * weights[:, None]).sum(0) / weights.sum())
        start += n_windows
    return _standardise_halves(np.stack(raw))


def audio_embedding(model, processor, clip: np.ndarray) -> np.ndarray:
    """One clip's embedding: (embedding_dim,) float32, L2-normalised."""
    return audio_embeddings(model, processor, [clip])[0]


class AudioEncoder:
    """A checkpoint's frozen encoder alone: what `audio_embeddings` asks of a model (`config`,
    `encode_audio`), with the processor's feature extractor as its `processor`, so that
    `audio_embedding(encoder, encoder.processor, clip)` gives the full model's vector. It does
    not load the tokenizer: importing transformers' AutoTokenizer alone costs ~2 s cold here."""

    def __init__(self, config, audio_tower):
        from musicllm.feature_extraction import MusicFeatureExtractor

        self.config, self.audio_tower = config, audio_tower.eval()
        self.processor = MusicFeatureExtractor(config)

    def encode_audio(self, audio_values, audio_lens):
        return self.audio_tower(audio_values, audio_lens)  # what the full model's encode_audio does

    @classmethod
    def from_checkpoint(cls, directory) -> "AudioEncoder":
        from pathlib import Path

        from safetensors import safe_open

        from musicllm.configuration import MusicLLMConfig
        from musicllm.encoders import build_audio_encoder

        directory = Path(directory).expanduser()
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"{directory} is not a musicllm checkpoint (no config.json)")
        config = _features_config(directory / "config.json") or MusicLLMConfig.from_pretrained(directory)
        tower = build_audio_encoder(config)
        wanted = set(tower.state_dict())
        state = {}
        for weights in sorted(directory.glob("*.safetensors")):
            with safe_open(weights, framework="pt") as f:
                state.update({k[len("audio_tower."):]: f.get_tensor(k) for k in f.keys() if k.startswith("audio_tower.")})
        missing = sorted(wanted - set(state))
        if missing:  # an encoder with weights (MERT, HuBERT) must not run on random ones
            raise FileNotFoundError(f"{directory}: the checkpoint lacks the encoder weights audio_tower.{missing[0]} "
                                    f"(and {len(missing) - 1} more)")
        tower.load_state_dict(state, strict=True)
        return cls(config, tower)


# What the features encoder and AudioEncoder read of a MusicLLMConfig, as saved in config.json.
_SAVED_AUDIO_FIELDS = ("audio_sample_rate", "audio_window_seconds", "audio_frame_layers", "audio_hidden_size",
                       "max_audio_seconds")


def _features_config(path):
    """For a checkpoint with the features encoder: its audio settings as saved, without building
    the whole MusicLLMConfig, whose text config (Qwen2's) imports transformers' generation stack:
    ~2.7 s of CPU at a cold start here, for settings the encoder never reads. None otherwise."""
    import json
    from types import SimpleNamespace

    from musicllm.configuration import MusicFeaturesConfig

    saved = json.loads(path.read_text())
    audio = dict(saved.get("audio_config") or {})
    if audio.pop("model_type", None) != MusicFeaturesConfig.model_type or not all(k in saved for k in _SAVED_AUDIO_FIELDS):
        return None
    return SimpleNamespace(audio_config=MusicFeaturesConfig(**audio), **{k: saved[k] for k in _SAVED_AUDIO_FIELDS})


@dataclass
class Standardizer:
    """Per-dimension standardisation fitted on a catalog's vectors, then L2 normalisation.

        standardizer = Standardizer.fit(catalog_vectors)
        index_vectors = standardizer(catalog_vectors)
        query = standardizer(audio_embedding(model, processor, clip)[None])[0]
    """
    mean: np.ndarray  # (dim,)
    scale: np.ndarray  # (dim,), never below _EPS

    @classmethod
    def fit(cls, vectors: np.ndarray) -> "Standardizer":
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError(f"Standardizer.fit needs a non-empty (N, dim) array, got shape {vectors.shape}")
        return cls(vectors.mean(0), np.maximum(vectors.std(0), _EPS))

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[1] != len(self.mean):
            raise ValueError(f"expected (N, {len(self.mean)}) vectors, got shape {vectors.shape}")
        z = (vectors - self.mean) / self.scale
        return (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), _EPS)).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "Standardizer":
        return cls(np.asarray(data["mean"], dtype=np.float64), np.asarray(data["scale"], dtype=np.float64))
