"""MIR estimates for a piece of audio: tempo, beats, key and mode, chords, loudness, timbre.

    musicllm analyze song.mp3                     # a short human-readable summary
    musicllm analyze a.wav b.flac --json          # one JSON object per line and file
    musicllm data annotate data/corpus/manifest.jsonl   # the batch form (data_gen.annotate)

Everything here is an *estimate*, never ground truth: signal processing that is right on clean,
simple material and often a neighbour off on real music (a tempo octave, the relative or
dominant key, a 3/4 read as 4/4). Manifests keep these numbers under `estimates`, apart from the
ground-truth `labels`, and nothing downstream may treat one as the other.

`analyze(audio, sample_rate)` returns a JSON-serialisable dict (null where a value is undefined,
e.g. no beats in silence):
    tempo_bpm            float, from librosa's beat tracker refined by the mean steady beat interval
    beats                [seconds], rounded to the millisecond
    time_signature       "3/4" | "4/4" | "6/8": a ROUGH guess. 6/8 when onsets split the beat in
                         three; otherwise beat-level accents (onset strength, bass onsets, chord
                         changes) folded in groups of 3 vs 4. In 6/8 the beat (and tempo_bpm) is
                         meant to be the dotted quarter, but the tracker often counts quarters or
                         eighths instead, and then says 3/4
    key, mode            tonic spelled with sharps ("C".."B") and "major" | "minor": the
                         Krumhansl-Kessler profile best correlated with the CQT chroma summed over
                         the sounding frames (a duration-weighted pitch-class distribution), plus a
                         bonus for keys whose tonic triad is often among the detected chords
    key_confidence       the chosen key's Pearson correlation, in [-1, 1]; below ~0.6 it is a weak guess
    chords               [{start, end, chord}]: major/minor triad templates matched on
                         beat-synchronous chroma, smoothed by a Viterbi switch penalty, repeats
                         merged; "C", "Am", "F#m", or "N" (no chord)
    loudness_db          integrated loudness in LUFS, ITU-R BS.1770-4 style (K-weighting, 400 ms
                         blocks, -70 LUFS absolute and -10 LU relative gates) on the MONO downmix:
                         for a stereo file with the same signal in both channels, true BS.1770
                         loudness is 3 dB higher
    dynamic_range_db     loudness range in LU, EBU R128 LRA style (3 s short-term loudness, 10th to
                         95th percentile after a -20 LU relative gate); 0 for clips under 3 s
    spectral_centroid_hz, spectral_bandwidth_hz, spectral_flatness, zero_crossing_rate
                         means over the sounding frames (2048-sample frames at 22.05 kHz)
    onset_rate           detected onsets per second of audio
Under MIN_MUSICAL_SECONDS (1 s) only loudness and timbre are estimated: tempo, beats, metre, key,
chords and onset rate are null (a 10 ms click has no key, whatever a profile correlates with).

This module knows nothing about manifests or labels; `data_gen.annotate` runs it over a manifest
and `eval.benchmarks.mir_agreement` scores it against the labels. librosa compiles its numba
kernels on the first call of a process (~20 s on 2 cores); later calls run at ~100x realtime.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import warnings

import numpy as np
import soxr

from musicllm.audio import SILENCE_THRESHOLD, AudioError, load_audio
from musicllm.vocabulary import PITCH_CLASSES

SAMPLE_RATE = 22050
HOP = 512  # 23 ms frames for every feature, so beat frames index all of them
N_FFT = 2048
DEFAULT_MAX_SECONDS = 1800.0  # longer files are refused (memory grows with length)
# Shorter audio gets loudness and timbre only: no tempo, beats, metre, key, chords or onset rate.
MIN_MUSICAL_SECONDS = 1.0


# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

ACTIVE_RANGE_DB = 60.0  # frames quieter than the loudest by more than this are "not sounding"
TONIC_CHORD_WEIGHT = 0.3  # key score = profile correlation + this x the tonic triad's time share
CHORD_MIN_SCORE = 0.6  # cosine below which a beat is "N": a lone note scores 0.58 with its triads
CHORD_SWITCH_PENALTY = 0.08  # Viterbi cost of changing chord: stops one-beat flickers
CHORD_GRID_SECONDS = 0.5  # segment length when there are too few beats to sync on

ESTIMATE_KEYS = [
    "tempo_bpm", "beats", "time_signature", "key", "mode", "key_confidence", "chords",
    "loudness_db", "dynamic_range_db", "spectral_centroid_hz", "spectral_bandwidth_hz",
    "spectral_flatness", "zero_crossing_rate", "onset_rate",
]


def analyze(audio: np.ndarray, sample_rate: int) -> dict:
    """Estimates (see the module docstring) for mono audio at `sample_rate`."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"audio must be a non-empty 1-D array, got shape {audio.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    if sample_rate != SAMPLE_RATE:
        audio = soxr.resample(audio, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    duration = len(audio) / SAMPLE_RATE
    if np.max(np.abs(audio)) < SILENCE_THRESHOLD:
        return _silent(duration)

    import librosa

    # Pad short clips to 3 s so that the lowest CQT octave (C1, downsampled 64x) has room for its
    # FFT; the padding is silence, which the activity gate leaves out (loudness uses `audio`).
    y = np.pad(audio, (0, max(0, 3 * SAMPLE_RATE - len(audio))))
    spectrum = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))
    active = _active_frames(spectrum)
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=spectrum**2, sr=SAMPLE_RATE))
    onset_env = librosa.onset.onset_strength(S=mel_db, sr=SAMPLE_RATE, hop_length=HOP)
    with warnings.catch_warnings():  # tuning estimation on noise: "empty frequency set"
        warnings.simplefilter("ignore", UserWarning)
        chroma = librosa.feature.chroma_cqt(y=y, sr=SAMPLE_RATE, hop_length=HOP, norm=None)
    chroma = chroma[:, : spectrum.shape[1]]

    tempo, beat_frames = _beats(onset_env)
    beat_frames = beat_frames[beat_frames * HOP < len(audio)]  # none in the padding
    beat_chroma, bounds = _segment_chroma(chroma, beat_frames, duration)
    chords = _chords(beat_chroma, bounds)
    key, mode, confidence = _key(chroma[:, active[: chroma.shape[1]]], chords)
    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=SAMPLE_RATE, hop_length=HOP)
    estimates = {
        "tempo_bpm": _round(tempo, 2),
        "beats": [round(float(t), 3) for t in librosa.frames_to_time(beat_frames, sr=SAMPLE_RATE, hop_length=HOP)],
        "time_signature": _time_signature(onset_env, mel_db, chroma, beat_frames),
        "key": key,
        "mode": mode,
        "key_confidence": _round(confidence, 3),
        "chords": chords,
        **_loudness(audio),
        **_timbre(y, spectrum, active),
        "onset_rate": round(len(onsets) / duration, 3),
    }
    if duration < MIN_MUSICAL_SECONDS:  # a beat tracker and a key profile still answer; nothing backs them
        estimates.update(tempo_bpm=None, beats=[], time_signature=None, key=None, mode=None, key_confidence=0.0,
                         chords=[{"start": 0.0, "end": round(duration, 3), "chord": "N"}], onset_rate=None)
    return {name: estimates[name] for name in ESTIMATE_KEYS}


