"""Tests for the MIR estimates (musicllm.analysis), the `musicllm analyze` command, the batch
annotator (data_gen.annotate) and the agreement benchmark, on audio synthesised here with known
tempo, key and chords. librosa compiles on its first call, so clips are analysed once per module."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import soundfile as sf

from musicllm.analysis import ESTIMATE_KEYS, SAMPLE_RATE, analyze, analyze_file
from musicllm.vocabulary import PITCH_CLASSES

SR = SAMPLE_RATE


def midi_hz(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def tone(freq: float, seconds: float, amp: float = 0.12) -> np.ndarray:
    """A note with four harmonics (1, 1/2, 1/3, 1/4) and short fades."""
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 5))
    fade = np.minimum(1.0, np.minimum(t / 0.01, (seconds - t) / 0.05))
    return (amp * wave * fade).astype(np.float32)


def triads(chords: list[list[int]], seconds: float) -> np.ndarray:
    return np.concatenate([sum(tone(midi_hz(n), seconds) for n in notes) for notes in chords])


def kicks(bpm: float, seconds: float, beats_per_bar: int = 4) -> np.ndarray:
    """A kick on every bar's first beat and a softer, higher thump on the others."""
    out = np.zeros(int(seconds * SR), dtype=np.float32)
    t = np.arange(int(0.12 * SR)) / SR
    for i, at in enumerate(np.arange(0, seconds, 60 / bpm)):
        freq, amp = (60, 0.8) if i % beats_per_bar == 0 else (180, 0.35)
        hit = amp * np.sin(2 * np.pi * freq * t) * np.exp(-t / 0.03)
        start = int(at * SR)
        n = min(len(hit), len(out) - start)
        out[start : start + n] += hit[:n]
    return out


C_MAJOR = [[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]]  # C F G C
A_MINOR = [[57, 60, 64], [62, 65, 69], [64, 68, 71], [57, 60, 64]]  # Am Dm E Am
F_SHARP_MAJOR = [[66, 70, 73], [71, 75, 78], [73, 77, 80], [66, 70, 73]]  # F# B C# F#


def song(progression, bpm: float, beats_per_bar: int, bars: int) -> np.ndarray:
    """Kicks plus one chord per bar, cycling through `progression`."""
    bar = beats_per_bar * 60 / bpm
    harmony = triads([progression[i % len(progression)] for i in range(bars)], bar)
    return harmony + kicks(bpm, len(harmony) / SR, beats_per_bar)


CLIPS = {
    "kick120": lambda: kicks(120, 10),
    "kick90": lambda: kicks(90, 10),
    "c_major": lambda: triads(C_MAJOR, 2.0),
    "a_minor": lambda: triads(A_MINOR, 2.0),
    "f_sharp_major": lambda: triads(F_SHARP_MAJOR, 2.0),
    "pop": lambda: song(C_MAJOR, 120, 4, 6),  # 12 s, C major, 4/4
    "waltz": lambda: song(A_MINOR, 96, 3, 8),  # 15 s, A minor, 3/4
}
LABELS = {
    "pop": {"tempo_bpm": 120, "key": "C", "mode": "major", "time_signature": "4/4", "genre": "pop",
            "chords": [{"start": 2.0 * i, "end": 2.0 * i + 2, "chord": c} for i, c in enumerate("CFGCCF")]},
    "waltz": {"tempo_bpm": 96, "key": "A", "mode": "minor", "time_signature": "3/4", "genre": "waltz"},
}


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    for name, make in CLIPS.items():
        sf.write(folder / f"{name}.wav", make(), SR)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    return folder


@pytest.fixture(scope="module")
def estimates(clip_dir):
    """Every clip analysed once, through analyze_file (decode + analysis)."""
    return {name: analyze_file(clip_dir / f"{name}.wav") for name in CLIPS}


@pytest.mark.parametrize("name,bpm", [("kick120", 120), ("kick90", 90)])
def test_tempo_and_beats(estimates, name, bpm):
    e = estimates[name]
    assert abs(e["tempo_bpm"] - bpm) <= 0.04 * bpm
    spacing = np.diff(e["beats"])
    assert len(e["beats"]) >= 10
    assert abs(np.median(spacing) - 60 / bpm) <= 0.04 * 60 / bpm
    assert all(round(t, 3) == t for t in e["beats"])


