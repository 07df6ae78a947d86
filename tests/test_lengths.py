"""Golden audio-token counts: the contract between processor, model, serving and checkpoints."""

import pytest
from transformers import Qwen2Config

from musicllm.configuration import MusicFeaturesConfig, MusicLLMConfig
from musicllm.lengths import conv_frames, min_window_samples, num_audio_tokens, resampled_length

WAV2VEC2_LAYERS = [[10, 5, 0], [3, 2, 0], [3, 2, 0], [3, 2, 0], [3, 2, 0], [2, 2, 0], [2, 2, 0]]
WHISPER_LAYERS = [[160, 160, 0], [3, 1, 1], [3, 2, 1]]


def tiny_default() -> MusicLLMConfig:
    # The tiny preset's numbers: 16 kHz, 50 frames/s, 10 s windows, 25 frames per token.
    return MusicLLMConfig(audio_config=MusicFeaturesConfig(), text_config=Qwen2Config(hidden_size=32),
                          audio_window_seconds=10.0, stack_factor=25)


@pytest.mark.parametrize(
    "seconds, expected",
    [(0.001, 1), (0.5, 1), (0.51, 1), (0.52, 2), (1.0, 2), (9.99, 20), (10.0, 20), (10.5, 21), (30.0, 60), (600.0, 1200)],
)
def test_tiny_default_token_counts(seconds, expected):
    assert num_audio_tokens(round(seconds * 16000), 16000, tiny_default()) == expected


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_token_count_is_the_same_at_any_input_rate(rate):
    config = tiny_default()
    for seconds in (1.0, 10.0, 12.3, 30.0):
        assert num_audio_tokens(round(seconds * rate), rate, config) == num_audio_tokens(round(seconds * 16000), 16000, config)


def test_wav2vec2_framing_matches_known_frame_counts():
    # Wav2Vec2/HuBERT/MERT: 1 s at 16 kHz is 49 frames; 400 samples is the receptive field.
    assert conv_frames(16000, WAV2VEC2_LAYERS) == 49
    assert min_window_samples(WAV2VEC2_LAYERS) == 400
    config = MusicLLMConfig(text_config=Qwen2Config(hidden_size=32), audio_config={"model_type": "hubert"},
                            audio_frame_layers=WAV2VEC2_LAYERS, audio_hidden_size=768, audio_sample_rate=16000,
                            audio_window_seconds=30.0, stack_factor=4)
    assert num_audio_tokens(16000, 16000, config) == 13  # ceil(49 / 4)
    assert num_audio_tokens(45 * 16000, 16000, config) == 375 + 188  # 30 s window (1499 frames) + 15 s (749 frames)


def test_whisper_framing():
    # 30 s of 16 kHz audio -> 3000 mel frames -> 1500 encoder frames.
    assert conv_frames(480000, WHISPER_LAYERS) == 1500
    assert conv_frames(16000, WHISPER_LAYERS) == 50


def test_resampled_length_rounds_up_and_never_empties():
    assert resampled_length(44100, 44100, 16000) == 16000
    assert resampled_length(1, 48000, 16000) == 1
    assert resampled_length(3, 16000, 16000) == 3


def test_empty_audio_is_an_error():
    with pytest.raises(ValueError, match="0 samples"):
        num_audio_tokens(0, 16000, tiny_default())


def test_custom_code_encoder_config_needs_trust_and_a_source():
    settings = dict(text_config=Qwen2Config(hidden_size=32), audio_frame_layers=WAV2VEC2_LAYERS,
                    audio_hidden_size=768)
    with pytest.raises(ValueError, match="no source"):
        MusicLLMConfig(audio_config={"model_type": "mert_model"}, **settings)
    with pytest.raises(ValueError, match="audio_trust_remote_code=True"):
        MusicLLMConfig(audio_config={"model_type": "mert_model", "_name_or_path": "m-a-p/MERT-v1-95M"}, **settings)


@pytest.mark.parametrize("seconds, expected", [(0.5, 2), (10.0, 21), (10.5, 23), (30.0, 63)])
def test_a_summary_token_adds_one_token_per_window(seconds, expected):
    config = tiny_default()
    config.audio_summary_tokens = 1
    assert num_audio_tokens(round(seconds * 16000), 16000, config) == expected