def analyze_file(path, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = DEFAULT_MAX_SECONDS) -> dict:
    """`analyze` on a decoded file. Unusable audio (missing, corrupt, longer than `max_seconds`)
    raises `musicllm.audio.AudioError` naming the file."""
    audio = load_audio(path, sample_rate, max_seconds=max_seconds)
    return analyze(audio, sample_rate)


def _silent(duration: float) -> dict:
    nothing = dict.fromkeys(ESTIMATE_KEYS)
    nothing.update(beats=[], chords=[{"start": 0.0, "end": round(duration, 3), "chord": "N"}],
                   key_confidence=0.0, onset_rate=0.0, dynamic_range_db=0.0)
    return nothing


def _round(value, digits: int):
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _active_frames(spectrum: np.ndarray) -> np.ndarray:
    """Boolean mask of frames within ACTIVE_RANGE_DB of the loudest (and above -100 dBFS)."""
    import librosa

    rms_db = librosa.amplitude_to_db(librosa.feature.rms(S=spectrum, frame_length=N_FFT)[0], ref=1.0, amin=1e-5)
    return rms_db > max(rms_db.max() - ACTIVE_RANGE_DB, -100.0 + 1e-3)


# --- tempo, beats and metre -----------------------------------------------------------------

def _beats(onset_env: np.ndarray) -> tuple[float | None, np.ndarray]:
    """(tempo in BPM, beat frames). librosa's tempo is quantised to whole frame lags (+-2.5% at
    120 BPM); the mean of the steady beat intervals averages that quantisation away."""
    import librosa

    tempo, beats = librosa.beat.beat_track(onset_envelope=onset_env, sr=SAMPLE_RATE, hop_length=HOP)
    if len(beats) < 3:  # two intervals at least, or the "tempo" is one arbitrary gap
        return None, np.asarray(beats, dtype=int)
    intervals = np.diff(beats) * HOP / SAMPLE_RATE
    median = np.median(intervals)
    steady = intervals[np.abs(intervals - median) < 0.25 * median]
    return 60.0 / steady.mean(), np.asarray(beats, dtype=int)


