"""Turn conversations and audio clips into model inputs.

Each `<|audio|>` placeholder in the text stands for one clip, in order. The processor checks the
count, expands each placeholder into exactly `num_audio_tokens(...)` copies *before*
tokenisation, cuts each clip into windows, and builds labels that train only assistant tokens.
It knows nothing about the encoder's internals: the length math lives in `musicllm.lengths`.

Messages follow the OpenAI chat shape: `content` is a string (with `<|audio|>` where clips go)
or a list of parts, where `{"type": "text", "text": ...}` is text and any audio part
(`{"type": "audio"}` or `{"type": "input_audio", ...}`) becomes one placeholder.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from transformers import BatchFeature

from musicllm.configuration import AUDIO_TOKEN, MusicLLMConfig
from musicllm.feature_extraction import MusicFeatureExtractor
from musicllm.lengths import num_audio_tokens

if TYPE_CHECKING:  # the tokenizer classes pull in transformers' generation code: ~2 s at a cold start
    from transformers import PreTrainedTokenizerBase
from musicllm.templates import render_text

IGNORE_INDEX = -100
AUDIO_PART_TYPES = {"audio", "input_audio", "audio_url"}


def flatten_content(content) -> str:
    """OpenAI-style content (a string or a list of parts) -> a string with `<|audio|>` marks."""
    if isinstance(content, str):
        return content
    pieces = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            pieces.append(part["text"])
        elif kind in AUDIO_PART_TYPES:
            pieces.append(AUDIO_TOKEN)
        else:
            raise ValueError(f"unsupported message content part type {kind!r}")
    return "".join(pieces)


def expand_audio_placeholders(messages: list[dict], audio_token_counts: Sequence[int]) -> list[dict]:
    """Copy of `messages` with string contents, each `<|audio|>` repeated to its clip's count."""
    flat = [{"role": m["role"], "content": flatten_content(m["content"])} for m in messages]
    n_placeholders = sum(m["content"].count(AUDIO_TOKEN) for m in flat)
    if n_placeholders != len(audio_token_counts):
        raise ValueError(
            f"the conversation has {n_placeholders} {AUDIO_TOKEN} placeholders "
            f"but {len(audio_token_counts)} audio clips were given"
        )
    counts = iter(audio_token_counts)
    for m in flat:
        head, *rest = m["content"].split(AUDIO_TOKEN)
        m["content"] = head + "".join(AUDIO_TOKEN * next(counts) + tail for tail in rest)
    return flat


def render_conversation(
    messages: list[dict],
    tokenizer: PreTrainedTokenizerBase,
    audio_token_counts: Sequence[int] = (),
    add_generation_prompt: bool = False,
) -> tuple[list[int], list[int]]:
    """Token ids and labels for a conversation: labels are -100 except on assistant turns
    (their content and end-of-turn token), so the loss falls only on what the model must say.

    The template is rendered for growing prefixes of the conversation; each new piece of text
    is tokenised on its own and is either an assistant answer (learned) or not (masked).
    """
    expanded = expand_audio_placeholders(messages, audio_token_counts)
    audio_token_id = tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)
    input_ids: list[int] = []
    labels: list[int] = []
    rendered = ""

    def append(text: str, learn: bool) -> None:
        nonlocal rendered
        if not text.startswith(rendered):
            raise ValueError("the chat template is not prefix-stable; cannot locate assistant turns")
        ids = tokenizer.encode(text[len(rendered):], add_special_tokens=False)
        input_ids.extend(ids)
        labels.extend(ids if learn else [IGNORE_INDEX] * len(ids))
        rendered = text

    for i, message in enumerate(expanded):
        if message["role"] == "assistant":
            append(render_text(tokenizer, expanded[:i], add_generation_prompt=True), learn=False)
            append(render_text(tokenizer, expanded[: i + 1]), learn=True)
        else:
            append(render_text(tokenizer, expanded[: i + 1]), learn=False)
    if add_generation_prompt:
        append(render_text(tokenizer, expanded, add_generation_prompt=True), learn=False)

    n_audio = input_ids.count(audio_token_id)
    if n_audio != sum(audio_token_counts):
        raise ValueError(f"tokenised conversation has {n_audio} audio tokens, expected {sum(audio_token_counts)}")
    # Audio positions are never predicted (they are not even text).
    labels = [IGNORE_INDEX if t == audio_token_id else l for t, l in zip(input_ids, labels)]
    return input_ids, labels


class MusicLLMProcessor:
    """The tokenizer and the feature extractor (loading, windowing) for one `MusicLLMConfig`."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: MusicLLMConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.feature_extractor = MusicFeatureExtractor(config)
        self.audio_token_id = tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)
        if self.audio_token_id != config.audio_token_id:
            raise ValueError(
                f"tokenizer's {AUDIO_TOKEN} id {self.audio_token_id} != config.audio_token_id {config.audio_token_id}"
            )

    @property
    def sample_rate(self) -> int:
        return self.feature_extractor.sample_rate

    def load_audio(self, source, name: str | None = None) -> np.ndarray:
        """Decode a path or uploaded bytes to mono float32 at the encoder rate, within limits."""
        return self.feature_extractor.load_audio(source, name)

    def num_audio_tokens(self, clip: np.ndarray) -> int:
        """Placeholder count for a clip already at the encoder rate."""
        return num_audio_tokens(len(clip), self.sample_rate, self.config)

    def audio_windows(self, clips: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """All clips' windows, in order, zero-padded into one batch (the feature extractor's)."""
        return self.feature_extractor.audio_windows(clips)

    def __call__(
        self,
        conversations: list[list[dict]],
        audios: Sequence[Sequence[np.ndarray]] | None = None,
        *,
        add_generation_prompt: bool = True,
        with_labels: bool = False,
        padding_side: str = "left",
    ) -> BatchFeature:
        """Batch of conversations (each with its clips, at the encoder rate) -> model inputs.

        Left padding suits generation; training batches use padding_side="right".
        """
        audios = audios if audios is not None else [[] for _ in conversations]
        if len(audios) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(audios)} audio lists")
        rows = [
            render_conversation(messages, self.tokenizer, [self.num_audio_tokens(c) for c in clips], add_generation_prompt)
            for messages, clips in zip(conversations, audios)
        ]
        longest = max(len(ids) for ids, _ in rows)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        labels = torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long)
        for i, (ids, row_labels) in enumerate(rows):
            span = slice(longest - len(ids), longest) if padding_side == "left" else slice(0, len(ids))
            input_ids[i, span] = torch.tensor(ids)
            attention_mask[i, span] = 1
            labels[i, span] = torch.tensor(row_labels)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if with_labels:
            batch["labels"] = labels
        batch.update(self.audio_windows([clip for clips in audios for clip in clips]))
        return BatchFeature(batch)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, config: MusicLLMConfig | None = None) -> "MusicLLMProcessor":
        config = config or MusicLLMConfig.from_pretrained(directory)
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(directory), config)
