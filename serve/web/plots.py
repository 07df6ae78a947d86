"""Figures for the web demo's analysis panel: the waveform with beats and chords, and a chromagram.

    figure = waveform_figure(audio, sample_rate, estimates)   # estimates from musicllm.analysis.analyze
    figure = chroma_figure(audio, sample_rate)

Both return matplotlib `Figure`s (made without pyplot, so no display is needed) sized for a
narrow column.
This module knows nothing about Gradio or the model; it draws what it is given. Long clips are
reduced before drawing (a min/max envelope, a coarse chroma hop) so a 10-minute song plots as
fast as a 10-second one.
"""

from __future__ import annotations

import numpy as np

from musicllm.vocabulary import PITCH_CLASSES

ENVELOPE_BINS = 1500  # about one bin per pixel column of the figure
MAX_CHROMA_FRAMES = 1200  # wider than this and the hop grows: the figure has no more pixels
FIGSIZE = (7.0, 2.2)


def _figure():
    """A figure and its axes, made without pyplot: no global figure registry to leak into and
    no GUI backend, so request threads can draw at the same time."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=100)
    return fig, fig.subplots()


def envelope(audio: np.ndarray, bins: int = ENVELOPE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin start indices, min, max) of `audio` in at most `bins` equal bins: what a waveform
    plot shows, at a fraction of the points."""
    audio = np.asarray(audio, dtype=np.float32)
    step = max(1, int(np.ceil(len(audio) / bins)))
    padded = np.pad(audio, (0, (-len(audio)) % step), mode="edge").reshape(-1, step)
    return np.arange(padded.shape[0]) * step, padded.min(axis=1), padded.max(axis=1)


def waveform_figure(audio: np.ndarray, sample_rate: int, estimates: dict | None = None):
    """The clip's waveform; beats as thin lines and chord names along the top when `estimates`
    (the dict `analyze` returns) has them."""
    starts, low, high = envelope(audio)
    seconds = starts / sample_rate
    fig, ax = _figure()
    ax.fill_between(seconds, low, high, color="#4c72b0", linewidth=0)
    estimates = estimates or {}
    for beat in estimates.get("beats") or []:
        ax.axvline(beat, color="#dd8452", alpha=0.6, linewidth=0.7)
    peak = float(max(np.abs(low).max(initial=0.0), np.abs(high).max(initial=0.0), 1e-3))
    for chord in estimates.get("chords") or []:
        if chord["chord"] != "N" and chord["end"] - chord["start"] > 0.02 * len(audio) / sample_rate:
            ax.text(chord["start"], peak * 1.05, chord["chord"], fontsize=7, va="bottom", clip_on=True)
    ax.set_xlim(0, len(audio) / sample_rate)
    ax.set_ylim(-peak * 1.1, peak * 1.35)  # headroom for the chord names
    ax.set_xlabel("seconds")
    ax.set_yticks([])
    title = "waveform"
    if estimates.get("beats"):
        title += f" · {len(estimates['beats'])} beats"
    ax.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def chromagram(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """(12 x frames chroma, seconds per frame), each frame scaled to its maximum; the hop grows
    with the clip so there are at most MAX_CHROMA_FRAMES frames."""
    import librosa

    n_fft = 4096
    hop = max(512, int(np.ceil(len(audio) / MAX_CHROMA_FRAMES / 512)) * 512)
    audio = np.pad(np.asarray(audio, dtype=np.float32), (0, max(0, n_fft - len(audio))))
    chroma = librosa.feature.chroma_stft(y=audio, sr=sample_rate, n_fft=n_fft, hop_length=hop)
    return chroma, hop / sample_rate


def chroma_figure(audio: np.ndarray, sample_rate: int):
    """Pitch-class energy over time: the harmony the key and chord estimates are read from."""
    chroma, frame_seconds = chromagram(audio, sample_rate)
    fig, ax = _figure()
    ax.imshow(chroma, aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
              extent=(0, chroma.shape[1] * frame_seconds, -0.5, 11.5))
    ax.set_yticks(range(12), PITCH_CLASSES, fontsize=7)
    ax.set_xlabel("seconds")
    ax.set_title("chroma (pitch-class energy)", fontsize=9, loc="left")
    fig.tight_layout()
    return fig