def _time_signature(onset_env, mel_db, chroma, beat_frames) -> str | None:
    """ROUGH: "6/8" when onsets split the beat in three, else "3/4" or "4/4" by whether
    beat-level accents repeat every 3 beats more clearly than every 4.

    Three accent signals per beat (onset strength, bass onset strength, chord change into the
    beat) are folded into 3 and into 4 phases; the grouping whose phases explain more of the
    variance (omega squared, which corrects for the extra phase of 4) wins. Ties and clips with
    3 to 11 beats give "4/4", the common case; fewer beats give None. A 6/8 whose beat tracker
    counts eighths or quarters (not dotted quarters) comes out as 3/4.
    """
    import librosa

    if len(beat_frames) < 12:
        return "4/4" if len(beat_frames) >= 3 else None  # no tempo, no metre
    if _beats_split_in_three(onset_env, beat_frames):
        return "6/8"
    bass_env = librosa.onset.onset_strength(S=mel_db[:12], sr=SAMPLE_RATE, hop_length=HOP)  # < ~300 Hz
    frames = np.minimum(beat_frames, len(onset_env) - 1)
    window = lambda env: np.array([env[max(f - 2, 0) : f + 3].max() for f in frames])
    synced = librosa.util.sync(chroma, beat_frames, aggregate=np.mean)[:, 1 : len(beat_frames) + 1]
    synced = synced / (np.linalg.norm(synced, axis=0, keepdims=True) + 1e-9)
    change = np.r_[0.0, 1.0 - np.sum(synced[:, 1:] * synced[:, :-1], axis=0)]
    features = [window(onset_env), window(bass_env), change[: len(frames)]]
    scores = {m: np.mean([_omega_squared(f, m) for f in features]) for m in (3, 4)}
    return "3/4" if scores[3] > scores[4] else "4/4"


def _beats_split_in_three(onset_env: np.ndarray, beat_frames: np.ndarray) -> bool:
    """Whether onsets land on both thirds of the beat at least twice as strongly as on its
    half (eighth notes under a dotted-quarter beat, not under a quarter), and at a fifth of the
    strength on the beat at least (a subdivision is heard at all). Swing eighths fall on the
    second third only, so a swung 4/4 is not taken for 6/8."""
    peak = np.maximum(onset_env, np.maximum(np.roll(onset_env, 1), np.roll(onset_env, -1)))
    start, period = beat_frames[:-1].astype(float), np.diff(beat_frames).astype(float)
    at = lambda fraction: peak[np.minimum(np.round(start + fraction * period).astype(int), len(peak) - 1)].mean()
    thirds = min(at(1 / 3), at(2 / 3))
    return thirds > 2 * at(1 / 2) and thirds > 0.2 * at(0)


