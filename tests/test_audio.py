"""Tests for musicllm.audio: every format round-trips to the exact length lengths.py promises,
and every unusable input is refused with an AudioError that names it and its problem."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from musicllm.audio import AudioError, audio_duration, load_audio, split_windows
from musicllm.lengths import resampled_length, window_lengths

from eval.benchmarks.gateway import flac_claiming

SR = 44100
TARGET_SR = 16000


def sine(seconds: float = 1.0, sr: int = SR, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(audio: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / sr)[np.argmax(spectrum)])


def write(tmp_path, filename: str, audio: np.ndarray, sr: int = SR, **kwargs):
    path = tmp_path / filename
    sf.write(path, audio, sr, **kwargs)
    return path


# (file name, soundfile subtype); the format follows from the extension.
FORMATS = [
    ("int16.wav", "PCM_16"),
    ("int24.wav", "PCM_24"),
    ("int32.wav", "PCM_32"),
    ("float.wav", "FLOAT"),
    ("sine.flac", "PCM_16"),
    ("sine.ogg", "VORBIS"),
    ("sine.mp3", "MPEG_LAYER_III"),
]


@pytest.mark.parametrize("filename,subtype", FORMATS)
def test_each_format_round_trips(tmp_path, filename, subtype):
    path = write(tmp_path, filename, sine(), subtype=subtype)
    # Lossy codecs may add delay or padding, so the contract is on the decoded frame count (for
    # these files libsndfile trims both: OGG's granule positions, MP3's LAME/Info tag).
    decoded_frames = len(sf.read(path, dtype="float32")[0])
    out = load_audio(path, TARGET_SR)
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == resampled_length(decoded_frames, SR, TARGET_SR)
    assert abs(peak_hz(out, TARGET_SR) - 440.0) < 3.0
    assert 0.3 < np.max(np.abs(out)) < 0.7


def test_lossless_formats_keep_the_header_frame_count(tmp_path):
    for filename, subtype in FORMATS[:5]:
        path = write(tmp_path, filename, sine(), subtype=subtype)
        assert len(load_audio(path, TARGET_SR)) == resampled_length(SR, SR, TARGET_SR) == 16000


def test_mp3_without_info_tag_length_follows_decoded_frames(tmp_path):
    # Drop the first MPEG frame (the Xing/Info tag libsndfile's LAME writes): the header length is
    # then mpg123's estimate, and load_audio's guarantee is on what actually decodes.
    tagged = write(tmp_path, "tagged.mp3", sine(), subtype="MPEG_LAYER_III").read_bytes()
    header = int.from_bytes(tagged[:4], "big")
    kbps = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320][(header >> 12) & 15]
    frame_bytes = 144 * kbps * 1000 // SR + ((header >> 9) & 1)
    assert b"Xing" in tagged[:frame_bytes] or b"Info" in tagged[:frame_bytes]
    path = tmp_path / "untagged.mp3"
    path.write_bytes(tagged[frame_bytes:])
    decoded_frames = len(sf.read(path, dtype="float32")[0])
    assert len(load_audio(path, TARGET_SR)) == resampled_length(decoded_frames, SR, TARGET_SR)


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = sine(amp=0.5), sine(freq=1000.0, amp=0.25)
    path = write(tmp_path, "stereo.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    out = load_audio(path, SR)
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-7)


def test_same_rate_is_returned_unchanged(tmp_path):
    audio = sine(seconds=0.5)
    out = load_audio(write(tmp_path, "same.wav", audio, subtype="FLOAT"), SR)
    np.testing.assert_array_equal(out, audio)


@pytest.mark.parametrize("num_samples", [1, 2, 3, 441, 44099, 44100, 44101, 100003])
def test_resampling_gives_the_exact_length(tmp_path, num_samples):
    audio = np.random.default_rng(num_samples).uniform(-0.5, 0.5, num_samples).astype(np.float32)
    path = write(tmp_path, "noise.wav", audio, subtype="FLOAT")
    for target in (16000, 22050, 24000, 48000):
        assert len(load_audio(path, target)) == resampled_length(num_samples, SR, target)


def test_bytes_and_file_objects_equal_the_path(tmp_path):
    path = write(tmp_path, "sine.flac", sine())
    expected = load_audio(path, TARGET_SR)
    data = path.read_bytes()
    for source in (data, bytearray(data), memoryview(data), io.BytesIO(data)):
        np.testing.assert_array_equal(load_audio(source, TARGET_SR), expected)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_audio(f, TARGET_SR), expected)


def test_non_seekable_stream_is_read(tmp_path):
    path = write(tmp_path, "sine.wav", sine())

    class Stream(io.RawIOBase):  # an HTTP body: read() only
        def __init__(self, data):
            self._inner = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            return self._inner.readinto(buffer)

    out = load_audio(Stream(path.read_bytes()), TARGET_SR, name="upload.wav")
    np.testing.assert_array_equal(out, load_audio(path, TARGET_SR))


def test_audio_duration_reads_the_header(tmp_path):
    assert audio_duration(write(tmp_path, "a.wav", sine(seconds=2.5))) == pytest.approx(2.5)
    data = write(tmp_path, "a.mp3", sine(seconds=1.0), subtype="MPEG_LAYER_III").read_bytes()
    assert audio_duration(data) == pytest.approx(1.0, abs=0.03)
    with pytest.raises(AudioError, match="song.wav: file not found"):
        audio_duration(tmp_path / "song.wav")


# ---------------------------------------------------------------- failures


def expect_error(source, *keywords, name_in_message: str, **kwargs):
    with pytest.raises(AudioError) as info:
        load_audio(source, TARGET_SR, **kwargs)
    message = str(info.value)
    assert name_in_message in message
    for keyword in keywords:
        assert keyword in message, message
    return info.value


def test_missing_file(tmp_path):
    expect_error(tmp_path / "missing.wav", "not found", name_in_message="missing.wav")


def test_directory(tmp_path):
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    expect_error(folder, "directory", name_in_message="folder.wav")


def test_empty_file_and_empty_bytes(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    expect_error(path, "empty", name_in_message="empty.wav")
    expect_error(b"", "empty", name_in_message="<bytes>")
    expect_error(io.BytesIO(), "empty", name_in_message="clip.ogg", name="clip.ogg")


def test_unknown_format(tmp_path):
    path = tmp_path / "notes.bin"
    path.write_bytes(bytes(range(256)) * 8)
    err = expect_error(path, "unsupported", "format", name_in_message="notes.bin")
    assert isinstance(err.__cause__, sf.LibsndfileError)


def test_a_text_file_is_called_a_text_file_whatever_its_name(tmp_path, capfd):
    for name in ("notes.txt", "song.mp3", "song.wav"):
        path = tmp_path / name
        path.write_text("this is not audio\n" * 50)
        expect_error(path, "a text file, not audio", "'this is not audio'", name_in_message=name)
        with pytest.raises(AudioError, match="a text file"):
            audio_duration(path)
    expect_error(b"plain text, no audio" * 20, "a text file", name_in_message="<bytes>")
    # libsndfile said "File does not exist or is not a regular file (possibly a pipe?)" for the
    # .mp3, and mpg123 printed "Note: Illegal Audio-MPEG-Header" lines to the terminal.
    assert "Note:" not in "".join(capfd.readouterr())


def random_bytes(n: int = 4096) -> bytes:
    data = np.random.default_rng(0).bytes(n)
    assert not data.startswith(b"\xff")  # not accidentally an MPEG frame sync
    return data


def test_random_bytes_with_an_audio_name_are_corrupt(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(random_bytes())
    expect_error(path, "corrupt", name_in_message="noise.wav")
    expect_error(random_bytes(), "not an MP3 file", name_in_message="upload.mp3", name="upload.mp3")


def test_truncated_header_is_corrupt(tmp_path):
    whole = write(tmp_path, "whole.wav", sine()).read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(whole[:30])
    expect_error(path, "corrupt", name_in_message="cut.wav")
    # RIFF magic says it is audio even under a name that does not.
    expect_error(whole[:30], "corrupt", name_in_message="<bytes>")


def test_garbled_data_fails_to_decode(tmp_path):
    whole = write(tmp_path, "whole.flac", sine()).read_bytes()
    path = tmp_path / "garbled.flac"
    path.write_bytes(whole[:2000] + random_bytes())
    err = expect_error(path, "corrupt", "decod", name_in_message="garbled.flac")
    assert isinstance(err.__cause__, sf.LibsndfileError)


def test_zero_frames(tmp_path):
    path = write(tmp_path, "nothing.wav", np.zeros(0, dtype=np.float32))
    expect_error(path, "no samples", name_in_message="nothing.wav")
    with pytest.raises(AudioError, match="no samples"):
        audio_duration(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_samples(tmp_path, bad):
    audio = sine()
    audio[100] = bad
    path = write(tmp_path, "bad.wav", audio, subtype="FLOAT")
    expect_error(path, "NaN", name_in_message="bad.wav")


def test_longer_than_max_seconds(tmp_path):
    path = write(tmp_path, "long.wav", sine(seconds=3.0))
    expect_error(path, "longer than", "3.00 s", "2 s", name_in_message="long.wav", max_seconds=2)
    assert len(load_audio(path, TARGET_SR, max_seconds=3.0)) == 48000


def test_max_seconds_is_checked_before_decoding(tmp_path, monkeypatch):
    path = write(tmp_path, "long.flac", sine(seconds=3.0))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a file the header already refused")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    expect_error(path, "longer than", name_in_message="long.flac", max_seconds=1.0)


def test_a_file_that_would_decode_to_gigabytes_is_refused_from_its_header(tmp_path, monkeypatch):
    # The gateway's case: 4 channels at 96 kHz for 590 s of silence (0.3 MB as FLAC) was decoded
    # whole: +1.1 GB and 7 s per request. 8 channels at 192 kHz would be ~4 GB.
    path = tmp_path / "wide.flac"
    path.write_bytes(flac_claiming(channels=4, rate=96000, seconds=590))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a file the header already refused")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    for check in (lambda: load_audio(path, TARGET_SR), lambda: audio_duration(path)):
        with pytest.raises(AudioError) as err:
            check()
        message = str(err.value)
        assert "wide.flac" in message and "226,560,000 samples" in message
        assert "4 channels x 96000 Hz x 590.0 s" in message and "115,200,000" in message
    monkeypatch.undo()
    # Ten minutes of 96 kHz stereo is the limit; within it a file is read (here its 0.1 s of data).
    assert audio_duration(flac_claiming(channels=2, rate=96000, seconds=600), name="ok.flac") == 600


def test_decoding_downmixes_block_by_block_to_the_same_mono(tmp_path):
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.5, 0.5, size=(200_000, 3)).astype(np.float32)  # more than one block
    path = tmp_path / "three.wav"
    sf.write(path, stereo, TARGET_SR, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, TARGET_SR), stereo.mean(axis=1, dtype=np.float32))
    with pytest.raises(AudioError, match="600,000 samples"):
        load_audio(path, TARGET_SR, max_samples=599_999)


def test_mp3_max_seconds_allows_header_slack(tmp_path):
    path = write(tmp_path, "one.mp3", sine(seconds=1.0), subtype="MPEG_LAYER_III")
    assert len(load_audio(path, TARGET_SR, max_seconds=0.99)) > 0
    expect_error(path, "longer than", name_in_message="one.mp3", max_seconds=0.9)


def test_silence_is_refused_only_when_asked(tmp_path):
    path = write(tmp_path, "quiet.wav", np.full(SR, 1e-7, dtype=np.float32), subtype="FLOAT")
    assert np.all(load_audio(path, TARGET_SR) < 1e-6)
    expect_error(path, "silent", name_in_message="quiet.wav", allow_silence=False)
    # Opposite channels cancel in the mono mix: that is silence too.
    stereo = np.stack([sine(), -sine()], axis=1)
    path = write(tmp_path, "cancel.wav", stereo, subtype="FLOAT")
    expect_error(path, "silent", name_in_message="cancel.wav", allow_silence=False)


def test_bad_arguments(tmp_path):
    path = write(tmp_path, "a.wav", sine())
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(path, 0)
    with pytest.raises(ValueError, match="max_seconds"):
        load_audio(path, TARGET_SR, max_seconds=0)
    with pytest.raises(TypeError):
        load_audio(12345, TARGET_SR)


# ---------------------------------------------------------------- windows


@pytest.mark.parametrize("num_samples", [0, 1, 999, 1000, 1001, 3500])
def test_split_windows(num_samples):
    audio = np.arange(num_samples, dtype=np.float32)
    windows = split_windows(audio, 1000)
    assert [len(w) for w in windows] == window_lengths(num_samples, 1000)
    joined = np.concatenate(windows) if windows else np.zeros(0, dtype=np.float32)
    np.testing.assert_array_equal(joined, audio)


def test_split_windows_rejects_bad_input():
    with pytest.raises(ValueError):
        split_windows(np.zeros((2, 10), dtype=np.float32), 4)
    with pytest.raises(ValueError):
        split_windows(np.zeros(10, dtype=np.float32), 0)
