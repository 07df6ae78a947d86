"""Build a music LLM from pretrained backbones in one call.

    model, processor = build_from_backbones("m-a-p/MERT-v1-95M", "Qwen/Qwen2.5-1.5B-Instruct",
                                            audio_trust_remote_code=True)

Any transformers audio model (HuBERT, Wav2Vec2, Whisper, MERT with custom code) and any causal
LM with a tokenizer load through the same Auto* calls, from the hub or a local folder; "features"
picks the weight-free DSP encoder. Nothing here is specific to one model family.
"""

from __future__ import annotations

import torch
from transformers import AutoFeatureExtractor, AutoModel, AutoModelForCausalLM, AutoTokenizer

from musicllm.configuration import MusicFeaturesConfig, MusicLLMConfig
from musicllm.encoders import hf_audio_settings
from musicllm.modeling import MusicLLMForConditionalGeneration
from musicllm.pretrained import resolve_backbone
from musicllm.processing import MusicLLMProcessor
from musicllm.templates import add_audio_token, ensure_chat_template

FEATURES = "features"


def build_from_backbones(
    audio: str,
    text: str,
    *,
    audio_layer: int | str = -1,
    audio_window_seconds: float | None = None,
    audio_trust_remote_code: bool = False,
    trust_remote_code: bool = False,
    dtype: torch.dtype | str | None = None,
    features: dict | None = None,
    **config_overrides,
) -> tuple[MusicLLMForConditionalGeneration, MusicLLMProcessor]:
    """A model whose encoder and LLM are `from_pretrained(audio)` / `from_pretrained(text)`,
    with a fresh projector. `config_overrides` set `MusicLLMConfig` fields (stack_factor, ...).

    `trust_remote_code` (LLM) and `audio_trust_remote_code` (encoder) stay off unless asked:
    they run code downloaded with the model. `features` sets `MusicFeaturesConfig` fields when
    `audio` is "features" (key_sharpness, bass_chroma, tagger, ...). A packaged model's name
    (`musicllm.pretrained.PACKAGED`, e.g. "SmolLM2-135M-Instruct") loads its converted folder.
    """
    text = resolve_backbone(text)
    tokenizer = AutoTokenizer.from_pretrained(text, trust_remote_code=trust_remote_code)
    # use_safetensors: never unpickle weights from a download (a .bin checkpoint can run code).
    language_model = AutoModelForCausalLM.from_pretrained(text, dtype=dtype, trust_remote_code=trust_remote_code,
                                                          use_safetensors=True)
    ensure_chat_template(tokenizer)
    audio_token_id = add_audio_token(tokenizer)
    if len(tokenizer) > language_model.get_input_embeddings().num_embeddings:
        language_model.resize_token_embeddings(len(tokenizer))

    if audio == FEATURES:
        backbone, audio_settings = None, {"audio_config": MusicFeaturesConfig(**(features or {}))}
        if audio_window_seconds is not None:
            audio_settings["audio_window_seconds"] = audio_window_seconds
    else:
        if features:
            raise ValueError(f"features settings {sorted(features)} apply to the features encoder, not {audio}")
        backbone = AutoModel.from_pretrained(audio, dtype=dtype, trust_remote_code=audio_trust_remote_code,
                                             use_safetensors=True)
        feature_extractor = AutoFeatureExtractor.from_pretrained(audio, trust_remote_code=audio_trust_remote_code)
        audio_settings = hf_audio_settings(backbone.config, feature_extractor, audio_window_seconds)
        audio_settings["audio_config"] = backbone.config

    config = MusicLLMConfig(
        text_config=language_model.config,
        audio_token_id=audio_token_id,
        audio_layer=audio_layer,
        audio_trust_remote_code=audio_trust_remote_code,
        **audio_settings,
        **config_overrides,
    )
    model = MusicLLMForConditionalGeneration(config, language_model=language_model, audio_backbone=backbone)
    if getattr(config.audio_config, "tagger", None):  # the features encoder's pretrained tagger
        from musicllm.musicnn import load_musicnn

        model.audio_tower.tagger.load_state_dict(load_musicnn(config.audio_config.tagger).state_dict())
    return model, MusicLLMProcessor(tokenizer, config)