def _omega_squared(values: np.ndarray, groups: int) -> float:
    """Share of the variance of `values` explained by beat phase mod `groups` (one-way ANOVA's
    omega squared: unbiased, so more groups do not win by chance)."""
    phase = np.arange(len(values)) % groups
    grand = values.mean()
    total = np.sum((values - grand) ** 2)
    between = sum(np.sum(phase == p) * (values[phase == p].mean() - grand) ** 2 for p in range(groups))
    within_mean = (total - between) / max(len(values) - groups, 1)
    return float((between - (groups - 1) * within_mean) / (total + within_mean + 1e-12))


# --- key and chords --------------------------------------------------------------------------

def _key(chroma: np.ndarray, chords: list[dict]) -> tuple[str | None, str | None, float | None]:
    """Krumhansl-Kessler: the rotated major/minor profile best correlated with the chroma sum,
    each frame normalised to its maximum first so that every sounding frame weighs the same.
    The tonic triad's share of the detected chords' time is added with TONIC_CHORD_WEIGHT: the
    profiles alone often take a minor key for its relative major (same notes, other centre).
    Returns (tonic, mode, correlation of the chosen key)."""
    if chroma.shape[1] == 0:
        return None, None, None
    profile = (chroma / (chroma.max(axis=0, keepdims=True) + 1e-9)).sum(axis=1)
    if np.ptp(profile) < 1e-9:
        return None, None, None
    share = collections.Counter()
    for chord in chords:
        share[chord["chord"]] += chord["end"] - chord["start"]
    total = sum(share.values()) or 1.0
    best = (-np.inf, None, None, None)
    for mode, template, suffix in (("major", KK_MAJOR, ""), ("minor", KK_MINOR, "m")):
        for tonic in range(12):
            r = np.corrcoef(profile, np.roll(template, tonic))[0, 1]
            score = r + TONIC_CHORD_WEIGHT * share[PITCH_CLASSES[tonic] + suffix] / total
            if score > best[0]:
                best = (score, PITCH_CLASSES[tonic], mode, r)
    return best[1], best[2], best[3]


def _segment_chroma(chroma: np.ndarray, beat_frames: np.ndarray, duration: float):
    """Chroma averaged between consecutive beats (or over a fixed grid when there are fewer
    than 4 beats), with the segments' boundaries in seconds (first 0, last `duration`)."""
    import librosa

    n_frames = chroma.shape[1]
    if len(beat_frames) >= 4:
        cuts = np.unique(np.clip(beat_frames, 1, n_frames - 1))
    else:
        step = max(int(round(CHORD_GRID_SECONDS * SAMPLE_RATE / HOP)), 1)
        cuts = np.arange(step, n_frames, step)
    segments = librosa.util.sync(chroma, cuts, aggregate=np.mean, pad=True)
    times = librosa.frames_to_time(cuts, sr=SAMPLE_RATE, hop_length=HOP)
    bounds = np.r_[0.0, times[times < duration], duration]
    return segments[:, : len(bounds) - 1], bounds


def _chord_templates() -> tuple[np.ndarray, list[str]]:
    templates, names = [], []
    for third, suffix in ((4, ""), (3, "m")):  # major, minor
        for root in range(12):
            template = np.zeros(12)
            template[[root, (root + third) % 12, (root + 7) % 12]] = 1.0
            templates.append(template / np.linalg.norm(template))
            names.append(PITCH_CLASSES[root] + suffix)
    return np.array(templates), names


