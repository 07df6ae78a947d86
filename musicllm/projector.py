"""The trained bridge from encoder frames to LLM input embeddings.

Stacking k neighbouring frames trades sequence length for width (Ultravox's projector): the LLM
sees k times fewer audio tokens, each carrying k frames. The projector knows nothing about
windows or clips; it maps a batch of frame sequences to a batch of token sequences.

With `audio_summary_tokens=1` each window's tokens start with one more: an MLP of the mean and
standard deviation of all the window's frames. Attributes of the whole window (key, tempo, style)
are then one token away instead of spread over every frame token.

With `audio_attributes` each window's tokens start with attribute tokens: a head classifies the
window's frame mean and spread into each attribute's classes (tempo band, tonic, mode, metre,
style, mood, instruments...), and the tokens are the likeliest class word's own input embeddings,
token by token (" 3/4" as " ", "3", "/", "4"; " orchestral" as " orche", "stral"), right-padded
with a space token to the attribute's longest word, after the attribute's label's tokens
(`label_ids`: " key:"); a multi-label attribute names its `words` likeliest classes so. The LLM
then reads the audio's attributes as text it can copy: a window reads " tempo: fast 120 key: C#
minor metre: 3/4 genre: jazz mood: calm instruments: piano drums ...". Mixtures of embeddings were tried
first and read worse: the mean of a word's tokens (" orche" + "stral") is no token the LLM knows,
and a probability-weighted blend of " 90" and " 120" is neither; with them the LLM picked the
heads' answer in half of the multiple-choice questions where the heads were right (README).
The heads are trained on labels (training/attributes.py) and frozen in later stages, so nothing
needs a gradient through the choice; a wrong head gives a wrong word, not a missing one.
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
        self.act = ACT2FN[config.projector_act]
        self.out_dim = config.text_config.hidden_size
        if self.stack_factor:  # 0: no frame tokens, the window is its summary and attribute tokens
            # LayerNorm first: encoder features arrive on their own scales (dB, ratios, hidden states).
            self.norm = nn.LayerNorm(stacked)
            self.linear_1 = nn.Linear(stacked, hidden)
            self.linear_2 = nn.Linear(hidden, config.text_config.hidden_size)
        if config.audio_summary_tokens not in (0, 1):
            raise ValueError(f"audio_summary_tokens must be 0 or 1, not {config.audio_summary_tokens}")
        self.summary = None
        self.extra_tokens = config.audio_extra_tokens  # summary and attribute tokens per window
        C = config.audio_hidden_size
        if config.audio_summary_tokens:
            self.summary = nn.Sequential(nn.LayerNorm(2 * C), nn.Linear(2 * C, hidden), ACT2FN[config.projector_act],
                                         nn.Linear(hidden, config.text_config.hidden_size))
        self.attributes = config.audio_attributes or []
        self.attribute_head = None
        trained = [a for a in self.attributes if "feature_index" not in a]
        if trained:
            classes = sum(len(a["classes"]) for a in trained)
            # Features on their own scales, standardised per feature (set from the training
            # clips' statistics, training/attributes.py): a per-window LayerNorm mixes them.
            self.attribute_scale = nn.Parameter(torch.ones(2 * C))
            self.attribute_shift = nn.Parameter(torch.zeros(2 * C))
            self.attribute_head = nn.Sequential(nn.Linear(2 * C, hidden), ACT2FN[config.projector_act],
                                                nn.Linear(hidden, classes))

    def forward(self, frames: torch.Tensor, frame_lens: torch.Tensor,
                embeddings: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (W, F, C), frame_lens (W,) -> tokens (W, A + ceil(F/k) [+1], D), token_lens (W,).
        `embeddings` (V, D): the LLM's input embedding table, needed with attribute tokens."""
        k = self.stack_factor
        W, F, C = frames.shape
        weight = next(self.parameters(), None)  # DSP features are float32; the projector may be bf16
        frames = frames.to(weight.dtype) if weight is not None else frames
        stats = self.window_stats(frames, frame_lens) if self.summary is not None or self.attributes else None
        if k:
            pad = (-F) % k
            stacked = nn.functional.pad(frames, (0, 0, 0, pad)).reshape(W, (F + pad) // k, C * k)  # W, F, C -> W, T, C*k
            hidden = self.act(self.linear_1(self.norm(stacked)))  # W, T, C*k -> W, T, H
            tokens = self.linear_2(hidden)  # W, T, H -> W, T, D
            token_lens = torch.div(frame_lens + k - 1, k, rounding_mode="floor")  # same as lengths.window_tokens
        else:  # no frame tokens
            tokens, token_lens = frames.new_zeros((W, 0, self.out_dim)), torch.zeros_like(frame_lens)
        if self.summary is not None:
            tokens = torch.cat([self.summary(stats).unsqueeze(1), tokens], dim=1)  # W, 1+T, D
        if self.attributes:
            if embeddings is None:
                raise ValueError("a projector with attribute tokens needs the LLM's input embeddings")
            tokens = torch.cat([self.attribute_tokens(stats, embeddings).to(tokens.dtype), tokens], dim=1)  # W, A+..., D
        return tokens, token_lens + self.extra_tokens

    @staticmethod
    def window_stats(frames: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
        """frames (W, F, C) -> (W, 2C): each window's frame mean and std (padding excluded)."""
        valid = (torch.arange(frames.shape[1], device=frames.device)[None, :] < frame_lens[:, None]).unsqueeze(-1)
        count = valid.sum(1).clamp(min=1)  # W, 1
        mean = (frames * valid).sum(1) / count  # W, F, C -> W, C
        std = (((frames - mean[:, None]) ** 2 * valid).sum(1) / count).sqrt()  # W, C
        return torch.cat([mean, std], dim=-1)

    def attribute_parameters(self) -> list[nn.Parameter]:
        """What training/attributes.py trains and the later stages keep frozen."""
        if self.attribute_head is None:
            return []
        return [self.attribute_scale, self.attribute_shift, *self.attribute_head.parameters()]

    def attribute_logits(self, stats: torch.Tensor, dropout: float = 0.0) -> list[torch.Tensor]:
        """(W, 2C) window stats -> one (W, classes) logit tensor per attribute, in config order.
        `dropout` on the hidden layer, in training mode (the heads' own training uses it).

        An attribute with a `feature_index` (a list of feature positions) has no head: its
        classes are features that already are probabilities (a pretrained tagger's tags), and its
        logits are the logits of their window means."""
        trained = [a for a in self.attributes if "feature_index" not in a]
        learned = iter([])
        if trained:
            hidden = self.attribute_head[:-1](stats * self.attribute_scale + self.attribute_shift)  # W, H
            logits = self.attribute_head[-1](nn.functional.dropout(hidden, dropout, self.training))  # W, all classes
            learned = iter(torch.split(logits, [len(a["classes"]) for a in trained], dim=-1))
        out = []
        for attribute in self.attributes:
            if "feature_index" in attribute:
                means = stats[:, attribute["feature_index"]].float()  # W, classes: the frames' mean probabilities
                out.append(torch.logit(means.clamp(1e-4, 1 - 1e-4)))
            else:
                out.append(next(learned))
        return out

    def attribute_tokens(self, stats: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """(W, 2C) window stats -> (W, A, D): each attribute's likeliest class words, token by token."""
        ids = []
        for attribute, logits in zip(self.attributes, self.attribute_logits(stats)):
            top = logits.topk(attribute["words"], dim=-1).indices  # W, words
            label = torch.tensor(attribute.get("label_ids", []), dtype=torch.long, device=top.device)
            ids.append(label.expand(len(top), -1))  # W, label tokens (" key:")
            ids.append(word_table(attribute).to(top.device)[top].flatten(1))  # W, words * longest
        return embeddings[torch.cat(ids, dim=1)]  # W, A, D


def word_table(attribute: dict) -> torch.Tensor:
    """(classes, longest) token ids of an attribute's class words, right-padded with its `pad_id`."""
    longest = max(map(len, attribute["token_ids"]))
    return torch.tensor([ids + [attribute["pad_id"]] * (longest - len(ids)) for ids in attribute["token_ids"]])
