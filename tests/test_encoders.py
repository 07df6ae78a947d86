"""Frozen encoders: the frame-count contract, what the DSP features carry, and the HF wrapper
on tiny random HuBERT / Wav2Vec2 / Whisper models (no hub)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import (
    AutoModel,
    HubertConfig,
    Qwen2Config,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    WhisperConfig,
    WhisperFeatureExtractor,
)

from musicllm import lengths
from musicllm.configuration import MusicFeaturesConfig, MusicLLMConfig
from musicllm.encoders import (
    FeaturesEncoder,
    HFAudioEncoder,
    build_audio_encoder,
    hf_audio_settings,
    mel_filterbank,
)

SR = 16000
M = MusicFeaturesConfig().n_mels
# feature layout offsets (see FeaturesEncoder's docstring)
CHROMA, KEY, ONSET, RMS, CENTROID, FLATNESS, TEMPO = M, M + 12, M + 24, M + 25, M + 26, M + 27, M + 28


def tiny_text_config():
    return Qwen2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=128,
    )


@pytest.fixture(scope="module")
def features():
    return FeaturesEncoder(MusicLLMConfig(text_config=tiny_text_config()))


def encode_one(encoder, signal: np.ndarray) -> torch.Tensor:
    frames, _ = encoder(torch.tensor(signal, dtype=torch.float32)[None], torch.tensor([len(signal)]))
    return frames[0]


def drum_track(bpm: float, pattern: str, seconds: float = 12.0) -> np.ndarray:
    """One drum hit per beat: 'k' a low kick (60 Hz thump), 'h' a bright noise burst."""
    rng = np.random.default_rng(0)
    out = np.zeros(int(seconds * SR))
    t = np.arange(int(0.15 * SR)) / SR
    kick = 0.8 * np.sin(2 * np.pi * 60 * t) * np.exp(-t / 0.05)
    hat = 0.3 * rng.standard_normal(len(t)) * np.exp(-t / 0.01)
    for beat, start in enumerate(np.arange(0.0, seconds - 0.2, 60.0 / bpm)):
        i = int(round(start * SR))
        out[i : i + len(t)] += kick if pattern[beat % len(pattern)] == "k" else hat
    return out


def tones(hz: list[float], seconds: float = 4.0, amplitude: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(amplitude * np.sin(2 * np.pi * f * t) for f in hz)


# ---------------------------------------------------------------------------------------------
# FeaturesEncoder: contract


def test_features_config_numbers(features):
    config = features.config
    assert config.audio_frame_layers == [[320, 320, 0]]
    assert config.audio_hidden_size == features.hidden_size == M + 12 + 12 + 4 + 2 * 48 + 24 == 212


@pytest.mark.parametrize(
    "lens",
    [
        [1, 100, 319],  # shorter than a hop: padded up to one frame
        [320, 640, 16000],  # exact multiples
        [321, 959, 16001, 160_017],  # not multiples
        [0, 5 * SR],
    ],
)
def test_exact_frame_counts_and_zero_padding(features, lens):
    samples = max(lens)
    audio = torch.randn(len(lens), samples) * 0.1
    frames, frame_lens = features(audio, torch.tensor(lens))
    expected = [lengths.window_frames(n, [[320, 320, 0]]) for n in lens]
    assert frame_lens.tolist() == expected == [max(n, 320) // 320 for n in lens]
    assert frames.shape == (len(lens), max(expected), 212)
    for i, count in enumerate(expected):
        assert frames[i, count:].abs().sum() == 0
        assert frames[i, :count].abs().sum() > 0


def test_batch_equals_one_by_one(features):
    lens = [100, 640, 3 * SR + 17, 7 * SR, 10 * SR]
    audio = torch.zeros(len(lens), max(lens))
    for i, n in enumerate(lens):
        audio[i, :n] = torch.tensor(drum_track(100 + 10 * i, "khhh", 10.0)[:n] + tones([220 * (i + 1)], 10.0)[:n])
    frames, frame_lens = features(audio, torch.tensor(lens))
    for i, n in enumerate(lens):
        alone, alone_lens = features(audio[i : i + 1, :n], torch.tensor([n]))
        assert alone_lens.item() == frame_lens[i]
        torch.testing.assert_close(frames[i, : frame_lens[i]], alone[0], atol=1e-5, rtol=0)


def test_padding_past_audio_lens_is_ignored(features):
    signal = torch.randn(1, 2 * SR) * 0.1
    garbage = torch.cat([signal, torch.randn(1, SR)], dim=1)  # junk past the true length
    a, _ = features(signal, torch.tensor([2 * SR]))
    b, _ = features(garbage, torch.tensor([2 * SR]))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_deterministic_frozen_and_weightless(features):
    audio = torch.randn(2, SR)
    a, _ = features(audio, torch.tensor([SR, SR // 2]))
    b, _ = features(audio, torch.tensor([SR, SR // 2]))
    assert torch.equal(a, b)
    assert list(features.parameters()) == [] and features.state_dict() == {}
    assert not features.train().training
    assert not a.requires_grad


def test_survives_meta_device_construction_and_dtype_casts(features):
    """transformers 5 builds models on the meta device before loading a checkpoint, and
    `model.to(torch.bfloat16)` casts buffers: neither may touch the DSP tables."""
    with torch.device("meta"):
        built_on_meta = FeaturesEncoder(features.config)
    built_on_meta.to(torch.bfloat16)
    audio = torch.tensor(drum_track(120, "kh", 3.0), dtype=torch.float32)[None]
    lens = torch.tensor([audio.shape[1]])
    torch.testing.assert_close(built_on_meta(audio, lens)[0], features(audio, lens)[0], atol=0, rtol=0)


@pytest.mark.parametrize("kind", ["features", "hubert"])
def test_empty_batch(kind, features):
    encoder = features if kind == "features" else build_audio_encoder(music_config(kind))
    frames, frame_lens = encoder(torch.zeros(0, 100), torch.zeros(0, dtype=torch.long))
    assert frames.shape == (0, 0, encoder.hidden_size) and frame_lens.shape == (0,)


def test_mel_filterbank_matches_librosa():
    import librosa

    ours = mel_filterbank(SR, 2048, 64, 30.0, 8000.0)
    theirs = librosa.filters.mel(sr=SR, n_fft=2048, n_mels=64, fmin=30.0, fmax=8000.0)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# FeaturesEncoder: what a listener needs


def window_tempogram(encoder, signal) -> tuple[np.ndarray, np.ndarray]:
    frames = encode_one(encoder, signal)
    return encoder.tempo_lag_seconds, frames[0, TEMPO + 48 : TEMPO + 96].numpy()  # the window-mean part


@pytest.mark.parametrize("bpm", [120, 90])
def test_tempogram_peaks_at_the_beat_period(features, bpm):
    lags, tempogram = window_tempogram(features, drum_track(bpm, "h"))
    beat_range = (lags > 0.3) & (lags < 0.9)  # 67..200 BPM
    best = lags[beat_range][np.argmax(tempogram[beat_range])]
    assert abs(best - 60.0 / bpm) < 0.05 * 60.0 / bpm  # within one log-spaced bin


def test_tempogram_shows_the_bar_period(features):
    """Kick on the downbeat: the envelope repeats every bar, 3 beats (3/4) or 4 beats (4/4).
    The windowed autocorrelation favours shorter lags, so compare the two metres."""

    def bar_preference(pattern):
        lags, tempogram = window_tempogram(features, drum_track(120, pattern))
        at = lambda seconds: tempogram[np.argmin(np.abs(lags - seconds))]  # noqa: E731
        return at(1.5) - at(2.0)  # lag of 3 beats minus lag of 4 beats at 120 BPM

    three, four = bar_preference("khh"), bar_preference("khhh")
    assert three > 0.2
    assert three - four > 0.2


@pytest.mark.parametrize(
    "hz, pitch_classes",
    [([261.63, 329.63, 392.00], {0, 4, 7}), ([220.00, 261.63, 329.63], {9, 0, 4})],  # C major, A minor
)
def test_chroma_of_triads(features, hz, pitch_classes):
    frames = encode_one(features, tones(hz))
    middle = frames[len(frames) // 2, CHROMA : CHROMA + 12]
    key = frames[0, KEY : KEY + 12]
    assert set(torch.topk(middle, 3).indices.tolist()) == pitch_classes
    assert set(torch.topk(key, 3).indices.tolist()) == pitch_classes
    others = [c for c in range(12) if c not in pitch_classes]
    assert key[others].max() < 0.5 * key[list(pitch_classes)].min()


def test_loudness_and_timbre(features):
    quiet, loud = tones([440.0], amplitude=0.02), tones([440.0], amplitude=0.5)
    noise = 0.1 * np.random.default_rng(0).standard_normal(4 * SR)
    q, l, n = (encode_one(features, s)[10:-10] for s in (quiet, loud, noise))
    assert l[:, RMS].mean() > q[:, RMS].mean() + 1.0  # 28 dB louder, 20 dB per unit
    assert l[:, :M].mean() > q[:, :M].mean()
    assert n[:, FLATNESS].mean() > 0.4 > l[:, FLATNESS].mean()  # noise is flat, a tone is not
    assert n[:, CENTROID].mean() > 0.4 > l[:, CENTROID].mean()  # white noise centres at Nyquist/2


def test_onsets_fire_on_hits(features):
    frames = encode_one(features, drum_track(120, "h", 4.0))
    onset = frames[:, ONSET]
    hit_frames = [round(beat * 0.5 * 50) for beat in range(1, 7)]  # 50 fps, a hit every 25 frames
    for f in hit_frames:
        assert onset[f - 1 : f + 3].max() > 3 * onset.median()


def test_silence_is_quiet_and_rhythmless(features):
    frames = encode_one(features, np.zeros(2 * SR))
    assert torch.all(frames[:, RMS] == -2.0)
    assert frames[:, CHROMA:KEY + 12].abs().max() == 0
    assert frames[:, TEMPO:].abs().max() == 0


# ---------------------------------------------------------------------------------------------
# HFAudioEncoder on tiny random models


def wav2vec2_style(cls):
    return cls(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(32, 32),
        conv_kernel=(10, 3),
        conv_stride=(5, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )


def tiny_whisper():
    config = WhisperConfig(
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        num_mel_bins=80,
        max_source_positions=100,
        max_target_positions=50,
        vocab_size=100,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    return config, WhisperFeatureExtractor(feature_size=80, chunk_length=2)  # 2 s = 200 mel frames


BACKBONES = {
    "hubert": lambda: (wav2vec2_style(HubertConfig), Wav2Vec2FeatureExtractor(return_attention_mask=True)),
    "wav2vec2": lambda: (wav2vec2_style(Wav2Vec2Config), Wav2Vec2FeatureExtractor()),
    "whisper": tiny_whisper,
}
# Lengths below the receptive field, at it, odd, and full-length windows (Whisper: one 2 s chunk).
LENGTHS = {
    "hubert": [3, 20, 21, 401, 1601, 1601, 8000],
    "wav2vec2": [3, 20, 21, 401, 1601, 1601, 8000],
    "whisper": [3, 160, 321, 4001, 16000, 32000, 32000],
}


def music_config(kind, audio_layer=-1, **settings):
    model_config, extractor = BACKBONES[kind]()
    torch.manual_seed(0)
    return MusicLLMConfig(
        audio_config=model_config,
        text_config=tiny_text_config(),
        audio_layer=audio_layer,
        **hf_audio_settings(model_config, extractor, **settings),
    )


def random_windows(lens):
    audio = torch.zeros(len(lens), max(lens))
    for i, n in enumerate(lens):
        audio[i, :n] = torch.randn(n, generator=torch.Generator().manual_seed(i))
    return audio, torch.tensor(lens)


@pytest.mark.parametrize("kind", BACKBONES)
def test_hf_encoder_contract(kind, tmp_path):
    config = music_config(kind)
    config.save_pretrained(tmp_path)  # the feature extractor must come back from config.json
    config = MusicLLMConfig.from_pretrained(tmp_path)
    encoder = build_audio_encoder(config)
    assert isinstance(encoder, HFAudioEncoder)
    assert type(encoder.feature_extractor) is type(BACKBONES[kind]()[1])
    assert encoder.feature_extractor.to_dict() == BACKBONES[kind]()[1].to_dict()

    lens = LENGTHS[kind]
    frames, frame_lens = encoder(*random_windows(lens))
    expected = [lengths.window_frames(n, config.audio_frame_layers) for n in lens]
    assert frame_lens.tolist() == expected
    assert frames.shape == (len(lens), max(expected), 32)
    for i, count in enumerate(expected):
        assert frames[i, count:].abs().sum() == 0
    # frozen, and stays in eval mode
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.train().backbone.training
    assert not frames.requires_grad


@pytest.mark.parametrize("kind", ["hubert", "wav2vec2"])
def test_wav2vec2_style_frames_are_the_models_own(kind):
    """Each window's frames are what the backbone makes from that window alone (normalised,
    padded to the receptive field): the frame formula and the batching are both exact."""
    config = music_config(kind)
    encoder = build_audio_encoder(config)
    extractor = Wav2Vec2FeatureExtractor()
    audio, lens = random_windows(LENGTHS[kind])
    frames, frame_lens = encoder(audio, lens)
    minimum = lengths.min_window_samples(config.audio_frame_layers)
    for i, n in enumerate(lens.tolist()):
        values = extractor(audio[i, :n].numpy(), sampling_rate=SR, return_tensors="pt").input_values
        values = torch.nn.functional.pad(values, (0, max(0, minimum - n)))
        with torch.no_grad():
            alone = encoder.backbone(input_values=values).last_hidden_state[0]
        assert len(alone) == frame_lens[i]  # the model's real frame count for this length
        torch.testing.assert_close(frames[i, : frame_lens[i]], alone, atol=1e-5, rtol=1e-4)


def test_whisper_frame_formula_matches_its_convolutions():
    config = music_config("whisper")
    encoder = build_audio_encoder(config)
    whisper = encoder.backbone
    extractor = encoder.feature_extractor
    for n in [201, 321, 4001, 16000, 31999, 32000]:  # (its reflect padding needs > n_fft / 2)
        # mel frames of the unpadded audio, then Whisper's own two convolutions on them
        audio = np.random.default_rng(n).standard_normal(n)
        mel = extractor(audio, sampling_rate=SR, padding="longest", return_tensors="pt")
        assert mel.input_features.shape[-1] == n // 160
        with torch.no_grad():
            convolved = whisper.conv2(whisper.conv1(mel.input_features))
        assert convolved.shape[-1] == lengths.window_frames(n, config.audio_frame_layers)
    with torch.no_grad():  # a full chunk: the encoder's max_source_positions frames
        full = whisper(torch.zeros(1, 80, 200)).last_hidden_state
    assert full.shape[1] == lengths.window_frames(32000, config.audio_frame_layers) == 100


def test_whisper_window_is_capped_at_its_chunk():
    model_config, extractor = tiny_whisper()
    assert hf_audio_settings(model_config, extractor, window_seconds=30.0)["audio_window_seconds"] == 2.0
    assert hf_audio_settings(model_config, extractor, window_seconds=1.5)["audio_window_seconds"] == 1.5
    encoder = build_audio_encoder(music_config("whisper"))
    with pytest.raises(ValueError, match="chunk"):
        encoder(torch.zeros(1, 32001), torch.tensor([32001]))


def test_whisper_backbone_given_by_a_builder():
    config = music_config("whisper")
    full_model = AutoModel.from_config(config.audio_config)  # what from_pretrained would return
    encoder = build_audio_encoder(config, backbone=full_model)
    assert encoder.backbone is full_model.get_encoder()


def test_hf_settings():
    model_config, extractor = BACKBONES["hubert"]()
    settings = hf_audio_settings(model_config, extractor)
    assert settings["audio_frame_layers"] == [[10, 5, 0], [3, 2, 0]]
    assert settings["audio_window_seconds"] == 30.0 and settings["audio_sample_rate"] == 16000
    assert settings["audio_hidden_size"] == 32
    assert settings["audio_feature_extractor"]["feature_extractor_type"] == "Wav2Vec2FeatureExtractor"
    model_config, extractor = tiny_whisper()
    assert hf_audio_settings(model_config, extractor)["audio_frame_layers"] == [[160, 160, 0], [3, 1, 1], [3, 2, 1]]


@pytest.mark.parametrize("kind", BACKBONES)
def test_layer_selection(kind):
    audio, lens = random_windows(LENGTHS[kind][-3:])
    first = build_audio_encoder(music_config(kind, audio_layer=0))
    last = build_audio_encoder(music_config(kind, audio_layer=-1))
    weighted = build_audio_encoder(music_config(kind, audio_layer="weighted"))
    last.load_state_dict(first.state_dict())
    weighted.load_state_dict(first.state_dict(), strict=False)
    a, frame_lens = first(audio, lens)
    b, _ = last(audio, lens)
    assert not torch.allclose(a, b)

    # "weighted": the only trainable parameter; at init the plain mean of all hidden states
    assert [name for name, p in weighted.named_parameters() if p.requires_grad] == ["layer_weights"]
    states = [build_audio_encoder(music_config(kind, audio_layer=i)) for i in range(3)]
    for s in states:
        s.load_state_dict(first.state_dict())
    mean = sum(s(audio, lens)[0] for s in states) / 3
    mixed, _ = weighted(audio, lens)
    torch.testing.assert_close(mixed, mean, atol=1e-5, rtol=1e-4)
    (mixed * torch.randn_like(mixed)).sum().backward()
    assert weighted.layer_weights.grad is not None and weighted.layer_weights.grad.abs().sum() > 0
    assert all(p.grad is None for p in weighted.backbone.parameters())


def test_bad_layer_and_width_are_reported():
    with pytest.raises(ValueError, match="audio_layer"):
        build_audio_encoder(music_config("hubert", audio_layer=3))
    config = music_config("hubert")
    config.audio_hidden_size = 64
    with pytest.raises(ValueError, match="wide"):
        build_audio_encoder(config)
    with pytest.raises(ValueError, match="backbone"):
        build_audio_encoder(MusicLLMConfig(text_config=tiny_text_config()), backbone=torch.nn.Linear(1, 1))


def test_key_strength_ranks_the_played_key_first(features):
    """A C major scale and cadence vs the same in A minor: the key-strength block names the key."""
    def scale(tonic_hz, steps):
        return np.concatenate([tones([tonic_hz * 2 ** (s / 12), tonic_hz * 2 ** (steps[0] / 12) / 2], seconds=0.4)
                               for s in steps])
    major, minor = [0, 2, 4, 5, 7, 9, 11, 12, 7, 4, 0], [0, 2, 3, 5, 7, 8, 11, 12, 7, 3, 0]
    strength = slice(TEMPO + 2 * 48, TEMPO + 2 * 48 + 24)
    c_major = encode_one(features, scale(261.63, major))[0, strength]
    a_minor = encode_one(features, scale(220.00, minor))[0, strength]
    assert int(c_major.argmax()) == 0  # C major
    assert int(a_minor.argmax()) == 12 + 9  # A minor
    assert c_major.abs().max() <= 1.0 + 1e-5


def test_key_posterior_names_key_mode_and_tonic():
    """key_sharpness > 0 adds 37 features: a 24-key posterior, its minor share and 12 tonics."""
    config = MusicLLMConfig(audio_config=MusicFeaturesConfig(key_sharpness=20.0), text_config=tiny_text_config())
    encoder = build_audio_encoder(config)
    assert config.audio_hidden_size == MusicFeaturesConfig().hidden_size + 37

    def scale(tonic_hz, steps):
        return np.concatenate([tones([tonic_hz * 2 ** (s / 12), tonic_hz * 2 ** (steps[0] / 12) / 2], seconds=0.4)
                               for s in steps])
    start = TEMPO + 2 * 48 + 24
    for tonic_hz, steps, key, tonic, minor in ((261.63, [0, 2, 4, 5, 7, 9, 11, 12, 7, 4, 0], 0, 0, False),
                                               (220.00, [0, 2, 3, 5, 7, 8, 11, 12, 7, 3, 0], 21, 9, True)):
        frame = encode_one(encoder, scale(tonic_hz, steps))[0]
        posterior, share, tonics = frame[start:start + 24], frame[start + 24], frame[start + 25:start + 37]
        assert float(posterior.sum()) == pytest.approx(1.0, abs=1e-5)
        assert int(posterior.argmax()) == key and int(tonics.argmax()) == tonic
        assert (float(share) > 0.5) == minor
        # the same frame's plain key strengths are untouched by the option
        torch.testing.assert_close(frame[:start], encode_one(build_audio_encoder(
            MusicLLMConfig(audio_config=MusicFeaturesConfig(), text_config=tiny_text_config())), scale(tonic_hz, steps))[0])


def bass_line(bpm: float, notes_hz: list[float], beats_per_note: int, seconds: float = 12.0) -> np.ndarray:
    """A bass note on every beat, the same drum-less tone for `beats_per_note` beats, then the
    next note: the bass changes once a bar of that many beats."""
    t = np.arange(int(60.0 / bpm * SR)) / SR
    envelope = np.exp(-t / 0.3)  # every beat struck again, so the onsets say only the beat
    out = np.zeros(int(seconds * SR))
    for beat, start in enumerate(np.arange(0.0, seconds - 60.0 / bpm, 60.0 / bpm)):
        hz = notes_hz[(beat // beats_per_note) % len(notes_hz)]
        i = int(round(start * SR))
        out[i : i + len(t)] += 0.3 * np.sin(2 * np.pi * hz * t) * envelope
    return out


def test_bass_tempogram_shows_the_bar_where_the_bass_changes():
    """bass_tempogram adds tempo_bins features: the tempogram of the bass line's changes. A bass
    struck on every beat, changing note every 3 beats (3/4) or every 4 (4/4): the onset
    tempogram hears only the beat, the bass changes' tempogram the bar; silence gives zeros;
    the features before them do not change."""
    config = MusicLLMConfig(audio_config=MusicFeaturesConfig(bass_tempogram=True), text_config=tiny_text_config())
    encoder = build_audio_encoder(config)
    plain = build_audio_encoder(MusicLLMConfig(audio_config=MusicFeaturesConfig(), text_config=tiny_text_config()))
    B = config.audio_config.tempo_bins
    assert config.audio_hidden_size == MusicFeaturesConfig().hidden_size + B
    assert config.audio_config.bass_tempogram_offset == MusicFeaturesConfig().hidden_size
    lags = encoder.tempo_lag_seconds
    at = lambda values, seconds: float(values[np.argmin(np.abs(lags - seconds))])  # noqa: E731

    def bar_preference(beats):  # lag of 3 beats minus lag of 4 beats at 120 BPM, bass and onsets
        signal = bass_line(120, [110.0, 146.83, 130.81, 164.81], beats)
        frames = encode_one(encoder, signal)
        bass = frames[:, -B:].mean(0).numpy()
        onset = frames[0, TEMPO + 48 : TEMPO + 96].numpy()
        torch.testing.assert_close(frames[:, :-B], encode_one(plain, signal))
        return at(bass, 1.5) - at(bass, 2.0), at(onset, 1.5) - at(onset, 2.0)

    (bass3, onset3), (bass4, onset4) = bar_preference(3), bar_preference(4)
    assert bass3 > 0.1 and bass4 < -0.1  # the bass's bar, either way
    assert abs(onset3 - onset4) < 0.5 * (bass3 - bass4)  # which the onsets alone hardly tell
    silence = encode_one(encoder, np.zeros(4 * SR))
    assert float(silence[:, -B:].abs().max()) == 0.0


def test_bass_chroma_names_the_bass_note_under_the_same_chord():
    """bass_chroma adds 36 features: the bass's 12 pitch classes and their 24 key strengths. A C
    major triad over an A in the bass (A minor seventh) and over a C give the same upper chroma
    but other bass pitch classes; the features before them do not change."""
    config = MusicLLMConfig(audio_config=MusicFeaturesConfig(bass_chroma=True), text_config=tiny_text_config())
    encoder = build_audio_encoder(config)
    plain = build_audio_encoder(MusicLLMConfig(audio_config=MusicFeaturesConfig(), text_config=tiny_text_config()))
    assert config.audio_hidden_size == MusicFeaturesConfig().hidden_size + 36
    triad = [523.25, 659.26, 783.99]  # C5 E5 G5
    for bass_hz, pitch_class in ((110.0, 9), (130.81, 0)):  # A2, C3
        frame = encode_one(encoder, tones(triad + [bass_hz]))[0]
        bass = frame[-36:-24]
        assert int(bass.argmax()) == pitch_class and float(bass.max()) == pytest.approx(1.0)
        assert frame[-24:].abs().max() <= 1.0 + 1e-5
        torch.testing.assert_close(frame[:-36], encode_one(plain, tones(triad + [bass_hz]))[0])