def _chords(segments: np.ndarray, bounds: np.ndarray) -> list[dict]:
    """Triad template matching per segment, Viterbi-smoothed, consecutive repeats merged."""
    templates, names = _chord_templates()
    names = names + ["N"]
    energy = np.linalg.norm(segments, axis=0)
    unit = segments / (energy + 1e-9)
    scores = np.vstack([templates @ unit, np.full(segments.shape[1], CHORD_MIN_SCORE)]).T  # T, 25
    quiet = energy < 1e-3 * (energy.max() + 1e-12)  # silent stretches are "no chord"
    scores[quiet, :-1] = 0.0
    path = _viterbi(scores, CHORD_SWITCH_PENALTY)
    chords = []
    for i, state in enumerate(path):
        if chords and chords[-1]["chord"] == names[state]:
            chords[-1]["end"] = round(float(bounds[i + 1]), 3)
        else:
            chords.append({"start": round(float(bounds[i]), 3), "end": round(float(bounds[i + 1]), 3),
                           "chord": names[state]})
    return chords


def _viterbi(scores: np.ndarray, penalty: float) -> list[int]:
    """Best state path through `scores` (T, K) where every change of state costs `penalty`."""
    n_steps, n_states = scores.shape
    total = scores[0].copy()
    back = np.zeros((n_steps, n_states), dtype=int)
    stay = np.arange(n_states)
    for t in range(1, n_steps):
        leader = int(total.argmax())
        switch = total[leader] - penalty > total
        back[t] = np.where(switch, leader, stay)
        total = np.where(switch, total[leader] - penalty, total) + scores[t]
    path = [int(total.argmax())]
    for t in range(n_steps - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


# --- loudness and timbre ---------------------------------------------------------------------

def _k_weighting(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770's two K-weighting biquads (high shelf, then high-pass) for any sample rate, by
    the bilinear design libebur128 uses; at 48 kHz it gives the standard's coefficients."""
    k = np.tan(np.pi * 1681.974450955533 / sample_rate)
    q, vh = 0.7071752369554196, 10 ** (3.999843853973347 / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = (np.array([vh + vb * k / q + k * k, 2 * (k * k - vh), vh - vb * k / q + k * k]) / a0,
             np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]))
    k, q = np.tan(np.pi * 38.13547087602444 / sample_rate), 0.5003270373238773
    a0 = 1 + k / q + k * k
    highpass = (np.array([1.0, -2.0, 1.0]), np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]))
    return [shelf, highpass]


def _block_loudness(power_sum: np.ndarray, block: int, step: int) -> np.ndarray:
    """Loudness (LUFS) of blocks of `block` samples every `step`, from a cumulative power sum."""
    starts = np.arange(0, len(power_sum) - block, step)
    if len(starts) == 0:  # shorter than one block: the whole clip is the block
        starts, block = np.array([0]), len(power_sum) - 1
    mean_power = (power_sum[starts + block] - power_sum[starts]) / block
    return -0.691 + 10 * np.log10(np.maximum(mean_power, 1e-20))


def _loudness(audio: np.ndarray) -> dict:
    """Integrated loudness (BS.1770-4 gating) and loudness range (EBU R128 LRA style)."""
    from scipy.signal import lfilter  # scipy ships with librosa

    weighted = audio.astype(np.float64)
    for b, a in _k_weighting(SAMPLE_RATE):
        weighted = lfilter(b, a, weighted)
    power_sum = np.r_[0.0, np.cumsum(weighted**2)]
    momentary = _block_loudness(power_sum, int(0.4 * SAMPLE_RATE), int(0.1 * SAMPLE_RATE))
    gated = momentary[momentary > -70.0]
    if gated.size == 0:
        return {"loudness_db": None, "dynamic_range_db": 0.0}
    mean_db = lambda values: 10 * np.log10(np.mean(10 ** ((values + 0.691) / 10))) - 0.691
    integrated = mean_db(gated[gated > mean_db(gated) - 10.0])
    short_term = _block_loudness(power_sum, 3 * SAMPLE_RATE, int(0.1 * SAMPLE_RATE))
    short_term = short_term[short_term > -70.0]
    spread = 0.0
    if len(short_term) > 1:
        short_term = short_term[short_term > mean_db(short_term) - 20.0]
        spread = np.percentile(short_term, 95) - np.percentile(short_term, 10)
    return {"loudness_db": _round(integrated, 2), "dynamic_range_db": _round(spread, 2)}


