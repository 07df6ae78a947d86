"""Architecture configs: the weight-free `features` encoder and the whole music LLM.

`MusicLLMConfig` nests an `audio_config` (our `MusicFeaturesConfig`, or any transformers audio
model config such as HuBERT, Wav2Vec2, Whisper or MERT) and a `text_config` (any causal LM config,
such as Qwen2 or Llama). Besides the two nested configs it records the handful of numbers that
the audio length math needs (`musicllm.lengths`), so that the math never has to open an encoder
or a feature extractor: sample rate, window length, and the encoder's framing as a stack of
1-D convolutions. Run settings (learning rates, paths, ...) live in plain dataclasses elsewhere.
"""

from __future__ import annotations

import numpy as np
from transformers import AutoConfig, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from musicllm.vocabulary import MAX_AUDIO_SECONDS

AUDIO_TOKEN = "<|audio|>"


class MusicFeaturesConfig(PretrainedConfig):
    """DSP feature encoder (no weights): log-mel, chroma, onset/tempo and loudness/timbre
    descriptors at a fixed frame rate of `sample_rate / hop_length` frames per second."""

    model_type = "musicllm_features"

    sample_rate: int = 16000
    hop_length: int = 320  # 50 frames per second at 16 kHz
    n_fft: int = 2048  # 128 ms: enough frequency resolution for chroma down to ~100 Hz
    n_mels: int = 64
    fmin: float = 30.0
    fmax: float = 8000.0
    # Tempogram: autocorrelation of the onset envelope at log-spaced lags, covering beat
    # periods (tempo) and bar periods (metre).
    tempo_bins: int = 48
    tempo_min_bpm: float = 15.0  # 4 s lag: a 4/4 bar at 60 BPM
    tempo_max_bpm: float = 320.0
    tempo_context_seconds: float = 6.0  # onset context each frame's tempogram looks at
    # > 0 adds the key as a posterior: softmax(key_sharpness x the 24 key strengths), with the
    # minor share and the tonic (major + minor of each pitch class) read off it. 0 keeps the
    # features of checkpoints made before it existed.
    key_sharpness: float = 0.0
    # True adds the bass's pitch classes (window mean, from power below ~250 Hz) and their 24 key
    # strengths: bass lines dwell on the tonic, which tells relative keys (C major, A minor) apart.
    bass_chroma: bool = False
    # True adds a tempogram of the bass line's changes (its pitch classes before and after each
    # frame): chords and bass notes change on the bar, so its long lags are bar periods where drums
    # may be silent or play every beat alike. tempo_bins values per frame, after the bass chroma.
    bass_tempogram: bool = False
    # A pretrained music tagger whose outputs join the features ("MTT_musicnn" or "MSD_musicnn",
    # musicllm/musicnn.py): its 50 tag probabilities and 200-wide embedding for the 3 s patch each
    # frame lies in. It hears timbre, instruments, genre and mood as real recordings have them,
    # which DSP descriptors do not; tempo, key and metre stay with the DSP features. Its weights
    # live in the checkpoint (the builder loads them from the musicnn package).
    tagger: str | None = None

    @property
    def tagger_size(self) -> int:
        return 50 + 200 if self.tagger else 0

    @property
    def hidden_size(self) -> int:
        """Feature dimension per frame (D_enc); encoders.FeaturesEncoder documents the layout."""
        # log-mel + chroma + window-mean chroma + 4 scalars (onset, rms, centroid, flatness)
        # + tempogram + window-mean tempogram + 24 key strengths [+ 24 key posteriors, minor, 12 tonics]
        # [+ 12 bass pitch classes, 24 bass key strengths] [+ bass changes' tempogram]
        # [+ 50 tags, 200 tagger embedding]
        return (self.n_mels + 12 + 12 + 4 + 2 * self.tempo_bins + 24 + (37 if self.key_sharpness > 0 else 0)
                + (36 if self.bass_chroma else 0) + (self.tempo_bins if self.bass_tempogram else 0) + self.tagger_size)

    @property
    def pitch_class_offsets(self) -> list[int]:
        """Where each block of 12 values indexed by pitch class C..B starts in a frame: chroma,
        window-mean chroma, major and minor key strengths [, key posteriors major and minor, tonic
        posterior] [, bass chroma, its major and minor key strengths]. Transposing the music
        rotates each of these blocks alike (the key head relies on it, projector.py)."""
        M, B = self.n_mels, self.tempo_bins
        offsets = [M, M + 12, M + 28 + 2 * B, M + 40 + 2 * B]
        if self.key_sharpness > 0:
            offsets += [M + 52 + 2 * B, M + 64 + 2 * B, M + 77 + 2 * B]
        if self.bass_chroma:
            start = M + 52 + 2 * B + (37 if self.key_sharpness > 0 else 0)
            offsets += [start, start + 12, start + 24]
        return offsets

    @property
    def level_features(self) -> list[int]:
        """The frame values that tell how loud the music is played: the log-mel, onset strength,
        RMS level, spectral centroid and flatness (the dynamics head reads them, projector.py)."""
        return [*range(self.n_mels), *range(self.n_mels + 24, self.n_mels + 28)]

    @property
    def tempogram_offsets(self) -> list[int]:
        """Where the frame's tempogram and the window-mean tempogram start (tempo_bins values each,
        at the lags of `tempogram_bpm`)."""
        return [self.n_mels + 28, self.n_mels + 28 + self.tempo_bins]

    @property
    def bass_tempogram_offset(self) -> int | None:
        """Where the bass changes' tempogram starts (tempo_bins values, the lags of
        `tempogram_bpm`), or None without it."""
        if not self.bass_tempogram:
            return None
        return self.hidden_size - self.tagger_size - self.tempo_bins

    @property
    def tempogram_bpm(self) -> list[float]:
        """The tempo (BPM) of each tempogram bin's lag: log-spaced from tempo_max_bpm down to tempo_min_bpm."""
        return [float(b) for b in np.geomspace(self.tempo_max_bpm, self.tempo_min_bpm, self.tempo_bins)]


