"""Audio I/O: a file or an upload in, mono float32 at the encoder's sample rate out.

`load_audio` decodes (soundfile), checks, downmixes, resamples (soxr) and pads or trims to the
length `musicllm.lengths.resampled_length` promises; `split_windows` cuts the result the way
`musicllm.lengths.window_lengths` counts. Every unusable input raises `AudioError`, whose message
names the input and the problem, so a server can hand it to the user as it is.

This module knows nothing about encoders, features or tokens, and does no length arithmetic of
its own: `musicllm.lengths` is the single place where lengths are computed.

MP3 (libsndfile >= 1.1 decodes it through mpg123): the frame count in the header is exact when
the file has a Xing/Info (LAME) tag, which every common encoder writes; then encoder delay and
padding are already trimmed. Without the tag it is mpg123's estimate from the file size, and
libsndfile never decodes past it, so such a VBR file may come back shorter than it plays.
Truncation: a cut FLAC or OGG is refused (corrupt, or no samples), but a cut WAV or MP3 decodes
to what is there, since libsndfile does not report it.
"""

from __future__ import annotations

import io
import os

import numpy as np
import soundfile as sf
import soxr

from musicllm.lengths import resampled_length, window_lengths

# Quieter than any 24-bit dither (2**-23 ~ 1.2e-7 is one LSB; 1e-6 is ~8 LSB): only digital silence.
SILENCE_THRESHOLD = 1e-6
# An MP3 header's length may be an estimate; one MPEG frame (1152 samples) is 26 ms at 44.1 kHz.
MP3_SLACK_SECONDS = 0.05
# Names and leading bytes that say "this was meant to be audio": if libsndfile still cannot
# recognise it, the data is damaged rather than in a format we do not read.
AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")
_AUDIO_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"ID3", b"FORM")
_READABLE = "WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF and the other libsndfile formats"
# The most samples (frames x channels) one file may decode to, read from its header first:
# ten minutes of 96 kHz stereo. Decoding costs time in proportion; a 0.3 MB FLAC of 8-channel
# 192 kHz silence would otherwise be gigabytes of work.
MAX_DECODED_SAMPLES = 600 * 96_000 * 2
_BLOCK_FRAMES = 1 << 16  # decoded and downmixed a block at a time: memory stays that of the mono result


class AudioError(ValueError):
    """Any audio that cannot be used. The message names the input (path, or the `name` given for
    bytes, default '<bytes>') and the problem."""


