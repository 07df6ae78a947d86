"""Frozen audio encoders: windows of samples in, frames of features out.

Two encoders share one interface:
  - `FeaturesEncoder`: the embedded default, plain DSP in torch (log-mel, chroma, loudness,
    timbre, onsets and a tempogram) with no weights at all.
  - `HFAudioEncoder`: any transformers audio model (HuBERT, Wav2Vec2, MERT, the Whisper
    encoder), its feature extractor rebuilt from the config.

    forward(audio_values (W, S) float, audio_lens (W,) long) -> (frames (W, F, D_enc), frame_lens (W,))

`audio_values` holds W windows at `config.audio_sample_rate`, zero-padded to S samples, and
`audio_lens` their true lengths. `frame_lens[i]` is exactly
`lengths.window_frames(audio_lens[i], config.audio_frame_layers)`, and frames past it are zero.
Both encoders are frozen: no gradients, always in eval mode, deterministic. The one exception is
the optional learned layer weighting of `HFAudioEncoder` (`audio_layer="weighted"`).

This module knows nothing about the LLM, the projector or tokens: it only turns audio into frames.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicllm import lengths
from musicllm.configuration import MusicFeaturesConfig, MusicLLMConfig


def _frame_lens(audio_lens: torch.Tensor, frame_layers) -> torch.Tensor:
    """The contract: frames per window, from the length math and nothing else."""
    counts = [lengths.window_frames(int(n), frame_layers) for n in audio_lens.tolist()]
    return torch.tensor(counts, dtype=torch.long)


def _check_lens(audio_values: torch.Tensor, audio_lens: torch.Tensor) -> None:
    if audio_values.dim() != 2 or audio_lens.shape != audio_values.shape[:1]:
        raise ValueError(
            f"expected audio_values (W, S) and audio_lens (W,), "
            f"got {tuple(audio_values.shape)} and {tuple(audio_lens.shape)}"
        )
    if len(audio_lens) and (audio_lens.min() < 0 or audio_lens.max() > audio_values.shape[1]):
        raise ValueError(f"audio_lens must lie in [0, {audio_values.shape[1]}], got {audio_lens.tolist()}")


# ---------------------------------------------------------------------------------------------
# Filterbanks (numpy, built once; no librosa calls, whose first use compiles numba for seconds)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular, area-normalised filters on Slaney's mel scale:
    librosa.filters.mel's, from transformers (as musicllm.musicnn's are)."""
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=fmin,
                           max_frequency=fmax, sampling_rate=sample_rate, norm="slaney", mel_scale="slaney").T


def chroma_filterbank(
    sample_rate: int, n_fft: int, fmin: float = 60.0, center_hz: float = 523.25, octave_width: float = 2.0
) -> np.ndarray:
    """(12, n_fft // 2 + 1) map from STFT bins to pitch classes (0 = C).

    Each bin above `fmin` shares its energy among the pitch classes near its pitch (a Gaussian
    at least half a semitone wide, wider where one bin spans several semitones), weighted by a
    Gaussian over octaves around `center_hz` so that rumble and hiss count less."""
    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    hz = np.maximum(fft_hz, 1e-3)
    pitch = 12.0 * np.log2(hz / 440.0) + 69.0  # MIDI numbers: 60 is C4, so pitch % 12 == 0 is C
    bin_semitones = 12.0 * (sample_rate / n_fft) / (hz * math.log(2.0))
    sigma = np.maximum(1.0, bin_semitones) / 2.0
    distance = np.remainder(pitch[None, :] - np.arange(12)[:, None] + 6.0, 12.0) - 6.0
    weights = np.exp(-0.5 * (distance / sigma) ** 2)
    weights /= weights.sum(axis=0, keepdims=True)
    weights *= np.exp(-0.5 * (np.log2(hz / center_hz) / octave_width) ** 2)
    weights[:, fft_hz < fmin] = 0.0
    return weights.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The embedded default: DSP features