def _timbre(y: np.ndarray, spectrum: np.ndarray, active: np.ndarray) -> dict:
    """Spectral shape and zero-crossing rate, averaged over the sounding frames."""
    import librosa

    centroid = librosa.feature.spectral_centroid(S=spectrum, sr=SAMPLE_RATE)[0]
    bandwidth = librosa.feature.spectral_bandwidth(S=spectrum, sr=SAMPLE_RATE, centroid=centroid[None])[0]
    flatness = librosa.feature.spectral_flatness(S=spectrum)[0]
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP)[0]
    mean = lambda values: float(values[active[: len(values)]].mean())
    return {
        "spectral_centroid_hz": round(mean(centroid), 1),
        "spectral_bandwidth_hz": round(mean(bandwidth), 1),
        "spectral_flatness": round(mean(flatness), 5),
        "zero_crossing_rate": round(mean(zcr), 5),
    }


# --- command line ----------------------------------------------------------------------------

def summary(path: str, duration: float, estimates: dict) -> str:
    """A few human-readable lines about one file's estimates."""
    e = estimates
    lines = [f"{path}  ({duration:.1f} s)"]
    if e["spectral_centroid_hz"] is None:
        return "\n".join(lines + ["  silent: nothing to estimate"])
    tempo = f"{e['tempo_bpm']:.1f} BPM, {len(e['beats'])} beats" if e["tempo_bpm"] else "no beat found"
    key = f"{e['key']} {e['mode']} (confidence {e['key_confidence']:.2f})" if e["key"] else "unknown"
    changes = [c["chord"] for c in e["chords"]]
    shown = " ".join(changes[:16]) + (" ..." if len(changes) > 16 else "")
    loudness = f"{e['loudness_db']:.1f} LUFS" if e["loudness_db"] is not None else "below -70 LUFS"
    lines += [
        f"  tempo      {tempo}, time signature {e['time_signature'] or '?'} (rough)",
        f"  key        {key}",
        f"  chords     {shown}  ({len(changes)} segments)",
        f"  loudness   {loudness}, loudness range {e['dynamic_range_db']:.1f} LU",
        f"  timbre     centroid {e['spectral_centroid_hz']:.0f} Hz, bandwidth {e['spectral_bandwidth_hz']:.0f} Hz, "
        f"flatness {e['spectral_flatness']:.3f}, zero crossings {e['zero_crossing_rate']:.3f}"
        + (f", {e['onset_rate']:.2f} onsets/s" if e["onset_rate"] is not None else ""),
    ]
    if duration < MIN_MUSICAL_SECONDS:
        lines.insert(1, f"  too short for tempo, key, metre and chords (under {MIN_MUSICAL_SECONDS:g} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="musicllm analyze",
        description="MIR estimates (tempo, beats, key, chords, loudness, timbre) for audio files. "
        "These are estimates, not ground truth. The first file takes ~20 s longer while librosa compiles.",
        epilog="Exit status 1 if any file could not be analysed; the others are still analysed.",
    )
    parser.add_argument("files", nargs="+", help="audio files (WAV, FLAC, OGG, MP3, ...)")
    parser.add_argument("--json", action="store_true",
                        help='one JSON object per line and file: {"file", "duration", "estimates"} '
                        'or {"file", "error"}')
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                        help=f"refuse files longer than this (default {DEFAULT_MAX_SECONDS:g} s)")
    args = parser.parse_args(argv)

    status = 0
    for path in args.files:
        try:
            audio = load_audio(path, SAMPLE_RATE, max_seconds=args.max_seconds)
            estimates = analyze(audio, SAMPLE_RATE)
        except AudioError as err:
            print(f"error: {err}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": path, "error": str(err)}), flush=True)
            status = 1
            continue
        duration = round(len(audio) / SAMPLE_RATE, 3)
        if args.json:
            print(json.dumps({"file": path, "duration": duration, "estimates": estimates}), flush=True)
        else:
            print(summary(path, duration, estimates), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
