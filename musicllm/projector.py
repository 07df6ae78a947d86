"""The trained bridge from encoder frames to LLM input embeddings.

Stacking k neighbouring frames trades sequence length for width (Ultravox's projector): the LLM
sees k times fewer audio tokens, each carrying k frames. The projector knows nothing about
windows or clips; it maps a batch of frame sequences to a batch of token sequences.

With `audio_summary_tokens=1` each window's tokens start with one more: an MLP of the mean and
standard deviation of all the window's frames. Attributes of the whole window (key, tempo, style)
are then one token away instead of spread over every frame token.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN

from musicllm.configuration import MusicLLMConfig


class MusicLLMProjector(nn.Module):
    """Shapes: W windows, F frames, C encoder width (D_enc), k stack factor, H hidden, D LLM width."""

    def __init__(self, config: MusicLLMConfig):
        super().__init__()
        self.stack_factor = config.stack_factor
        stacked = config.audio_hidden_size * config.stack_factor
        hidden = config.projector_hidden_size or config.text_config.hidden_size
        # LayerNorm first: encoder features arrive on their own scales (dB, ratios, hidden states).
        self.norm = nn.LayerNorm(stacked)
        self.linear_1 = nn.Linear(stacked, hidden)
        self.act = ACT2FN[config.projector_act]
        self.linear_2 = nn.Linear(hidden, config.text_config.hidden_size)
        if config.audio_summary_tokens not in (0, 1):
            raise ValueError(f"audio_summary_tokens must be 0 or 1, not {config.audio_summary_tokens}")
        self.summary = None
        if config.audio_summary_tokens:
            C = config.audio_hidden_size
            self.summary = nn.Sequential(nn.LayerNorm(2 * C), nn.Linear(2 * C, hidden), ACT2FN[config.projector_act],
                                         nn.Linear(hidden, config.text_config.hidden_size))

    def forward(self, frames: torch.Tensor, frame_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (W, F, C), frame_lens (W,) -> tokens (W, ceil(F/k) [+1], D), token_lens (W,)."""
        k = self.stack_factor
        W, F, C = frames.shape
        pad = (-F) % k
        frames = nn.functional.pad(frames, (0, 0, 0, pad))  # W, F, C -> W, F+pad, C
        stacked = frames.reshape(W, (F + pad) // k, C * k)  # W, F+pad, C -> W, T, C*k
        hidden = self.act(self.linear_1(self.norm(stacked)))  # W, T, C*k -> W, T, H
        tokens = self.linear_2(hidden)  # W, T, H -> W, T, D
        token_lens = torch.div(frame_lens + k - 1, k, rounding_mode="floor")  # same as lengths.window_tokens
        if self.summary is not None:
            tokens = torch.cat([self.summarize(frames[:, :F], frame_lens), tokens], dim=1)  # W, 1+T, D
            token_lens = token_lens + 1
        return tokens, token_lens

    def summarize(self, frames: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
        """frames (W, F, C) -> (W, 1, D): the MLP of each window's frame mean and std (padding excluded)."""
        valid = (torch.arange(frames.shape[1], device=frames.device)[None, :] < frame_lens[:, None]).unsqueeze(-1)
        count = valid.sum(1).clamp(min=1)  # W, 1
        mean = (frames * valid).sum(1) / count  # W, F, C -> W, C
        std = (((frames - mean[:, None]) ** 2 * valid).sum(1) / count).sqrt()  # W, C
        return self.summary(torch.cat([mean, std], dim=-1)).unsqueeze(1)  # W, 2C -> W, 1, D