# Bumped whenever the features encoder computes something different: caches of its output
# (training.features) are keyed by it.
FEATURES_VERSION = 3  # 3: the tagger's frame-to-patch map steps 187 mel frames

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
KK_MAJOR = [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]
KK_MINOR = [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]


def key_profiles() -> np.ndarray:
    """(24, 12): the KK profile of C..B major, then C..B minor, each zero-mean and unit-norm."""
    rows = [np.roll(profile, tonic) for profile in (KK_MAJOR, KK_MINOR) for tonic in range(12)]
    rows = np.array(rows) - np.mean(rows, axis=1, keepdims=True)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class FeaturesEncoder(nn.Module):
    """Weight-free music descriptors at `sample_rate / hop_length` frames per second.

    Frame t is the STFT frame (n_fft samples, Hann) centred on the middle of hop t, so a window
    of n samples gives exactly n // hop_length frames (conv framing [[hop, hop, 0]]). Each frame
    is a vector of D_enc = n_mels + 12 + 12 + 4 + 2 * tempo_bins + 24 values (212 by default):

        [0, M)               log-mel power, fmin..fmax        (dB + 70) / 25, ~[-1.2, 2]
        [M, M+12)            chroma, C..B, divided by the frame's largest bin    [0, 1]
        [M+12, M+24)         window-mean chroma (key and mode), same on every frame  [0, 1]
        M+24                 onset strength: rectified log-mel flux, log(1 + dB) / 2, >= 0
        M+25                 RMS level                          (dB + 40) / 20, ~[-2, 2]
        M+26                 spectral centroid / Nyquist                         [0, 1]
        M+27                 spectral flatness (geometric / arithmetic mean power)  [0, 1]
        [M+28, M+28+B)       tempogram: autocorrelation of the onset envelope over the
                             tempo_context_seconds around the frame (normalised by lag 0),
                             at B log-spaced lags from 60/tempo_max_bpm to 60/tempo_min_bpm s
                                                                                 [-1, 1]
        [M+28+B, M+28+2B)    window-mean tempogram (tempo and metre), same on every frame
        [M+28+2B, M+52+2B)   key strength: Pearson correlation of the window-mean chroma with
                             the Krumhansl-Kessler profile of each of the 24 keys (C..B major,
                             then C..B minor), same on every frame               [-1, 1]
      with key_sharpness > 0, 37 more, same on every frame:
        [M+52+2B, M+76+2B)   key posterior: softmax(key_sharpness x key strength)  [0, 1]
        M+76+2B              minor share: the posterior's minor half, summed        [0, 1]
        [M+77+2B, M+89+2B)   tonic posterior, C..B: major + minor of each pitch class [0, 1]
      with bass_chroma, 36 more (after the above), same on every frame:
        12                   window-mean bass chroma (30-250 Hz weighted around 110 Hz),
                             divided by its largest bin                          [0, 1]
        24                   its key strengths, as for the chroma above           [-1, 1]
      with bass_tempogram, tempo_bins more (after the above):
        B                    tempogram of the bass line's changes: as the onset tempogram,
                             of 10 x (1 - cosine) between the bass pitch classes' means around
                             the 0.1 s before and after the frame (chords change on the bar)
                                                                                 [-1, 1]
      with a tagger (musicnn), 250 more, last: for the tagger's 3 s patch that holds the frame
        50                   tag probabilities (musicnn.MTT_TAGS or MSD_TAGS)     [0, 1]
        200                  the tagger's penultimate layer (batch-normalised)   ~[-3, 3]

    Chroma is computed from power above 60 Hz; centroid and flatness from the whole spectrum.
    The tempogram's short lags are beat periods (tempo), its long lags bar periods (metre: 3/4
    lifts the lag of 3 beats against that of 4, 4/4 the reverse; the Hann-weighted context
    favours shorter lags overall). All scalings are fixed constants, so a window's features never
    depend on other windows or on batch composition; window means and the tempogram use only the
    window's own frames. Windows are encoded alone, so a window cut mid-note starts with an onset.
    """

    MEL_DB_FLOOR = -100.0  # power floor for the mel and flux in dB (silence)
    RMS_DB_FLOOR = -80.0
    CHROMA_FLOOR = 1e-7  # chroma energy of a ~-65 dBFS tone: quieter frames fade to zero chroma
    # Onset-envelope energy (dB^2) under which the tempogram fades out rather than amplifying
    # noise: about one 0.5 dB onset per beat at 120 BPM over the context.
    ONSET_FLOOR = 1.0
    # The bass line's change at a frame compares its pitch classes over 5 frames (0.1 s at 50
    # frames a second) centred 5 frames before and after it: a note's attack does not count.
    BASS_CHANGE_FRAMES = 5

    def __init__(self, config: MusicLLMConfig):
        super().__init__()
        fc = config.audio_config
        if not isinstance(fc, MusicFeaturesConfig):
            raise TypeError(f"FeaturesEncoder needs a MusicFeaturesConfig, got {type(fc).__name__}")
        self.config = config
        self.frame_layers = config.audio_frame_layers
        self.min_samples = lengths.min_window_samples(self.frame_layers)
        self.n_fft, self.hop = fc.n_fft, fc.hop_length
        self.sample_rate = fc.sample_rate
        self.hidden_size = fc.hidden_size
        self.key_sharpness = float(getattr(fc, "key_sharpness", 0.0))
        self.bass_chroma = bool(getattr(fc, "bass_chroma", False))
        self.bass_tempogram = bool(getattr(fc, "bass_tempogram", False))
        fps = fc.sample_rate / fc.hop_length

        # Constant tables live in numpy and become float32 tensors on first use on each device.
        # They are not buffers: transformers 5 builds models on the meta device and refills
        # non-persistent buffers with uninitialised memory when loading a checkpoint, and
        # `model.to(torch.bfloat16)` would cast them. So checkpoints hold nothing for this
        # encoder, and it always computes in float32 (its frames are float32).
        n = np.arange(fc.n_fft)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / fc.n_fft)  # periodic Hann, as torch.hann_window
        # Parseval: the window-weighted mean square of a frame from its one-sided power spectrum
        # (the spectrum is divided by sum(window), see _power).
        parseval = np.full(fc.n_fft // 2 + 1, 2.0)
        parseval[0] = parseval[-1] = 1.0
        self.context = max(2, round(fc.tempo_context_seconds * fps))
        self._numpy_tables = {
            name: np.ascontiguousarray(table, dtype=np.float32)
            for name, table in dict(
                window=window,
                mel_fb=mel_filterbank(fc.sample_rate, fc.n_fft, fc.n_mels, fc.fmin, fc.fmax),
                chroma_fb=chroma_filterbank(fc.sample_rate, fc.n_fft),
                bass_fb=chroma_filterbank(fc.sample_rate, fc.n_fft, fmin=30.0, center_hz=110.0, octave_width=1.0),
                bin_hz=np.linspace(0.0, fc.sample_rate / 2, fc.n_fft // 2 + 1),
                parseval=parseval * window.sum() ** 2 / (fc.n_fft * (window**2).sum()),
                tempo_window=np.hanning(self.context),  # symmetric Hann over the onset context
                key_profiles=key_profiles(),
            ).items()
        }
        self._tables: dict[str, dict[str, torch.Tensor]] = {}

        # Tempogram lags, in frames, log-spaced; each bin takes the largest autocorrelation over
        # the integer lags within half a bin of its centre (at least the two nearest ones).
        lags = np.geomspace(60.0 / fc.tempo_max_bpm * fps, 60.0 / fc.tempo_min_bpm * fps, fc.tempo_bins)
        half_step = math.sqrt(lags[1] / lags[0]) if fc.tempo_bins > 1 else 1.0
        self.lag_ranges = []
        for lag in lags:
            low, high = math.ceil(lag / half_step), math.floor(lag * half_step)
            low, high = min(low, math.floor(lag)), max(high, math.ceil(lag))
            self.lag_ranges.append((max(low, 1), max(high, 1)))
        self.max_lag = max(high for _, high in self.lag_ranges)
        self.ac_size = 1 << (self.context + self.max_lag).bit_length()  # no circular wrap-around
        self.tempo_lag_seconds = lags / fps  # bin centres, for readers of the features
        self.tagger = None
        if fc.tagger:
            from musicllm.musicnn import MODELS, SAMPLE_RATE, Musicnn

            if fc.tagger not in MODELS or fc.sample_rate != SAMPLE_RATE:
                raise ValueError(f"tagger {fc.tagger!r}: choose one of {sorted(MODELS)}, at {SAMPLE_RATE} Hz "
                                 f"(the features run at {fc.sample_rate} Hz)")
            self.tagger = Musicnn(n_tags=len(MODELS[fc.tagger]))  # weights: the checkpoint's, or the builder's
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeaturesEncoder:
        return super().train(False)  # nothing to train, and it behaves the same either way

    def _table(self, device: torch.device) -> dict[str, torch.Tensor]:
        if str(device) not in self._tables:
            self._tables[str(device)] = {k: torch.from_numpy(v).to(device) for k, v in self._numpy_tables.items()}
        return self._tables[str(device)]

    def _power(self, audio_values: torch.Tensor, audio_lens: torch.Tensor) -> torch.Tensor:
        """(W, S) samples -> (W, F, K) power spectra, F = max(S, min_samples) // hop."""
        samples = audio_values.shape[1]
        valid = torch.arange(samples, device=audio_values.device) < audio_lens[:, None]
        x = audio_values.float() * valid  # whatever lies past a window's end counts as silence
        # (n_fft - hop) samples of padding in all, so n samples give n // hop frames
        left = (self.n_fft - self.hop) // 2
        right = self.n_fft - self.hop - left + max(0, self.min_samples - samples)
        x = F.pad(x, (left, right))
        window = self._table(x.device)["window"]
        spec = torch.stft(x, self.n_fft, self.hop, window=window, center=False, return_complex=True)
        spec = spec.transpose(1, 2) / window.sum()  # a sine of amplitude A peaks at A / 2
        return spec.real**2 + spec.imag**2

    def _tempogram(self, onset: torch.Tensor) -> torch.Tensor:
        """(W, F) onset envelope, zero past each window's end -> (W, F, tempo_bins)."""
        half = self.context // 2
        padded = F.pad(onset, (half, self.context - 1 - half))
        segments = padded.unfold(-1, self.context, 1)  # W, F, C: the context of each frame
        segments = (segments - segments.mean(-1, keepdim=True)) * self._table(onset.device)["tempo_window"]
        spectrum = torch.fft.rfft(segments, n=self.ac_size)
        ac = torch.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=self.ac_size)[..., : self.max_lag + 1]
        ac = ac / ac[..., :1].clamp_min(self.ONSET_FLOOR)
        return torch.stack([ac[..., low : high + 1].amax(-1) for low, high in self.lag_ranges], dim=-1)

    def _bass_changes(self, bass: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
        """(W, F, 12) the bass's pitch-class power -> (W, F) how much they change across each frame:
        10 x (1 - cosine) between their means around BASS_CHANGE_FRAMES before and after it; 0
        where either side reaches past the window."""
        k, frames = self.BASS_CHANGE_FRAMES, bass.shape[1]
        loudest = bass.amax(-1, keepdim=True)
        heard = (loudest >= self.CHROMA_FLOOR).float()  # W, F, 1: a bass above the chroma's floor
        bass = torch.cat([bass / loudest.clamp_min(self.CHROMA_FLOOR), heard], dim=-1)
        smooth = F.avg_pool1d(bass.transpose(1, 2), k, 1, padding=k // 2, count_include_pad=False).transpose(1, 2)
        before, after = F.pad(smooth, (0, 0, k, 0))[:, :frames], F.pad(smooth, (0, 0, 0, k))[:, k:]
        change = 1.0 - F.cosine_similarity(before[..., :12], after[..., :12], dim=-1).clamp(-1.0, 1.0)
        t = torch.arange(frames, device=bass.device)
        inside = (t >= k + k // 2) & (t[None] + k + k // 2 < frame_lens[:, None])
        # silence on either side is no change of note
        return 10.0 * change * inside * torch.minimum(before[..., 12], after[..., 12])

    @staticmethod
    def _window_chroma(chroma: torch.Tensor, frame_mask: torch.Tensor, num_frames: torch.Tensor) -> torch.Tensor:
        """(W, F, 12) per-frame chroma -> (W, 12) window mean over real frames, largest bin 1."""
        mean = (chroma * frame_mask[..., None]).sum(1) / num_frames  # padding never leaks in
        return mean / mean.amax(-1, keepdim=True).clamp_min(1e-3)

    @staticmethod
    def _key_strength(chroma: torch.Tensor, table: dict[str, torch.Tensor]) -> torch.Tensor:
        """(W, 12) -> (W, 24): Pearson correlation with the KK profile of each key."""
        centred = chroma - chroma.mean(-1, keepdim=True)
        return (centred @ table["key_profiles"].T) / centred.norm(dim=-1, keepdim=True).clamp_min(1e-6)

    @torch.no_grad()
    def forward(self, audio_values: torch.Tensor, audio_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_lens(audio_values, audio_lens)
        if len(audio_lens) == 0:
            return audio_values.new_zeros((0, 0, self.hidden_size)), audio_lens.new_zeros(0)
        audio_lens = audio_lens.to(audio_values.device)
        frame_lens = _frame_lens(audio_lens, self.frame_layers).to(audio_values.device)
        power = self._power(audio_values, audio_lens)  # W, F, K
        table = self._table(power.device)
        frame_mask = (torch.arange(power.shape[1], device=power.device) < frame_lens[:, None]).float()  # W, F
        num_frames = frame_lens.clamp_min(1)[:, None].float()

        mel = power @ table["mel_fb"].T  # W, F, M
        mel_db = 10.0 * torch.log10(mel.clamp_min(10 ** (self.MEL_DB_FLOOR / 10)))
        log_mel = (mel_db + 70.0) / 25.0

        chroma = power @ table["chroma_fb"].T  # W, F, 12
        chroma = chroma / chroma.amax(-1, keepdim=True).clamp_min(self.CHROMA_FLOOR)
        key = self._window_chroma(chroma, frame_mask, num_frames)  # W, 12
        # The key as a listener's tonal hierarchy, not 12 raw energies: a small model learns
        # "which of 24 keys" from a few hundred clips only when it is one readable number each.
        key_strength = self._key_strength(key, table)  # W, 24
        key_features = [key_strength]
        if self.key_sharpness > 0:
            # Relative keys share their notes, so their strengths differ by a few hundredths: the
            # raw numbers leave mode to a sharp non-linear step (a linear probe on them reads mode
            # at chance, 52%; with the posterior, 78%). The posterior makes "which key, which
            # mode" a near one-hot a small projector reads at once.
            posterior = torch.softmax(self.key_sharpness * key_strength, dim=-1)  # W, 24
            minor = posterior[:, 12:].sum(-1, keepdim=True)  # W, 1
            key_features += [posterior, minor, posterior[:, :12] + posterior[:, 12:]]
        bass_power = power @ table["bass_fb"].T if self.bass_chroma or self.bass_tempogram else None  # W, F, 12
        if self.bass_chroma:
            bass = bass_power / bass_power.amax(-1, keepdim=True).clamp_min(self.CHROMA_FLOOR)
            bass = self._window_chroma(bass, frame_mask, num_frames)
            key_features += [bass, self._key_strength(bass, table)]
        key_block = torch.cat(key_features, dim=-1)  # W, 24 [+ 37] [+ 36]

        flux = (mel_db[:, 1:] - mel_db[:, :-1]).clamp_min(0.0).mean(-1)  # W, F-1, in dB
        onset_db = F.pad(flux, (1, 0)) * frame_mask  # frame 0 has no predecessor in its window
        rms_db = 10.0 * torch.log10((power @ table["parseval"]).clamp_min(10 ** (self.RMS_DB_FLOOR / 10)))
        total = power.sum(-1).clamp_min(1e-20)
        centroid = (power @ table["bin_hz"]) / total / (self.sample_rate / 2)
        floored = power.clamp_min(1e-10)
        flatness = torch.exp(torch.log(floored).mean(-1)) / floored.mean(-1)
        scalars = torch.stack([torch.log1p(onset_db) / 2.0, (rms_db + 40.0) / 20.0, centroid, flatness], dim=-1)

        tempo = self._tempogram(onset_db)  # W, F, B
        metre = (tempo * frame_mask[..., None]).sum(1) / num_frames  # W, B

        frames = power.shape[1]
        features = torch.cat(
            [
                log_mel,
                chroma,
                key[:, None].expand(-1, frames, -1),
                scalars,
                tempo,
                metre[:, None].expand(-1, frames, -1),
                key_block[:, None].expand(-1, frames, -1),
                *([self._tempogram(self._bass_changes(bass_power, frame_lens))] if self.bass_tempogram else []),
            ],
            dim=-1,
        )
        if self.tagger is not None:
            features = torch.cat([features, self._tags(audio_values, audio_lens, frame_lens, frames)], dim=-1)
        features = features * frame_mask[..., None]
        return features[:, : int(frame_lens.max())], frame_lens

    def _tags(self, audio_values: torch.Tensor, audio_lens: torch.Tensor, frame_lens: torch.Tensor,
              frames: int) -> torch.Tensor:
        """(W, F, 250): each frame's tagger patch outputs. Patches are musicnn's non-overlapping
        3 s ones; frames past the last whole patch take the last patch (musicnn drops that
        remainder), and a window shorter than a patch is looped to one (musicnn.tag)."""
        from musicllm.musicnn import HOP, PATCH_FRAMES, tag

        self.tagger.float()  # float32 whatever the model's dtype: its batch norms are fitted so
        out = audio_values.new_zeros((len(audio_lens), frames, self.config.audio_config.tagger_size), dtype=torch.float32)
        for w, (samples, count) in enumerate(zip(audio_lens.tolist(), frame_lens.tolist())):
            if samples == 0:
                continue
            taggram, embedding = tag(self.tagger, audio_values[w, :samples].float())  # P, 50 and P, 200
            # patch p covers mel frames [187p, 187p + 187), i.e. samples from 187 * 256 * p on
            patch = (torch.arange(count, device=out.device) * self.hop // (PATCH_FRAMES * HOP)).clamp(max=len(taggram) - 1)
            out[w, :count] = torch.cat([taggram, embedding], dim=-1).to(out.device)[patch]  # count, 250
        return out


# ---------------------------------------------------------------------------------------------
# Any transformers audio model


def _load_feature_extractor(settings: dict):
    """Rebuild a feature extractor from its `to_dict()`, without the hub."""
    from transformers.models.auto.feature_extraction_auto import feature_extractor_class_from_name

    name = settings.get("feature_extractor_type")
    cls = feature_extractor_class_from_name(name) if name else None
    if cls is None:
        raise ValueError(f"unknown feature_extractor_type {name!r} in config.audio_feature_extractor")
    return cls.from_dict(dict(settings))


def _is_whisper_like(model_config, feature_extractor) -> bool:
    # a log-mel front end over fixed chunks, then Whisper's two convolutions
    whisper_extractor = type(feature_extractor).__name__ == "WhisperFeatureExtractor"
    return getattr(model_config, "model_type", None) == "whisper" or whisper_extractor


def hf_audio_settings(model_config, feature_extractor, window_seconds: float | None = None) -> dict:
    """The `MusicLLMConfig` audio fields for a transformers audio model and its feature extractor.

    Wav2Vec2-style models (Wav2Vec2, HuBERT, WavLM, MERT, ...) frame raw samples with their conv
    stack; windows default to 30 s. Whisper frames a log-mel (hop_length samples per mel frame)
    with two convolutions, and sees at most one chunk (chunk_length s), which caps the window.
    """
    sample_rate = int(feature_extractor.sampling_rate)
    hidden_size = getattr(model_config, "hidden_size", None) or getattr(model_config, "d_model", None)
    if hasattr(model_config, "conv_kernel") and hasattr(model_config, "conv_stride"):
        frame_layers = [[int(k), int(s), 0] for k, s in zip(model_config.conv_kernel, model_config.conv_stride)]
        window = 30.0 if window_seconds is None else window_seconds
    elif _is_whisper_like(model_config, feature_extractor):
        hop, chunk = int(feature_extractor.hop_length), float(feature_extractor.chunk_length)
        mel_frames = 2 * model_config.max_source_positions  # conv2 has stride 2
        if mel_frames != feature_extractor.nb_max_frames:
            raise ValueError(
                f"the Whisper encoder takes {mel_frames} mel frames but its feature extractor makes "
                f"{feature_extractor.nb_max_frames} ({chunk:g} s chunks)"
            )
        frame_layers = [[hop, hop, 0], [3, 1, 1], [3, 2, 1]]
        window = min(chunk if window_seconds is None else window_seconds, chunk)
    else:
        raise ValueError(
            f"don't know how {type(model_config).__name__} frames audio: supported are Wav2Vec2-style "
            "models (conv_kernel/conv_stride) and Whisper"
        )
    return dict(
        audio_sample_rate=sample_rate,
        audio_window_seconds=float(window),
        audio_frame_layers=frame_layers,
        audio_hidden_size=int(hidden_size),
        audio_feature_extractor=feature_extractor.to_dict(),
    )


def _num_hidden_states(model_config) -> int:
    """Embeddings output + one per layer: the length of `outputs.hidden_states`."""
    if getattr(model_config, "is_encoder_decoder", False):
        return model_config.encoder_layers + 1
    return model_config.num_hidden_layers + 1


class HFAudioEncoder(nn.Module):
    """A frozen transformers audio model; its frames are one hidden state, or a learned mix.

    `config.audio_layer` picks the hidden state: an index into `outputs.hidden_states` (-1, the
    last, by default), or "weighted": a softmax over all of them with trainable logits
    `layer_weights` (initialised to zeros, i.e. their plain mean). Those logits are the only
    trainable parameters of any encoder here; the backbone is frozen and stays in eval mode.

    Windows are run in groups of equal true length, without padding. Padding would change what
    many of these models compute (group norm over time in the first conv, attention over padded
    frames, normalisation of the waveform), so a window's frames never depend on its batch.
    Typically a batch is many full windows plus a few shorter last windows.
    """

    def __init__(self, config: MusicLLMConfig, backbone: nn.Module | None = None):
        super().__init__()
        if config.audio_feature_extractor is None:
            raise ValueError("config.audio_feature_extractor is not set; builders fill it from hf_audio_settings()")
        if backbone is None:
            from transformers import AutoModel

            backbone = AutoModel.from_config(config.audio_config, trust_remote_code=config.audio_trust_remote_code)
        if getattr(backbone.config, "is_encoder_decoder", False):
            backbone = backbone.get_encoder()  # Whisper: keep the encoder, drop the decoder
        self.backbone = backbone.requires_grad_(False).eval()
        self.config = config
        self.hidden_size = config.audio_hidden_size
        width = getattr(backbone.config, "hidden_size", None) or getattr(backbone.config, "d_model", None)
        if width != config.audio_hidden_size:
            raise ValueError(f"the audio backbone is {width} wide; config.audio_hidden_size says {self.hidden_size}")
        self.feature_extractor = _load_feature_extractor(config.audio_feature_extractor)
        if self.feature_extractor.sampling_rate != config.audio_sample_rate:
            raise ValueError(
                f"feature extractor expects {self.feature_extractor.sampling_rate} Hz audio, "
                f"config.audio_sample_rate is {config.audio_sample_rate}"
            )
        self.frame_layers = config.audio_frame_layers
        self.min_samples = lengths.min_window_samples(self.frame_layers)
        # Whisper-style extractors pad or cut every input to one fixed chunk; never cut silently.
        self.max_samples = getattr(self.feature_extractor, "n_samples", None)
        self.num_hidden_states = _num_hidden_states(backbone.config)
        self.layer = config.audio_layer
        if self.layer == "weighted":
            self.layer_weights = nn.Parameter(torch.zeros(self.num_hidden_states))
        elif not isinstance(self.layer, int) or not -self.num_hidden_states <= self.layer < self.num_hidden_states:
            raise ValueError(
                f"audio_layer must be 'weighted' or an index into the {self.num_hidden_states} hidden states, "
                f"got {self.layer!r}"
            )

    def train(self, mode: bool = True) -> HFAudioEncoder:
        super().train(mode)
        self.backbone.eval()  # frozen: no dropout, no layer drop, no SpecAugment masking
        return self

    def _hidden_states(self, waves: list[np.ndarray]) -> tuple[torch.Tensor, ...]:
        """Equal-length windows (true samples) -> all L hidden states, each (G, T, D)."""
        param = next(self.backbone.parameters())
        inputs = self.feature_extractor(waves, sampling_rate=self.config.audio_sample_rate, return_tensors="pt")
        inputs.pop("attention_mask", None)  # equal lengths: nothing is padded
        values = inputs.get("input_values")
        if values is not None and values.shape[-1] < self.min_samples:
            # pad short windows with silence after the extractor normalised their true samples
            inputs["input_values"] = F.pad(values, (0, self.min_samples - values.shape[-1]))
        inputs = {k: v.to(param.device, param.dtype if v.is_floating_point() else v.dtype) for k, v in inputs.items()}
        with torch.no_grad():
            hidden_states = self.backbone(**inputs, output_hidden_states=True).hidden_states
        if len(hidden_states) != self.num_hidden_states:
            name, count = type(self.backbone).__name__, len(hidden_states)
            raise RuntimeError(f"{name} returned {count} hidden states, expected {self.num_hidden_states}")
        return hidden_states

    def forward(self, audio_values: torch.Tensor, audio_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_lens(audio_values, audio_lens)
        longest = int(audio_lens.max()) if len(audio_lens) else 0
        if self.max_samples is not None and longest > self.max_samples:
            raise ValueError(f"a window of {longest} samples exceeds the encoder's {self.max_samples}-sample chunk")
        frame_lens = _frame_lens(audio_lens, self.frame_layers)
        audio = audio_values.detach().float().cpu().numpy()  # feature extractors work in numpy
        lens = audio_lens.tolist()
        frames = None
        weights = self.layer_weights.softmax(0) if self.layer == "weighted" else None
        for length in sorted(set(lens)):
            group = [i for i, n in enumerate(lens) if n == length]
            count = int(frame_lens[group[0]])
            states = self._hidden_states([audio[i, :length] for i in group])  # L x (G, T, D)
            if states[0].shape[1] < count:
                raise RuntimeError(
                    f"{type(self.backbone).__name__} made {states[0].shape[1]} frames from {length} samples, "
                    f"but config.audio_frame_layers promise {count}"
                )
            if weights is None:
                hidden = states[self.layer][:, :count]  # G, count, D
            else:
                stacked = torch.stack([state[:, :count] for state in states])  # L, G, count, D
                hidden = (weights.to(stacked.dtype)[:, None, None, None] * stacked).sum(0)  # G, count, D
            if frames is None:
                shape = (len(audio_lens), int(frame_lens.max()), hidden.shape[-1])
                frames = hidden.new_zeros(shape)
            frames[group, :count] = hidden  # frames past frame_lens stay zero
        if frames is None:
            frames = audio_values.new_zeros((0, 0, self.hidden_size))
        return frames, frame_lens.to(audio_values.device)


def build_audio_encoder(config: MusicLLMConfig, backbone: nn.Module | None = None) -> nn.Module:
    """The encoder `config.audio_config` describes; `backbone` is a loaded transformers model
    (builders pass `AutoModel.from_pretrained(...)`), else one is built from the config."""
    if isinstance(config.audio_config, MusicFeaturesConfig):
        if backbone is not None:
            raise ValueError("the features encoder has no backbone; got one")
        return FeaturesEncoder(config)
    return HFAudioEncoder(config, backbone)
