"""Production variety: a seeded chain of studio effects per clip, drawn as data, applied with pedalboard.

    chain = draw(rng("production", seed, variation))   # a list of plain dicts: the manifest keeps it
    audio = apply(audio, chain, sample_rate)           # then render.normalize, as for any clip

Uploaded music is mixed, mastered and recorded in rooms; a synthesizer's dry output is none of
that. Each clip gets a chain drawn from these steps (each present with its probability, in this
order, the way sound travels from a room through a desk to a file):

    reverb       a room: size, damping, wet and dry levels, stereo width          p 0.6
    highpass     rumble filter, 30-180 Hz                                           p 0.35
    low_shelf    bass boost or cut, +-6 dB below 100-300 Hz                         p 0.45
    peak         a bell boost or cut, +-5 dB at 300-4000 Hz                         p 0.45
    high_shelf   brightness or dullness, +-6 dB above 2.5-6 kHz                     p 0.45
    lowpass      a dull recording, 3-9 kHz                                          p 0.25
    compressor   threshold 4-18 dB under the peak, ratio 1.5-6, attack and release  p 0.45
    noise        white, hiss (highpassed) or rumble (lowpassed) noise at 20-45 dB SNR  p 0.4
    gain         -6..+3 dB                                                          always

The effects are pedalboard's (Spotify's JUCE-based library: filters, compressor, reverb, gain);
the noise is seeded numpy noise, shaped by pedalboard's filters and scaled to the drawn SNR
against the clip's RMS. The chain works at a reference level (the clip scaled to a -6 dBFS peak,
scaled back afterwards) so that a threshold or an SNR means the same on soft and loud clips;
only `gain` and the compressor change the level, and render.normalize's ceiling still caps every
peak after it. Codec effects (MP3) were left out: pedalboard's encoder costs about 85 ms per
16-s clip, twice the render itself.

This module knows nothing about MIDI, soundfonts or labels.
"""

from __future__ import annotations

import numpy as np

REFERENCE_PEAK = 10 ** (-6 / 20)   # the level effects see: a -6 dBFS peak


def check() -> str | None:
    """Why production cannot run here (pedalboard missing), or None."""
    try:
        import pedalboard  # noqa: F401
    except ImportError as err:
        return f"--production needs pedalboard ({err}): pip install 'musicllm[data]' or pip install pedalboard"
    return None


def _u(r, low: float, high: float, digits: int = 1) -> float:
    return round(float(r.uniform(low, high)), digits)


def draw(r: np.random.Generator) -> list[dict]:
    """A chain: one dict per step, {"effect": name, parameter: value, ...}, rounded for the manifest."""
    chain = []
    if r.random() < 0.6:
        chain.append({"effect": "reverb", "room_size": _u(r, 0.1, 0.9, 2), "damping": _u(r, 0.2, 0.8, 2),
                      "wet_level": _u(r, 0.05, 0.35, 2), "dry_level": _u(r, 0.65, 1.0, 2),
                      "width": _u(r, 0.5, 1.0, 2)})
    if r.random() < 0.35:
        chain.append({"effect": "highpass", "cutoff_hz": _u(r, 30, 180, 0)})
    if r.random() < 0.45:
        chain.append({"effect": "low_shelf", "cutoff_hz": _u(r, 100, 300, 0), "gain_db": _u(r, -6, 6)})
    if r.random() < 0.45:
        chain.append({"effect": "peak", "cutoff_hz": _u(r, 300, 4000, 0), "gain_db": _u(r, -5, 5),
                      "q": _u(r, 0.5, 2.0, 2)})
    if r.random() < 0.45:
        chain.append({"effect": "high_shelf", "cutoff_hz": _u(r, 2500, 6000, 0), "gain_db": _u(r, -6, 6)})
    if r.random() < 0.25:
        chain.append({"effect": "lowpass", "cutoff_hz": _u(r, 3000, 9000, 0)})
    if r.random() < 0.45:
        chain.append({"effect": "compressor", "threshold_below_peak_db": _u(r, 4, 18), "ratio": _u(r, 1.5, 6),
                      "attack_ms": _u(r, 1, 30), "release_ms": _u(r, 50, 300, 0)})
    if r.random() < 0.4:
        chain.append({"effect": "noise", "color": ["white", "hiss", "rumble"][int(r.integers(3))],
                      "snr_db": _u(r, 20, 45), "seed": int(r.integers(2**31))})
    chain.append({"effect": "gain", "gain_db": _u(r, -6, 3)})
    return chain


def apply(audio: np.ndarray, chain: list[dict], sample_rate: int) -> np.ndarray:
    """`audio` (mono float32) through `chain`; the same audio and chain give the same samples."""
    import pedalboard as pb

    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0 or not chain:
        return audio.astype(np.float32)
    scale = REFERENCE_PEAK / peak
    x = (audio * scale).astype(np.float32)
    for step in chain:
        kind = step["effect"]
        if kind == "noise":
            x = x + _noise(x, step, sample_rate)
            continue
        if kind == "gain":  # after the chain: the level of the clip, not the level effects see
            continue
        x = _plugin(pb, step, sample_rate)(x, sample_rate)
    gain = next((10 ** (s["gain_db"] / 20) for s in chain if s["effect"] == "gain"), 1.0)
    return (x * (gain / scale)).astype(np.float32)


def _plugin(pb, step: dict, sample_rate: int):
    kind = step["effect"]
    if kind == "reverb":
        return pb.Reverb(room_size=step["room_size"], damping=step["damping"], wet_level=step["wet_level"],
                         dry_level=step["dry_level"], width=step["width"])
    if kind == "highpass":
        return pb.HighpassFilter(step["cutoff_hz"])
    if kind == "lowpass":
        return pb.LowpassFilter(min(step["cutoff_hz"], 0.45 * sample_rate))
    if kind == "low_shelf":
        return pb.LowShelfFilter(step["cutoff_hz"], step["gain_db"])
    if kind == "high_shelf":
        return pb.HighShelfFilter(min(step["cutoff_hz"], 0.45 * sample_rate), step["gain_db"])
    if kind == "peak":
        return pb.PeakFilter(step["cutoff_hz"], step["gain_db"], step["q"])
    if kind == "compressor":
        threshold = 20 * np.log10(REFERENCE_PEAK) - step["threshold_below_peak_db"]
        return pb.Compressor(float(threshold), step["ratio"], step["attack_ms"], step["release_ms"])
    raise ValueError(f"unknown production effect {kind!r}")


def _noise(x: np.ndarray, step: dict, sample_rate: int) -> np.ndarray:
    """Noise of the step's colour at the step's SNR against the RMS of `x`."""
    import pedalboard as pb

    noise = np.random.default_rng(step["seed"]).standard_normal(len(x)).astype(np.float32)
    if step["color"] == "hiss":
        noise = pb.HighpassFilter(3000.0)(noise, sample_rate)
    elif step["color"] == "rumble":
        noise = pb.LowpassFilter(400.0)(noise, sample_rate)
    signal_rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    noise_rms = float(np.sqrt(np.mean(noise.astype(np.float64) ** 2))) or 1.0
    return (noise * (signal_rms / noise_rms / 10 ** (step["snr_db"] / 20))).astype(np.float32)
