"""The `tiny` preset: the embedded default's architecture, trainable on 2 CPU cores in minutes.

No pretrained LLM can be downloaded where the default is built, so its tokenizer and its small
Qwen2-style LLM are trained from the project's own generated text (training stage 0). This module
builds them untrained; it knows nothing about where the text comes from.

The tokenizer is byte-level BPE from Hugging Face `tokenizers`, wrapped in
`PreTrainedTokenizerFast`: it round-trips any text exactly and loads with `AutoTokenizer` in
transformers and in vLLM (a sentencepiece model under a Qwen2 config lost spaces on decode).
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config

from musicllm.configuration import AUDIO_TOKEN, MusicFeaturesConfig, MusicLLMConfig
from musicllm.templates import CHATML_TEMPLATE
from musicllm.vocabulary import MAX_AUDIO_SECONDS

PAD_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = [PAD_TOKEN, "<|im_start|>", "<|im_end|>", AUDIO_TOKEN]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts`, with ChatML and `<|audio|>` special tokens."""
    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False and no normaliser: decode(encode(text)) == text, byte for byte.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: nothing is ever unknown
        min_frequency=2,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token=PAD_TOKEN,
        additional_special_tokens=["<|im_start|>", AUDIO_TOKEN],
        clean_up_tokenization_spaces=False,
        model_max_length=2048,
    )
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def tiny_text_config(tokenizer: PreTrainedTokenizerFast, **overrides) -> Qwen2Config:
    """A ~5M-parameter Qwen2 (a class vLLM serves natively) sized to the tokenizer."""
    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    settings.update(overrides)
    return Qwen2Config(**settings)


def tiny_config(tokenizer: PreTrainedTokenizerFast, *, text_overrides: dict | None = None, **overrides) -> MusicLLMConfig:
    """The whole tiny architecture: features encoder, projector, tiny Qwen2."""
    settings = dict(
        audio_config=MusicFeaturesConfig(),
        text_config=tiny_text_config(tokenizer, **(text_overrides or {})),
        audio_token_id=tokenizer.convert_tokens_to_ids(AUDIO_TOKEN),
        audio_window_seconds=10.0,
        stack_factor=25,  # 50 fps / 25 = 2 tokens per second of audio
        max_audio_seconds=MAX_AUDIO_SECONDS,
    )
    settings.update(overrides)
    return MusicLLMConfig(**settings)


def build_tiny(texts: Iterable[str], vocab_size: int = 4096, **config_overrides):
    """Untrained tiny model and its processor, from a text corpus for the tokenizer."""
    from musicllm.modeling import MusicLLMForConditionalGeneration
    from musicllm.processing import MusicLLMProcessor

    tokenizer = train_tokenizer(texts, vocab_size)
    config = tiny_config(tokenizer, **config_overrides)
    model = MusicLLMForConditionalGeneration(config)
    return model, MusicLLMProcessor(tokenizer, config)