def load_audio(
    source,
    sample_rate: int,
    *,
    max_seconds: float | None = None,
    name: str | None = None,
    allow_silence: bool = True,
    max_samples: int = MAX_DECODED_SAMPLES,
) -> np.ndarray:
    """Decode `source` to a mono float32 1-D array at `sample_rate`.

    source: a str/os.PathLike path, raw bytes/bytearray/memoryview (an upload), or a binary file
    object (read from its start). Its length is exactly
    `resampled_length(decoded_frames, file_rate, sample_rate)`. `max_seconds` and `max_samples`
    (frames x channels) are checked on the header before anything is decoded, so an over-long or
    over-large file is refused cheaply.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    label, readable = _prepare(source, name)
    with _open(readable, label) as snd:
        orig_sr = snd.samplerate
        slack = MP3_SLACK_SECONDS if snd.format == "MP3" else 0.0
        _check_length(snd.frames, orig_sr, max_seconds, slack, label)
        _check_size(snd, max_samples, label)
        mono = _decode_mono(snd, label)
    # Again on what was decoded: a header's count can be an estimate (see the module docstring).
    _check_length(len(mono), orig_sr, max_seconds, slack, label)
    if not allow_silence and np.max(np.abs(mono)) < SILENCE_THRESHOLD:
        raise AudioError(f"{label}: audio is silent (every sample below {SILENCE_THRESHOLD:g})")
    return _resample(mono, orig_sr, sample_rate, label)


def audio_duration(source, *, name: str | None = None, max_samples: int = MAX_DECODED_SAMPLES) -> float:
    """Seconds of audio in `source`, from the header alone (nothing is decoded).

    Raises `AudioError` as `load_audio` does for a missing, empty, unreadable or sample-less input,
    or one that would decode to more than `max_samples`. For an MP3 without a Xing/Info tag this
    is mpg123's estimate.
    """
    label, readable = _prepare(source, name)
    with _open(readable, label) as snd:
        _check_length(snd.frames, snd.samplerate, None, 0.0, label)
        _check_size(snd, max_samples, label)
        return snd.frames / snd.samplerate


def split_windows(audio: np.ndarray, window_samples: int) -> list[np.ndarray]:
    """Cut `audio` into consecutive windows of `window_samples`; the last one is the (shorter)
    rest. The windows are views into `audio`; empty audio gives no windows."""
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D, got shape {audio.shape}")
    if window_samples <= 0:
        raise ValueError(f"window_samples must be positive, got {window_samples}")
    windows, start = [], 0
    for length in window_lengths(len(audio), window_samples):
        windows.append(audio[start : start + length])
        start += length
    return windows


def _prepare(source, name: str | None):
    """(label for messages, something `sf.SoundFile` can open), after the checks libsndfile
    would only report as 'System error' or 'Format not recognised'."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        label = name or path
        if not os.path.exists(path):
            raise AudioError(f"{label}: file not found")
        if os.path.isdir(path):
            raise AudioError(f"{label}: is a directory, not an audio file")
        if os.path.getsize(path) == 0:
            raise AudioError(f"{label}: file is empty (0 bytes)")
        return label, path
    if isinstance(source, (bytes, bytearray, memoryview)):
        label, readable = name or "<bytes>", io.BytesIO(source)
    elif hasattr(source, "read"):
        label = name or str(getattr(source, "name", "<file>"))
        # libsndfile seeks around in the file; a stream that cannot seek is read into memory.
        seekable = getattr(source, "seekable", lambda: False)()
        readable = source if seekable else io.BytesIO(source.read())
    else:
        kind = type(source).__name__
        raise TypeError(f"cannot read audio from a {kind}; pass a path, bytes or a binary file")
    readable.seek(0, io.SEEK_END)
    if readable.tell() == 0:
        raise AudioError(f"{label}: file is empty (0 bytes)")
    readable.seek(0)
    return label, readable


def _open(readable, label: str) -> sf.SoundFile:
    """Open for reading: parses the header only (after a look at the first bytes, for the two
    cases libsndfile reports badly: text, and an "MP3" with no MPEG data, which mpg123 also
    answers with "Note:" lines on the terminal)."""
    head = _head(readable, 512)
    if not head.startswith(_AUDIO_MAGIC) and _is_text(head):
        shown = head[:40].decode("utf-8", errors="replace").splitlines()[0]
        raise AudioError(f"{label}: a text file, not audio (it starts with {shown!r})")
    if label.lower().endswith(".mp3") and not head.startswith(_AUDIO_MAGIC) and not _mpeg_sync(head):
        raise AudioError(f"{label}: not an MP3 file (no ID3 tag and no MPEG audio frame at its start)")
    try:
        return sf.SoundFile(readable)
    except sf.LibsndfileError as err:
        reason = f"libsndfile: {err.error_string}"
        if err.code == 1 and _looks_like_audio(readable, label):  # SF_ERR_UNRECOGNISED_FORMAT
            # Named .wav or starting with RIFF, yet unrecognisable: damaged, not an odd format.
            message = f"corrupt audio, no format matches its name or first bytes ({reason})"
        elif err.code == 1:
            message = f"unknown or unsupported audio format, not one of {_READABLE} ({reason})"
        elif err.code == 2:  # SF_ERR_SYSTEM: the OS refused (permissions, an I/O error)
            message = f"cannot read the file ({reason})"
        else:
            message = f"corrupt audio, the header cannot be decoded ({reason})"
        raise AudioError(f"{label}: {message}") from err
    except (RuntimeError, OSError, TypeError) as err:
        raise AudioError(f"{label}: cannot open audio ({err})") from err


def _head(readable, size: int) -> bytes:
    """The first `size` bytes of a path or a seekable file object (left at its start)."""
    if isinstance(readable, str):
        with open(readable, "rb") as f:
            return f.read(size)
    readable.seek(0)
    head = readable.read(size)
    readable.seek(0)
    return head


