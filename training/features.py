"""Cache of the frozen encoder's output: computed once per clip, read every epoch.

Entries are keyed by the audio file's content (sha256 of its bytes) under a folder keyed by the
encoder's settings, so a changed file or a different encoder never reads a stale entry, and two
paths to the same audio share one entry. Each entry is one safetensors file holding the clip's
window frames (float16), their lengths and the clip's sample count at the encoder rate.

Not cached: an `hf` encoder with learned layer weights (its output changes while training).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from musicllm.encoders import FEATURES_VERSION
from musicllm.lengths import num_audio_tokens


def encoder_key(config) -> str:
    """Digest of everything that shapes the encoder's output."""
    settings = {
        "audio_config": config.audio_config.to_dict(),
        "sample_rate": config.audio_sample_rate,
        "window": config.audio_window_seconds,
        "frame_layers": config.audio_frame_layers,
        "layer": config.audio_layer,
        "hidden_size": config.audio_hidden_size,
        "features_version": FEATURES_VERSION,  # the DSP encoder's code, which no config describes
    }
    settings["audio_config"].pop("transformers_version", None)
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


class FeatureCache:
    """`get(path) -> (frames (W, F, C) float32, frame_lens (W,), num_samples)` for one clip."""

    def __init__(self, folder: str | os.PathLike, model, processor):
        self.model, self.processor = model, processor
        self.enabled = model.config.audio_layer != "weighted"
        self.folder = Path(folder) / encoder_key(model.config)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._keys: dict[tuple, str] = {}  # (path, size, mtime) -> content digest
        self._samples: dict[Path, int] = {}  # entry -> sample count: a dataset asks once per conversation

    def _entry(self, path: Path) -> Path:
        stat = path.stat()
        signature = (str(path), stat.st_size, stat.st_mtime_ns)
        if signature not in self._keys:
            self._keys[signature] = file_digest(path)
        return self.folder / f"{self._keys[signature]}.safetensors"

    @torch.no_grad()
    def _encode(self, path: Path) -> dict[str, torch.Tensor]:
        clip = self.processor.load_audio(path)
        windows = self.processor.audio_windows([clip])
        frames, frame_lens = self.model.encode_audio(windows["audio_values"], windows["audio_lens"])
        return {
            "frames": frames.to(torch.float16).contiguous(),
            "frame_lens": frame_lens.to(torch.int64),
            "num_samples": torch.tensor([len(clip)], dtype=torch.int64),
        }

    def get(self, path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, int]:
        path = Path(path)
        if not self.enabled:
            entry = self._encode(path)
        else:
            file = self._entry(path)
            if file.is_file():
                entry = load_file(file)
            else:
                entry = self._encode(path)
                tmp = file.with_suffix(f".tmp{os.getpid()}")
                save_file(entry, tmp)
                os.replace(tmp, file)  # never a half-written entry under the real name
        return entry["frames"].float(), entry["frame_lens"], int(entry["num_samples"][0])

    def num_tokens(self, path: str | os.PathLike) -> int:
        """The clip's audio-token count, reading only the entry's sample count."""
        path = Path(path)
        entry_file = self._entry(path) if self.enabled else None
        if entry_file in self._samples:
            num_samples = self._samples[entry_file]
        elif entry_file is not None and entry_file.is_file():
            with safe_open(entry_file, framework="pt") as entry:
                num_samples = self._samples[entry_file] = int(entry.get_tensor("num_samples")[0])
        else:
            num_samples = self.get(path)[2]
        return num_audio_tokens(num_samples, self.processor.sample_rate, self.model.config)

    def warm(self, paths, show_progress: bool = True) -> int:
        """Encode every clip not yet cached; returns how many were encoded."""
        todo = [Path(p) for p in dict.fromkeys(map(str, paths))]
        todo = [p for p in todo if not self.enabled or not self._entry(p).is_file()]
        for path in tqdm(todo, desc="encoding audio (cached once)", unit="clip", disable=not show_progress or not todo):
            self.get(path)
        return len(todo)
