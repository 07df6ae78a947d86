"""The music LLM: frozen `audio_tower` -> trained `multi_modal_projector` -> `language_model`.

The attribute names are the ones transformers and vLLM use for audio/vision LLMs, so LoRA
targets and weight prefixes read the same as elsewhere. The model never changes the sequence
length: the processor has already expanded every `<|audio|>` into as many placeholder ids as the
clip has audio tokens, and `forward` only swaps the placeholders' embeddings for audio tokens
after checking that the two counts agree. It knows nothing about chat templates or files.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers import initialization as init

from musicllm.configuration import MusicLLMConfig
from musicllm.encoders import HFAudioEncoder, build_audio_encoder
from musicllm.projector import MusicLLMProjector


def adopt_pretrained(module: nn.Module) -> None:
    """Prepare a loaded backbone for life inside the composite model.

    - Flag its weights so that `post_init` does not re-initialise them (transformers initialises
      every module that lacks `_is_hf_initialized`, loaded or not).
    - Nesting its config in `MusicLLMConfig` reset the config's attention implementation to
      None (the setter recurses into sub-configs), which silently drops the causal mask path;
      give each sub-model back its own default choice.
    """
    for sub in module.modules():
        sub._is_hf_initialized = True
        if isinstance(sub, PreTrainedModel) and sub.config._attn_implementation is None:
            sub.config._attn_implementation_internal = default_attention(sub)
    for tensor in [*module.parameters(), *module.buffers()]:
        tensor._is_hf_initialized = True


def default_attention(model: PreTrainedModel) -> str:
    """The attention implementation transformers picks for `model` when none is asked for."""
    return model._check_and_adjust_attn_implementation(None, is_init_check=True)


def fit_attention(model: "MusicLLMForConditionalGeneration", device: torch.device | str) -> None:
    """The language model's attention kernel for where it runs: on CPU the eager one (plain
    matmuls, softmax in float32), elsewhere the model's default (sdpa).

    PyTorch's CPU flash-attention kernel, where sdpa goes on CPU, is slow for short sequences
    and small heads: a tiny-preset training step took 1.4x as long with it as with eager
    attention, forward and backward, at 110 and at 450 tokens (eval/benchmarks/attention.py).
    The outputs agree to float rounding (tests/test_modeling.py)."""
    language_model = model.language_model
    if torch.device(device).type == "cpu":
        language_model.set_attn_implementation("eager")
    else:
        language_model.set_attn_implementation(default_attention(language_model))


class MusicLLMForConditionalGeneration(PreTrainedModel):
    config_class = MusicLLMConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(
        self,
        config: MusicLLMConfig,
        language_model: PreTrainedModel | None = None,
        audio_backbone: nn.Module | None = None,
    ):
        """`language_model` / `audio_backbone`: pretrained modules to use instead of random ones
        built from the config (`musicllm.builders` passes them)."""
        super().__init__(config)
        for pretrained in (language_model, audio_backbone):
            if pretrained is not None:
                adopt_pretrained(pretrained)
        self.audio_tower = build_audio_encoder(config, audio_backbone)
        self.multi_modal_projector = MusicLLMProjector(config)
        self.language_model = language_model or AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, HFAudioEncoder) and getattr(module, "layer_weights", None) is not None:
            init.zeros_(module.layer_weights)  # uniform mean over layers (softmax of zeros)

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def encode_audio(self, audio_values: torch.Tensor, audio_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen encoder: windows (W, S) with true lengths (W,) -> frames (W, F, C), frame_lens (W,).
        Training caches this output once per clip (it never changes)."""
        return self.audio_tower(audio_values, audio_lens)

    def project_audio(self, frames: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
        """Frames (W, F, C) -> the windows' audio tokens concatenated in order, (N, D)."""
        tokens, token_lens = self.multi_modal_projector(frames, frame_lens, self.get_input_embeddings().weight)  # W, T, D
        keep = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < token_lens[:, None]
        return tokens[keep]  # N = sum(token_lens), D — padding dropped

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        audio_values: torch.Tensor | None = None,
        audio_lens: torch.Tensor | None = None,
        audio_frames: torch.Tensor | None = None,
        audio_frame_lens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Text embeddings with every `<|audio|>` position replaced by its audio token. Audio comes
        as windows (`audio_values`, `audio_lens`) or as cached encoder output (`audio_frames`, ...)."""
        inputs_embeds = self.get_input_embeddings()(input_ids)
        placeholders = input_ids == self.config.audio_token_id
        n_placeholders = int(placeholders.sum())
        if audio_frames is None and audio_values is not None and audio_values.shape[0] > 0:
            audio_frames, audio_frame_lens = self.encode_audio(audio_values, audio_lens)
        if audio_frames is None or audio_frames.shape[0] == 0:
            if n_placeholders:
                raise ValueError(f"input has {n_placeholders} audio placeholder tokens but no audio was given")
            return inputs_embeds
        audio_embeds = self.project_audio(audio_frames, audio_frame_lens)
        if n_placeholders != audio_embeds.shape[0]:
            raise ValueError(
                f"input has {n_placeholders} audio placeholder tokens but the audio gives "
                f"{audio_embeds.shape[0]} audio tokens"
            )
        mask = placeholders.unsqueeze(-1).expand_as(inputs_embeds)
        return inputs_embeds.masked_scatter(mask, audio_embeds.to(inputs_embeds.dtype))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        audio_values: torch.Tensor | None = None,
        audio_lens: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        audio_frames: torch.Tensor | None = None,
        audio_frame_lens: torch.Tensor | None = None,
        **kwargs,
    ):
        """Causal-LM outputs; with `labels` (-100 where nothing is learned), the loss alone
        (`labelled_loss`)."""
        if inputs_embeds is None:
            inputs_embeds = self.embed_inputs(input_ids, audio_values, audio_lens, audio_frames, audio_frame_lens)
        if labels is not None:
            return CausalLMOutputWithPast(loss=self.labelled_loss(inputs_embeds, attention_mask, labels, **kwargs))
        return self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)

    def labelled_loss(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor,
                      **kwargs) -> torch.Tensor:
        """The mean cross-entropy of the labelled tokens (each predicted from the one before), the
        language model's own loss, with the vocabulary projection applied only where a label is.
        Most tokens are the prompt's, and the projection is a quarter of a training step of a
        135M LLM with a 49k vocabulary."""
        lm = self.language_model
        base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm  # peft's LoRA lives inside it
        if getattr(base.config.get_text_config(), "final_logit_softcapping", None):
            return lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs).loss
        kwargs = {"use_cache": False, **kwargs}  # a loss needs no key/value cache
        hidden = base.get_decoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)[0]
        targets = labels[:, 1:]
        keep = targets != -100
        logits = base.get_output_embeddings()(hidden[:, :-1][keep]).float()
        return nn.functional.cross_entropy(logits, targets[keep])

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        audio_values: torch.Tensor | None = None,
        audio_lens: torch.Tensor | None = None,
        audio_frames: torch.Tensor | None = None,
        audio_frame_lens: torch.Tensor | None = None,
        **generate_kwargs,
    ) -> torch.Tensor:
        """The language model's `generate` on the merged embeddings; returns only new tokens
        (a `streamer=` in generate_kwargs streams them)."""
        inputs_embeds = self.embed_inputs(input_ids, audio_values, audio_lens, audio_frames, audio_frame_lens)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.language_model.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **generate_kwargs)


# `AutoModel.from_pretrained(checkpoint_dir)` finds the class from config.json's model_type.
from transformers import AutoModel  # noqa: E402

AutoModel.register(MusicLLMConfig, MusicLLMForConditionalGeneration)