def _is_text(head: bytes) -> bool:
    """Whether these bytes read as text (UTF-8, printable, a cut last character allowed)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:
            return False
        text = head[:err.start].decode("utf-8")
    return bool(text) and all(c.isprintable() or c in "\t\r\n\f" for c in text)


def _mpeg_sync(head: bytes) -> bool:
    """An MPEG audio frame header at the start: 11 set sync bits."""
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0


def _looks_like_audio(readable, label: str) -> bool:
    """Whether the name or the first bytes claim a format we read (so a failure means damage)."""
    return label.lower().endswith(AUDIO_SUFFIXES) or _head(readable, 4).startswith(_AUDIO_MAGIC)


def _decode_mono(snd: sf.SoundFile, label: str) -> np.ndarray:
    """All frames, downmixed to mono float32 a block at a time."""
    blocks = []
    try:
        for block in snd.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
            blocks.append(block.mean(axis=1, dtype=np.float32))
    except (RuntimeError, OSError, ValueError) as err:
        raise AudioError(f"{label}: corrupt audio data, decoding failed ({err})") from err
    mono = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    if not np.isfinite(mono).all():  # a NaN or infinity in any channel survives the mean
        raise AudioError(f"{label}: audio contains NaN or infinite samples")
    return mono


def _check_size(snd: sf.SoundFile, max_samples: int, label: str) -> None:
    """Refuse a file whose header promises more decoded samples than `max_samples`."""
    samples = snd.frames * snd.channels
    if samples > max_samples:
        raise AudioError(
            f"{label}: audio would decode to {samples:,} samples ({snd.channels} channels x {snd.samplerate} Hz x "
            f"{snd.frames / snd.samplerate:.1f} s), more than the limit of {max_samples:,} "
            f"(ten minutes of 96 kHz stereo); downmix or resample it first"
        )


def _check_length(frames: int, orig_sr: int, max_seconds: float | None, slack: float, label: str):
    """Refuse audio with no samples, or (when `max_seconds` is set) longer than the limit."""
    if frames <= 0:
        raise AudioError(f"{label}: audio has no samples (zero frames)")
    seconds = frames / orig_sr
    if max_seconds is not None and seconds > max_seconds + slack:
        raise AudioError(
            f"{label}: audio is {seconds:.2f} s long, longer than the limit of {max_seconds:g} s"
        )


def _resample(mono: np.ndarray, orig_sr: int, sample_rate: int, label: str) -> np.ndarray:
    """Resample to `sample_rate`, then pad or trim to exactly `resampled_length`."""
    target = resampled_length(len(mono), orig_sr, sample_rate)
    if orig_sr != sample_rate:
        try:
            mono = soxr.resample(mono, orig_sr, sample_rate, quality="HQ")
        except (RuntimeError, ValueError) as err:
            message = f"cannot resample {orig_sr} Hz -> {sample_rate} Hz ({err})"
            raise AudioError(f"{label}: {message}") from err
    # soxr rounds its output length its own way; lengths.py is the contract, so pad with
    # silence or drop the last sample or two to match it exactly.
    if len(mono) < target:
        mono = np.pad(mono, (0, target - len(mono)))
    return np.ascontiguousarray(mono[:target], dtype=np.float32)


# ---- audio to try the model with, and to send ----------------------------------------------------

def test_clip(seconds: float = 6.0, sample_rate: int = 16000, bpm: float = 120.0) -> np.ndarray:
    """A C-major arpeggio over a click at `bpm`: something with a key and a tempo to ask about."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    beat = 60.0 / bpm
    notes = np.array([261.63, 329.63, 392.0, 523.25])[(t // beat).astype(int) % 4]
    tone = 0.2 * np.sin(2 * np.pi * notes * t) * np.exp(-3 * (t % beat))
    click = 0.5 * np.exp(-80 * (t % beat)) * np.sin(2 * np.pi * 2000 * t)
    return (tone + click).astype(np.float32)


test_clip.__test__ = False  # a helper, not a test, when a test module imports it


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """Mono float audio as 16-bit WAV file bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