AutoConfig.register(MusicFeaturesConfig.model_type, MusicFeaturesConfig)


class MusicLLMConfig(PretrainedConfig):
    """Frozen audio encoder -> projector (stack `stack_factor` frames, MLP) -> causal LLM.

    Audio length fields (all set by `musicllm.builders` from the encoder and its feature
    extractor, and read only by `musicllm.lengths.num_audio_tokens`):
      audio_sample_rate     the encoder's input rate (Hz)
      audio_window_seconds  long audio is cut into windows of this length, each encoded alone
      audio_frame_layers    the encoder framing as [kernel, stride, padding] 1-D convolutions
                            over samples (e.g. Wav2Vec2's conv stack, or [[hop, hop, 0]])
      audio_hidden_size     D_enc, the width of one encoder frame
      audio_summary_tokens  extra tokens per window (0 or 1) added by the projector
      audio_attributes      attribute tokens per window added by the projector (their `slots`)
      max_audio_seconds     longer audio is rejected with an error (never silently truncated)
    """

    model_type = "musicllm"
    sub_configs = {"audio_config": AutoConfig, "text_config": AutoConfig}

    audio_config: dict | PretrainedConfig | None = None
    text_config: dict | PretrainedConfig | None = None
    audio_token_id: int | None = None
    audio_sample_rate: int = 16000
    audio_window_seconds: float = 10.0
    audio_frame_layers: list | None = None
    audio_hidden_size: int | None = None
    # Which hidden state of an `hf` encoder to use: an index, or "weighted" for a learned
    # softmax weighting of all layers (SUPERB / MERT style).
    audio_layer: int | str = -1
    max_audio_seconds: float = MAX_AUDIO_SECONDS
    stack_factor: int = 25
    # 1: each window also gets one token summarising all its frames (their mean and spread), a
    # direct path for window-level attributes (key, tempo, style) that a small LLM otherwise has
    # to gather across many frame tokens. 0: frame tokens only.
    audio_summary_tokens: int = 0
    # Attribute tokens (projector.py): a list of {"name", "classes", "token_ids", "pad_id",
    # "label_ids", "words", "slots", "multi_label"}: per window, a trained head classifies the
    # window's frames into `classes` and hands the LLM its label's tokens (" key:") and its `words`
    # likeliest class words' own input embeddings (`token_ids`, one list per class, each padded
    # with `pad_id` to the longest), `slots` tokens per attribute in all (a multi-label one with a
    # `min_probability` pads the words of classes less likely than that); a head's `temperature`
    # divides its logits (its calibration); a `composed_of` one has no head: its `table` gives its
    # class for every combination of those attributes' classes (the mood). None: no attribute tokens.
    audio_attributes: list | None = None
    projector_hidden_size: int | None = None  # default: the LLM's hidden size
    projector_act: str = "gelu"
    # An `hf` encoder's feature extractor settings (`FeatureExtractor.to_dict()`), so that a
    # saved checkpoint rebuilds it without the hub.
    audio_feature_extractor: dict | None = None
    # Hub encoders with custom code (MERT) need this; it stays off unless the user asks.
    audio_trust_remote_code: bool = False

    def __post_init__(self, **kwargs):
        if isinstance(self.audio_config, dict):
            self.audio_config = self._audio_config_from_dict(self.audio_config)
        elif self.audio_config is None:
            self.audio_config = MusicFeaturesConfig()
        if isinstance(self.text_config, dict):
            kind = self.text_config.get("model_type", "qwen2")
            self.text_config = CONFIG_MAPPING[kind](**{k: v for k, v in self.text_config.items() if k != "model_type"})
        elif self.text_config is None:
            self.text_config = CONFIG_MAPPING["qwen2"]()
        if isinstance(self.audio_config, MusicFeaturesConfig):
            # The features encoder fully determines its own framing.
            self.audio_sample_rate = self.audio_config.sample_rate
            hop = self.audio_config.hop_length
            self.audio_frame_layers = [[hop, hop, 0]]
            self.audio_hidden_size = self.audio_config.hidden_size
        if self.audio_frame_layers is None:
            raise ValueError("MusicLLMConfig needs audio_frame_layers for a non-features encoder")
        self.audio_frame_layers = [list(map(int, layer)) for layer in self.audio_frame_layers]
        super().__post_init__(**kwargs)

    def _audio_config_from_dict(self, settings: dict) -> PretrainedConfig:
        kind = settings.get("model_type", MusicFeaturesConfig.model_type)
        if kind in CONFIG_MAPPING:
            return CONFIG_MAPPING[kind](**{k: v for k, v in settings.items() if k != "model_type"})
        # A custom-code encoder (MERT): its config class comes with the model it was built from.
        source = settings.get("_name_or_path")
        if not source:
            raise ValueError(f"audio_config has model_type {kind!r}, which transformers does not know, and no source")
        if not self.audio_trust_remote_code:
            raise ValueError(f"audio_config {kind!r} from {source} needs audio_trust_remote_code=True to load its code")
        return AutoConfig.from_pretrained(source, trust_remote_code=True)

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def audio_extra_tokens(self) -> int:
        """Tokens the projector adds to each window besides its frame tokens."""
        return self.audio_summary_tokens + sum(a["slots"] for a in self.audio_attributes or [])

    def get_text_config(self, decoder=None, encoder=None) -> PretrainedConfig:
        return self.text_config


AutoConfig.register(MusicLLMConfig.model_type, MusicLLMConfig)