@pytest.mark.parametrize("name,key,mode", [("c_major", "C", "major"), ("a_minor", "A", "minor"),
                                           ("f_sharp_major", "F#", "major")])
def test_key_and_mode(estimates, name, key, mode):
    e = estimates[name]
    assert (e["key"], e["mode"]) == (key, mode)
    assert e["key"] in PITCH_CLASSES and 0.5 < e["key_confidence"] <= 1.0


def test_chord_sequence_in_order(estimates):
    chords = [c for c in estimates["c_major"]["chords"] if c["chord"] != "N"]
    assert [c["chord"] for c in chords] == ["C", "F", "G", "C"]
    # changes land near the 2 s boundaries; segments tile the clip
    assert [round(c["start"]) for c in chords[1:]] == [2, 4, 6]
    assert chords[-1]["end"] == pytest.approx(8.0, abs=0.01)
    assert [c["chord"] for c in estimates["a_minor"]["chords"] if c["chord"] != "N"] == ["Am", "Dm", "E", "Am"]


def test_time_signature_rough_guess(estimates):
    assert estimates["pop"]["time_signature"] == "4/4"
    assert estimates["waltz"]["time_signature"] == "3/4"


def test_schema_is_complete_and_strict_json(estimates):
    for e in estimates.values():
        assert list(e) == ESTIMATE_KEYS
        json.dumps(e, allow_nan=False)
    silent = analyze(np.zeros(SR, dtype=np.float32), SR)
    assert list(silent) == ESTIMATE_KEYS and silent["tempo_bpm"] is None and silent["chords"][0]["chord"] == "N"
    json.dumps(silent, allow_nan=False)


def test_k_weighting_has_the_standards_coefficients_at_48k():
    from musicllm.analysis import _k_weighting

    (shelf_b, shelf_a), (high_b, high_a) = _k_weighting(48000)
    np.testing.assert_allclose(shelf_b, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-9)
    np.testing.assert_allclose(shelf_a, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-9)
    np.testing.assert_allclose(high_b, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(high_a, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-9)


def test_loudness_follows_gain_and_matches_bs1770():
    music = song(C_MAJOR, 120, 4, 2)
    loud, quiet = analyze(music, SR), analyze(music * 10 ** (-12 / 20), SR)
    assert loud["loudness_db"] - quiet["loudness_db"] == pytest.approx(12.0, abs=0.3)
    # BS.1770's calibration: a full-scale 1 kHz sine in one channel reads -3.01 LUFS; at 44.1 kHz
    # the input is resampled first.
    t = np.arange(3 * 44100) / 44100
    assert analyze(np.sin(2 * np.pi * 1000 * t).astype(np.float32), 44100)["loudness_db"] == pytest.approx(-3.01, abs=0.1)


def test_a_clip_too_short_for_music_gets_loudness_and_timbre_only():
    """`analyze` on a 10 ms clip reported a key and "100.23 onsets/s"."""
    from musicllm.analysis import summary

    t = np.arange(int(0.01 * SR)) / SR
    blip = analyze((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    assert blip["key"] is None and blip["mode"] is None and blip["tempo_bpm"] is None and blip["beats"] == []
    assert blip["time_signature"] is None and blip["onset_rate"] is None and [c["chord"] for c in blip["chords"]] == ["N"]
    assert blip["spectral_centroid_hz"] > 0  # what 10 ms does tell
    text = summary("blip.wav", 0.01, blip)
    assert "too short for tempo, key, metre and chords" in text and "key        unknown" in text
    assert "onsets/s" not in text


def test_noise_is_flatter_and_brighter_than_a_sine():
    t = np.arange(3 * SR) / SR
    sine = analyze((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    noise = analyze((0.1 * np.random.default_rng(0).standard_normal(3 * SR)).astype(np.float32), SR)
    assert noise["spectral_flatness"] > 0.3 > 0.01 > sine["spectral_flatness"]
    assert noise["spectral_centroid_hz"] > 3000 and abs(sine["spectral_centroid_hz"] - 440) < 60
    assert noise["zero_crossing_rate"] > 10 * sine["zero_crossing_rate"]


def test_cli_json_and_a_bad_file(clip_dir, capsys):
    from musicllm.cli import main

    good, bad = str(clip_dir / "c_major.wav"), str(clip_dir / "broken.wav")
    assert main(["analyze", bad, good, "--json"]) == 1
    out, err = capsys.readouterr()
    assert "error:" in err and bad in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["file"] == bad and "error" in lines[0]
    assert lines[1]["file"] == good and list(lines[1]["estimates"]) == ESTIMATE_KEYS
    assert lines[1]["estimates"]["key"] == "C"

    assert main(["analyze", good]) == 0
    out, _ = capsys.readouterr()
    assert "C major" in out and "BPM" in out and "LUFS" in out


def write_manifest(clip_dir, path, names: list[str]) -> None:
    with open(path, "w") as f:
        for name in names:
            record = {"id": f"clip-{name}", "audio": f"{name}.wav", "duration": 8.0, "source": "test",
                      "license": "CC0", "labels": LABELS.get(name, {"genre": "test", "key": "C"})}
            f.write(json.dumps(record) + "\n")


def test_annotate_exactly_once_and_resume(clip_dir):
    from data_gen.annotate import main
    from data_gen.formats import read_jsonl

    manifest = clip_dir / "manifest.jsonl"
    names = ["pop", "broken", "c_major", "waltz"]
    write_manifest(clip_dir, manifest, names)
    out = clip_dir / "manifest.annotated.jsonl"
    assert main([str(manifest), "--workers", "2"]) == 0
    first = list(read_jsonl(out))
    assert [r["id"] for r in first] == [f"clip-{n}" for n in names]
    inputs = {r["id"]: r for r in read_jsonl(manifest)}
    for record in first:
        assert record["labels"] == inputs[record["id"]]["labels"]
    assert "unknown or unsupported" in first[1]["estimates"]["error"] or "corrupt" in first[1]["estimates"]["error"]
    assert first[0]["estimates"]["key"] == "C" and list(first[3]["estimates"]) == ESTIMATE_KEYS

    # A run killed while writing the last record: cut it in half, rerun, nothing twice.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:20])
    assert main([str(manifest), "--workers", "1"]) == 0
    again = list(read_jsonl(out))
    assert [r["id"] for r in again] == [r["id"] for r in first]
    assert again[:3] == first[:3]
    assert main([str(manifest), "--workers", "1"]) == 0  # all done: a no-op
    assert len(list(read_jsonl(out))) == len(names)


def test_annotate_workers_leave_a_numba_cache_that_later_runs_load(clip_dir, tmp_path):
    """Two workers compiling librosa's kernels at once wrote a cache that crashed every later
    process (without the fix this failed 3 runs of 3): the parent compiles them first."""
    import subprocess
    import sys

    from data_gen.formats import read_jsonl

    manifest = clip_dir / "cache.jsonl"
    write_manifest(clip_dir, manifest, ["pop", "c_major", "waltz"])
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}  # empty
    for workers in ("2", "1"):  # the second run loads what the first cached
        out = tmp_path / f"annotated-{workers}.jsonl"
        run = subprocess.run([sys.executable, "-m", "data_gen.annotate", str(manifest), "--out", str(out),
                              "--workers", workers], env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert [r["estimates"]["key"] for r in read_jsonl(out)][:2] == ["C", "C"]


def crash_in_native_code(path, max_seconds):
    """What a segfault in numba or a codec does to an analysis worker."""
    os.kill(os.getpid(), signal.SIGSEGV)


def test_annotate_says_which_clips_a_crashed_worker_had(clip_dir, tmp_path, monkeypatch, capsys):
    import data_gen.annotate as annotate
    from data_gen.formats import read_jsonl

    manifest = clip_dir / "crash.jsonl"
    write_manifest(clip_dir, manifest, ["pop", "waltz"])
    out = tmp_path / "annotated.jsonl"
    # the workers are spawned: they import this module to find the function
    monkeypatch.setattr(annotate, "annotate_clip", crash_in_native_code)
    assert annotate.main([str(manifest), "--out", str(out), "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert "analysis process died at" in err and "pop.wav" in err and "rerun to resume" in err
    assert "Traceback" not in err and list(read_jsonl(out)) == []


def test_annotate_rebases_audio_paths(clip_dir, tmp_path):
    from data_gen.annotate import main
    from data_gen.formats import read_jsonl

    manifest = clip_dir / "single.jsonl"
    write_manifest(clip_dir, manifest, ["c_major"])
    out = tmp_path / "elsewhere" / "annotated.jsonl"
    assert main([str(manifest), "--out", str(out), "--workers", "1"]) == 0
    (record,) = read_jsonl(out)
    assert (out.parent / record["audio"]).resolve() == (clip_dir / "c_major.wav").resolve()


def test_key_relations():
    from eval.benchmarks.mir_agreement import key_relation, tempo_agrees

    assert key_relation("C", "major", "C", "major") == "exact"
    assert key_relation("G", "major", "C", "major") == "fifth"
    assert key_relation("F", "major", "C", "major") == "fifth"
    assert key_relation("A", "minor", "C", "major") == "relative"
    assert key_relation("C", "major", "A", "minor") == "relative"
    assert key_relation("C", "minor", "C", "major") == "parallel"
    assert key_relation("D", "major", "C", "major") == "other"
    assert key_relation(None, None, "C", "major") == "other"
    assert tempo_agrees(124.0, 120) and not tempo_agrees(125.0, 120)
    assert tempo_agrees(240.0, 120, octaves=True) and not tempo_agrees(240.0, 120)


def test_chord_overlap_reduces_to_triads():
    from eval.benchmarks.mir_agreement import chord_overlap, triad

    assert [triad(c) for c in ["C", "Cm7", "A#maj7", "F#7", "N", "Bdim", "G#m7b5", "Dm"]] == \
        ["C", "Cm", "A#", "F#", "N", None, None, "Dm"]
    truth = [{"start": 0.0, "end": 2.0, "chord": "Cmaj7"}, {"start": 2.0, "end": 3.0, "chord": "Bdim"},
             {"start": 3.0, "end": 4.0, "chord": "Am7"}]
    estimate = [{"start": 0.0, "end": 1.0, "chord": "C"}, {"start": 1.0, "end": 3.5, "chord": "F"},
                {"start": 3.5, "end": 4.0, "chord": "Am"}]
    assert chord_overlap(truth, estimate) == pytest.approx(1.5 / 3.0)  # Bdim's second is not counted
    assert chord_overlap([{"start": 0.0, "end": 1.0, "chord": "Bdim"}], estimate) is None


def test_agreement_benchmark(clip_dir, tmp_path, capsys):
    from eval.benchmarks.mir_agreement import main

    manifest = tmp_path / "labelled.jsonl"
    with open(manifest, "w") as f:
        for name in ["pop", "waltz"]:
            audio = str(clip_dir / f"{name}.wav")  # absolute paths
            f.write(json.dumps({"id": name, "audio": audio, "duration": len(sf.read(audio)[0]) / SR,
                                "source": "test", "license": "CC0", "labels": LABELS[name]}) + "\n")
    out = tmp_path / "result.json"
    assert main([str(manifest), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["clips"] == 2 and result["unusable"] == 0
    for column in ["tempo", "tempo_octave", "key", "key_close", "mode", "metre"]:
        assert result["all"][column] == {"n": 2, "rate": 1.0}, column
    assert result["all"]["chords"]["n"] == 1 and result["all"]["chords"]["rate"] > 0.8
    assert set(result["by_genre"]) == {"pop", "waltz"} and set(result["by_metre"]) == {"3/4", "4/4"}
    assert result["speed"]["x_realtime"] > 1
    assert "annotation speed" in capsys.readouterr().out
