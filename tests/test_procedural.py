"""The procedural corpus: composition, labels, real FluidSynth renders, the `synth` command,
the texture styles, soundfonts per clip, production effects and the OOD corpus.

Renders are short (2-8 s) so the file runs in about a minute on 2 cores. Tests that need
the soundfont or libfluidsynth are skipped, with the reason, where they are not installed.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from data_gen import formats
from data_gen.procedural import render
from data_gen.procedural.composer import compose
from data_gen.procedural.harmony import allowed_pitch_classes, chord
from data_gen.procedural.mood import MOODS, mood
from data_gen.procedural.styles import (BAND_STYLES, DRUM_KIT_NAMES, INSTRUMENT_NAMES, OOD_STYLES, STYLES,
                                        TEXTURE_STYLES, TRAIN_STYLES)
from musicllm.vocabulary import PITCH_CLASSES

SR = render.SAMPLE_RATE


def _has_fluidsynth() -> str | None:
    try:
        render.soundfont_path()
        import fluidsynth  # noqa: F401
    except (render.RenderError, ImportError, OSError) as err:
        return str(err)
    return None


needs_fluidsynth = pytest.mark.skipif(_has_fluidsynth() is not None, reason=f"no FluidSynth: {_has_fluidsynth()}")


def _notes(song) -> list[tuple]:
    return [(i.name, i.program, i.is_drum, n.pitch, n.velocity, round(n.start, 6), round(n.end, 6))
            for i in song.midi.instruments for n in i.notes]


# ----------------------------------------------------------------------------- theory and mood
def test_chords_are_named_with_sharps_and_harmonic_minor():
    assert chord("ii7", "C", "major").name == "Dm7"
    assert chord("V7", "A", "minor").name == "E7"  # raised leading tone G#
    assert chord("I", "C#", "major").name == "C#"
    assert chord("vii°", "A", "minor").name == "G#dim"
    assert chord("iv", "F#", "minor").name == "Bm"
    with pytest.raises(ValueError, match="case disagrees"):
        chord("iv", "C", "major")  # IV of a major key is a major chord: a typo, not a new chord


def test_mood_table():
    assert mood("major", 170, "loud") == "energetic"
    assert mood("minor", 170, "loud") == "tense"
    assert mood("major", 110, "medium") == "happy"
    assert mood("major", 110, "medium", "bouncy") == "playful"
    assert mood("minor", 110, "medium") == "dark"
    assert mood("major", 60, "soft") == "calm"
    assert mood("major", 60, "soft", "airy") == "dreamy"
    assert mood("minor", 60, "soft", "airy") == "sad"


# ----------------------------------------------------------------------------- composition
def test_same_seed_same_song_and_variations_share_material():
    a, b = compose(11, seconds=12), compose(11, seconds=12)
    assert _notes(a) == _notes(b) and a.labels == b.labels
    other = compose(11, seconds=12, variation=1)
    for field in ("genre", "key", "mode", "tempo_bpm", "time_signature", "mood", "dynamics"):
        assert other.labels[field] == a.labels[field]
    assert compose(12, seconds=12).labels != a.labels


@pytest.mark.parametrize("seed", range(0, 60, 3))
def test_midi_agrees_with_labels(seed):
    song = compose(seed, seconds=14, variation=seed % 4)
    labels, midi = song.labels, song.midi
    # tempo: the MIDI holds quarter notes per minute; the label's beat is a dotted quarter in 6/8
    quarter = labels["tempo_bpm"] * (1.5 if labels["time_signature"] == "6/8" else 1)
    _, tempi = midi.get_tempo_changes()
    assert list(tempi) == pytest.approx([quarter])
    (ts,) = midi.time_signature_changes
    assert f"{ts.numerator}/{ts.denominator}" == labels["time_signature"]
    (ks,) = midi.key_signature_changes
    assert (PITCH_CLASSES[ks.key_number % 12], "minor" if ks.key_number >= 12 else "major") == (
        labels["key"], labels["mode"])
    # every pitched note is in the key (harmonic minor's leading tone is the one exception)
    allowed = allowed_pitch_classes(labels["key"], labels["mode"])
    pitched = [n.pitch % 12 for i in midi.instruments if not i.is_drum for n in i.notes]
    assert pitched and set(pitched) <= allowed
    # instruments listed == programs used; one program per part, drums only on the drum part
    melodic = [i for i in midi.instruments if not i.is_drum]
    assert labels["gm_programs"] == [i.program for i in melodic]
    assert len(set(labels["gm_programs"])) == len(melodic)
    drums = [i for i in midi.instruments if i.is_drum]
    assert labels["drums"] == bool(drums) and len(drums) <= 1
    expected = [INSTRUMENT_NAMES[i.program] for i in melodic] + (["drums"] if drums else [])
    assert labels["instruments"] == expected
    if drums:
        assert labels["drum_kit"] == DRUM_KIT_NAMES[drums[0].program]
    for part in melodic:  # each listed instrument really plays
        assert sum(n.end - n.start for n in part.notes) >= 1.0
    # nothing sounds past the clip, sections and chords tile it
    assert max(n.end for i in midi.instruments for n in i.notes) <= song.seconds + 1e-6
    for key in ("sections", "chords"):
        spans = labels[key]
        assert spans[0]["start"] == 0 and spans[-1]["end"] == pytest.approx(song.seconds)
        assert all(x["end"] == y["start"] for x, y in zip(spans, spans[1:]))
    style = STYLES[labels["genre"]]
    assert labels["mood"] == mood(labels["mode"], labels["tempo_bpm"], labels["dynamics"], style.character)


def test_coverage_of_240_seeds():
    labels = [compose(seed, seconds=10).labels for seed in range(240)]
    keys = Counter((l["key"], l["mode"]) for l in labels)
    assert len(keys) == 24 and set(keys.values()) == {10}  # balanced, not just covered
    assert {l["time_signature"] for l in labels} == {"3/4", "4/4", "6/8"}
    assert len({l["genre"] for l in labels}) >= 8
    assert len({p for l in labels for p in l["gm_programs"]}) >= 30
    assert len({l["drum_kit"] for l in labels if l["drums"]}) >= 5
    tempi = [l["tempo_bpm"] for l in labels]
    assert min(tempi) <= 55 and max(tempi) >= 190
    assert {l["mood"] for l in labels} == set(MOODS)
    assert {l["dynamics"] for l in labels} == {"soft", "medium", "loud"}
    assert {s["name"] for l in labels for s in l["sections"]} == {"intro", "verse", "chorus", "bridge", "outro"}


@pytest.mark.parametrize("corpus_seed", [0, 1])
def test_a_200_clip_corpus_covers_every_key_metre_and_style(corpus_seed):
    from data_gen.procedural.corpus import clip_specs, parse_options

    args = parse_options(["--out", "unused", "--clips", "200", "--seed", str(corpus_seed)])
    specs = clip_specs(args)
    songs = [compose(s.family_seed, seconds=4.0) for s in specs if s.variation == 0]
    assert len(songs) == 50
    assert len({(s.labels["key"], s.labels["mode"]) for s in songs}) == 24
    assert {s.labels["time_signature"] for s in songs} == {"3/4", "4/4", "6/8"}
    assert {s.labels["genre"] for s in songs} == set(BAND_STYLES)  # the default: the band styles
    lengths = [s.seconds for s in specs]
    assert sum(x == 120.0 for x in lengths) == 4 and all(10 <= x <= 30 for x in lengths if x != 120.0)


def test_styles_can_be_restricted_and_pinned():
    assert {compose(s, seconds=6, styles=["jazz", "folk"]).labels["genre"] for s in range(8)} == {"jazz", "folk"}
    song = compose(3, style="classical", seconds=6, key="F#", mode="minor", metre="6/8", tempo=72)
    assert (song.labels["key"], song.labels["mode"], song.labels["time_signature"], song.labels["tempo_bpm"]) == (
        "F#", "minor", "6/8", 72)
    with pytest.raises(ValueError, match="not written in"):
        compose(3, style="electronic", metre="3/4")
    with pytest.raises(ValueError, match="unknown style"):
        compose(3, style="polka")


# ----------------------------------------------------------------------------- rendering
@needs_fluidsynth
def test_render_length_flac_and_determinism(tmp_path):
    from musicllm.audio import load_audio

    song = compose(5, seconds=4.0)
    first = render.render(song.midi, song.seconds)
    render.render(compose(8, seconds=3.0).midi, 3.0)  # another render in between changes nothing
    second = render.render(compose(5, seconds=4.0).midi, 4.0)
    assert first.dtype == np.float32 and len(first) == round((4.0 + render.RELEASE_SECONDS) * SR)
    assert np.array_equal(first, second)  # a fresh synthesizer per render: bit-identical
    assert np.abs(first).max() > 0.01
    path = tmp_path / "clip.flac"
    render.write_flac(path, render.normalize(first))
    decoded = load_audio(path, SR)
    assert 4.0 <= len(decoded) / SR <= 4.0 + render.RELEASE_SECONDS
    assert np.abs(decoded).max() <= 10 ** (render.CEILING_DB / 20) + 1e-3


def test_normalize_keeps_soft_songs_soft():
    quiet, loud = np.full(100, 0.05, np.float32), np.full(100, 0.9, np.float32)
    assert render.normalize(quiet).max() == pytest.approx(0.05 * render.OUTPUT_GAIN)
    assert render.normalize(loud).max() == pytest.approx(10 ** (render.CEILING_DB / 20), rel=1e-5)
    assert render.normalize(quiet, "peak").max() == pytest.approx(10 ** (render.CEILING_DB / 20), rel=1e-5)


@needs_fluidsynth
@pytest.mark.parametrize("style,tempo", [("rock", 112), ("electronic", 128), ("hip-hop", 90)])
def test_tempo_of_easy_clips_is_heard(style, tempo):
    """librosa's beat tracker on a rendered 4/4 clip with drums finds the labelled tempo within
    3% (its tempo grid is ~1% coarse at these tempi); no octave errors are allowed here."""
    librosa = pytest.importorskip("librosa")
    song = compose(1, style=style, seconds=8.0, metre="4/4", tempo=tempo)
    estimate, _ = librosa.beat.beat_track(y=render.render(song.midi, song.seconds), sr=SR)
    assert float(np.atleast_1d(estimate)[0]) == pytest.approx(tempo, rel=0.03)


@needs_fluidsynth
def test_render_is_bounded_in_time_and_length():
    song = compose(2, seconds=30.0)
    with pytest.raises(render.RenderTimeout, match=r"wall time \(bound 0.001 s\)"):
        render.render(song.midi, song.seconds, timeout=0.001)
    with pytest.raises(render.RenderError, match="bound is"):
        render.render(song.midi, 5000.0)
    # notes past `seconds` are not played: the audio length is set by seconds, not the MIDI
    assert len(render.render(song.midi, 2.0)) == round((2.0 + render.RELEASE_SECONDS) * SR)


@needs_fluidsynth
def test_stuck_worker_is_stopped_by_the_pool_backstop():
    import time

    started = time.monotonic()
    with pytest.raises(render.RenderTimeout, match="no render finished within 0.5 s"):
        list(render.parallel(time.sleep, [30], workers=1, backstop=0.5))
    assert time.monotonic() - started < 15


# ----------------------------------------------------------------------------- the synth command
def _synth_argv(out: Path, clips: int, workers: int = 2, *extra: str) -> list[str]:
    return ["--out", str(out), "--clips", str(clips), "--min-seconds", "3", "--max-seconds", "4",
            "--long-every", "5", "--long-seconds", "6", "--clips-per-family", "2",
            "--workers", str(workers), *extra]


def _synth(out: Path, clips: int, workers: int = 2, *extra: str) -> int:
    from data_gen.procedural.corpus import main

    return main(_synth_argv(out, clips, workers, *extra))


@needs_fluidsynth
def test_synth_writes_a_valid_manifest_and_resumes(tmp_path):
    from musicllm.audio import audio_duration

    out = tmp_path / "corpus"
    assert _synth(out, 5) == 0
    manifest = out / "manifest.jsonl"
    records = list(formats.read_jsonl(manifest))
    assert [r["id"] for r in records] == [f"proc-s0-{i:06d}" for i in range(5)]  # id order, whoever finished first
    for r in records:
        formats.validate_clip(r)
        assert r["source"] == "procedural" and r["license"].startswith("CC0")
        assert r["split"] == formats.assign_split(r["family"])
        assert r["duration"] == pytest.approx(audio_duration(out / r["audio"]))
        music = r["generator"]["music_seconds"]
        assert 3 <= music <= 6 and music <= r["duration"] <= music + render.RELEASE_SECONDS + 1e-6
        assert {"tempo_bpm", "key", "mode", "time_signature", "instruments", "genre", "mood",
                "dynamics", "sections", "chords", "gm_programs", "drums"} <= set(r["labels"])
    by_id = {r["id"]: r for r in records}
    assert by_id["proc-s0-000004"]["generator"]["music_seconds"] == 6.0  # every 5th clip is long
    assert by_id["proc-s0-000000"]["family"] == by_id["proc-s0-000001"]["family"]  # 2 per family

    # A kill: half of the last manifest line written (the lines in the order workers happened
    # to finish them), a temporary file left behind.
    lines = manifest.read_text().splitlines(keepends=True)[::-1]
    torn = json.loads(lines[-1])["id"]
    manifest.write_text("".join(lines[:-1]) + lines[-1][:40])
    stray = out / "clips" / f".{torn}.partial.flac"
    stray.write_bytes(b"half a flac")
    assert _synth(out, 7, 0) == 0
    ids = [r["id"] for r in formats.read_jsonl(manifest)]
    assert ids == [f"proc-s0-{i:06d}" for i in range(7)]  # each exactly once, in id order
    assert not stray.exists()
    assert sorted(p.name for p in (out / "clips").iterdir()) == [f"{i}.flac" for i in sorted(ids)]

    # Other content options on the same folder are refused instead of mixed in.
    assert _synth(out, 7, 0, "--seed", "3") == 2


def test_synth_help_explains_every_option(capsys):
    from data_gen.procedural.corpus import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--out", "--clips", "--seed", "--min-seconds", "--max-seconds", "--long-every",
                   "--long-seconds", "--workers", "--styles", "--clips-per-family", "--normalize",
                   "--render-timeout", "--soundfont", "--sample-rate", "Resumable", "--soundfonts",
                   "--production", "--ood", "--exclude-styles", "Training and OOD"):
        assert option in text


def test_synth_rejects_bad_options(tmp_path, capsys, monkeypatch):
    assert _synth(tmp_path / "x", 2, 0, "--min-seconds", "9") == 2  # min > max
    assert "min-seconds" in capsys.readouterr().err
    monkeypatch.delenv("MUSICLLM_SOUNDFONT", raising=False)
    from data_gen.procedural.corpus import main

    assert main(["--out", str(tmp_path / "y"), "--soundfont", str(tmp_path / "none.sf2")]) == 2
    assert "soundfont" in capsys.readouterr().err


# ----------------------------------------------------------------------------- texture styles
FAMILIES = {"violin": "strings", "viola": "strings", "cello": "strings", "contrabass": "strings",
            "strings": "strings", "flute": "woodwinds", "oboe": "woodwinds", "clarinet": "woodwinds",
            "bassoon": "woodwinds", "trumpet": "brass", "french horn": "brass", "trombone": "brass",
            "tuba": "brass", "brass section": "brass", "timpani": "timpani"}


def _rms_db(audio: np.ndarray) -> float:
    return float(20 * np.log10(max(1e-12, np.sqrt(np.mean(audio.astype(np.float64) ** 2)))))


def _soundfont_missing(name: str) -> str | None:
    try:
        render.soundfont_path(name)
    except render.RenderError as err:
        return str(err)
    return None


needs_timgm = pytest.mark.skipif(_soundfont_missing("TimGM6mb.sf2") is not None,
                                 reason=f"no TimGM6mb: {_soundfont_missing('TimGM6mb.sf2')}")
needs_musescore = pytest.mark.skipif(_soundfont_missing("MuseScore_General.sf3") is not None,
                                     reason=f"no MuseScore General: {_soundfont_missing('MuseScore_General.sf3')}")


def test_style_groups():
    assert set(BAND_STYLES) | set(TEXTURE_STYLES) == set(STYLES) and not set(BAND_STYLES) & set(TEXTURE_STYLES)
    assert set(OOD_STYLES) <= set(TEXTURE_STYLES)
    assert set(TRAIN_STYLES) == set(STYLES) - set(OOD_STYLES)
    assert set(TEXTURE_STYLES) == {"unaccompanied", "chorale", "chamber", "orchestral", "solo piano", "choral",
                                   "brass band"}


@pytest.mark.parametrize("style", TEXTURE_STYLES)
def test_texture_labels_match_the_midi(style):
    for seed in range(6):
        for seconds, variation in ((3.0, seed % 4), (12.0, 1)):
            song = compose(seed, style=style, seconds=seconds, variation=variation)
            labels, midi = song.labels, song.midi
            assert labels["genre"] == style
            (ks,) = midi.key_signature_changes
            assert (PITCH_CLASSES[ks.key_number % 12], "minor" if ks.key_number >= 12 else "major") == (
                labels["key"], labels["mode"])
            pitched = [n.pitch % 12 for i in midi.instruments if not i.is_drum for n in i.notes]
            assert pitched and set(pitched) <= allowed_pitch_classes(labels["key"], labels["mode"])
            melodic = [i for i in midi.instruments if not i.is_drum]
            drums = [i for i in midi.instruments if i.is_drum]
            assert labels["gm_programs"] == [i.program for i in melodic]
            assert [p["role"] for p in labels["parts"] if p["role"] != "drums"] == [i.name for i in melodic]
            names = [INSTRUMENT_NAMES[i.program] for i in melodic] + (["drums"] if drums else [])
            assert labels["instruments"] == list(dict.fromkeys(names))  # a choir's four voices: one "choir"
            assert all(sum(n.end - n.start for n in part.notes) >= 1.0 for part in melodic)
            assert max(n.end for i in midi.instruments for n in i.notes) <= song.seconds + 1e-6
            assert labels["mood"] == mood(labels["mode"], labels["tempo_bpm"], labels["dynamics"],
                                          STYLES[style].character)


def test_unaccompanied_is_one_melody_alone():
    for seed in range(8):
        song = compose(seed, style="unaccompanied", seconds=3.0, variation=seed % 4)
        (part,) = song.midi.instruments  # it plays from the first bar: no silent intro
        assert len(song.labels["parts"]) == 1 and len(song.labels["instruments"]) == 1
        assert not song.labels["drums"]
        notes = sorted(part.notes, key=lambda n: n.start)
        assert all(a.end <= b.start + 1e-6 for a, b in zip(notes, notes[1:]))  # one note at a time


def test_string_quartet_is_two_violins_viola_and_cello():
    song = compose(3, style="chamber", seconds=12.0, variation=1)
    assert song.labels["instruments"] == ["violin", "viola", "cello"]
    assert [p["role"] for p in song.labels["parts"]] == ["first violin", "second violin", "viola", "cello"]
    assert song.labels["gm_programs"] == [40, 40, 41, 42]
    for seed in range(8):
        assert set(compose(seed, style="chamber", seconds=3.0, variation=seed % 4).labels["instruments"]) <= {
            "violin", "viola", "cello"}


def test_orchestra_has_strings_brass_woodwinds_and_timpani():
    for seed in range(8):
        short = compose(seed, style="orchestral", seconds=3.0, variation=seed % 4).labels
        assert "timpani" in short["instruments"] and 47 in short["gm_programs"]
        full = compose(seed, style="orchestral", seconds=12.0, variation=1).labels
        assert {FAMILIES[name] for name in full["instruments"]} == {"strings", "brass", "woodwinds", "timpani"}


def test_chorale_is_four_voices_in_one_rhythm():
    ensembles = set()
    for seed in range(9):
        song = compose(seed, style="chorale", seconds=6.0, variation=seed % 4)
        voices = song.midi.instruments
        assert [v.name for v in voices] == ["soprano", "alto", "tenor", "bass"]
        onsets = [[n.start for n in v.notes] for v in voices]
        assert all(o == onsets[0] for o in onsets)  # homophony
        for voiced in zip(*[v.notes for v in voices]):
            s, a, t, b = (n.pitch for n in voiced)
            assert s > a > t > b and s - a <= 12 and a - t <= 12
        ensembles.add(tuple(song.labels["instruments"]))
    assert ("choir",) in ensembles and ("church organ",) in ensembles
    assert any(set(e) <= {"trumpet", "french horn", "trombone", "tuba"} for e in ensembles)


def test_solo_piano_plays_melody_and_accompaniment_in_one_instrument():
    song = compose(2, style="solo piano", seconds=10.0, variation=1)
    (piano,) = song.midi.instruments
    assert song.labels["instruments"] == ["piano"] and song.labels["gm_programs"] == [0]
    pitches = [n.pitch for n in piano.notes]
    assert max(pitches) - min(pitches) >= 24  # two hands apart
    by_pitch = {}
    for n in sorted(piano.notes, key=lambda n: n.start):
        assert n.start >= by_pitch.get(n.pitch, -1.0)  # one key is never struck while it sounds
        by_pitch[n.pitch] = n.end
    assert any(a.end > b.start for a, b in zip(piano.notes, piano.notes[1:]))  # notes sound together


def test_bass_fifths_over_diminished_chords_stay_in_the_key():
    """The bass's "fifth" over ii° and ii7 (m7b5) in minor is the chord's own diminished fifth
    (generator version 2); a perfect fifth there was out of the key."""
    for style in ("classical", "latin"):
        for seed in range(12):
            labels_midi = compose(seed, style=style, seconds=40.0, mode="minor")
            allowed = allowed_pitch_classes(labels_midi.labels["key"], "minor")
            assert {n.pitch % 12 for i in labels_midi.midi.instruments if not i.is_drum for n in i.notes} <= allowed


@needs_fluidsynth
@pytest.mark.parametrize("style", TEXTURE_STYLES)
def test_textures_render_audibly(style):
    song = compose(4, style=style, seconds=2.5)
    audio = render.render(song.midi, song.seconds)
    assert _rms_db(audio[: int(song.seconds * SR)]) > -55


# ----------------------------------------------------------------------------- soundfonts
def test_soundfont_per_clip_is_balanced_and_fixed_by_the_seed():
    from data_gen.procedural.corpus import clip_specs, parse_options

    argv = ["--out", "unused", "--clips", "40", "--soundfonts", "FluidR3_GM.sf2", "TimGM6mb.sf2"]
    fonts = [s.soundfont for s in clip_specs(parse_options(argv))]
    assert fonts == [s.soundfont for s in clip_specs(parse_options(argv))]
    assert Counter(fonts) == {"FluidR3_GM.sf2": 20, "TimGM6mb.sf2": 20}
    assert all(fonts[i] != fonts[i + 1] for i in range(0, 40, 2))  # balanced rounds, not chance
    assert fonts != [s.soundfont for s in clip_specs(parse_options(argv + ["--seed", "1"]))]
    assert {s.soundfont for s in clip_specs(parse_options(["--out", "unused", "--clips", "4"]))} == {None}


@needs_fluidsynth
@needs_timgm
def test_synth_records_each_clips_soundfont(tmp_path):
    from data_gen.procedural.corpus import clip_specs, parse_options

    argv = _synth_argv(tmp_path / "corpus", 4, 0, "--soundfonts", "FluidR3_GM.sf2", "TimGM6mb.sf2")
    from data_gen.procedural.corpus import main

    assert main(argv) == 0
    records = {r["id"]: r for r in formats.read_jsonl(tmp_path / "corpus" / "manifest.jsonl")}
    specs = clip_specs(parse_options(argv))
    assert [records[s.id]["generator"]["soundfont"] for s in specs] == [s.soundfont for s in specs]
    assert {s.soundfont for s in specs} == {"FluidR3_GM.sf2", "TimGM6mb.sf2"}
    config = json.loads((tmp_path / "corpus" / "synth_config.json").read_text())
    assert config["soundfonts"] == ["FluidR3_GM.sf2", "TimGM6mb.sf2"]


@needs_fluidsynth
@needs_timgm
def test_one_midi_two_soundfonts_two_sounds():
    song = compose(6, seconds=3.0)
    fluid = render.render(song.midi, 3.0, soundfont_file=render.soundfont_path("FluidR3_GM.sf2"))
    tim = render.render(song.midi, 3.0, soundfont_file=render.soundfont_path("TimGM6mb.sf2"))
    assert len(fluid) == len(tim) and _rms_db(tim) > -60
    similarity = float(np.dot(fluid, tim) / (np.linalg.norm(fluid) * np.linalg.norm(tim)))
    assert similarity < 0.9  # other samples, not the same sound at another level


@needs_fluidsynth
@needs_musescore
def test_musescore_sf3_loads_and_renders():
    """MuseScore General ships as .sf3 (Ogg Vorbis samples): libfluidsynth must decode it (~5 s)."""
    song = compose(6, seconds=2.0)
    audio = render.render(song.midi, 2.0, soundfont_file=render.soundfont_path("MuseScore_General.sf3"))
    assert _rms_db(audio) > -60


def test_a_missing_soundfont_names_the_file_and_its_debian_package(tmp_path, monkeypatch, capsys):
    from data_gen.procedural.corpus import main

    monkeypatch.setitem(render.SOUNDFONTS, "TimGM6mb.sf2", (str(tmp_path / "TimGM6mb.sf2"), "timgm6mb-soundfont"))
    with pytest.raises(render.RenderError, match=r"TimGM6mb.sf2 not found: install Debian's timgm6mb-soundfont"):
        render.soundfont_path("TimGM6mb.sf2")
    assert main(["--out", str(tmp_path / "ood"), "--clips", "1", "--ood"]) == 2  # its default soundfont
    err = capsys.readouterr().err
    assert "TimGM6mb.sf2" in err and "apt-get install timgm6mb-soundfont" in err
    assert main(["--out", str(tmp_path / "x"), "--clips", "1", "--soundfonts", "FluidR3_GM.sf2",
                 str(tmp_path / "mine.sf2")]) == 2
    assert "mine.sf2 not found" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "y"), "--soundfont", "a.sf2", "--soundfonts", "b.sf2"]) == 2


# ----------------------------------------------------------------------------- production
def test_production_chains_are_seeded_plain_data():
    from data_gen.procedural import production
    from data_gen.procedural.seeds import rng

    chains = [production.draw(rng("production", f"clip-{i}")) for i in range(60)]
    assert chains[0] == production.draw(rng("production", "clip-0"))
    assert len({json.dumps(c) for c in chains}) == 60
    assert json.loads(json.dumps(chains)) == chains  # the manifest keeps them as they are
    assert {step["effect"] for c in chains for step in c} == {
        "reverb", "highpass", "low_shelf", "peak", "high_shelf", "lowpass", "compressor", "noise", "gain"}


@needs_fluidsynth
def test_production_changes_the_sound_within_a_sane_level():
    pytest.importorskip("pedalboard")
    from data_gen.procedural import production
    from data_gen.procedural.seeds import rng

    song = compose(9, seconds=3.0)
    dry = render.render(song.midi, song.seconds)
    dry_db, ceiling = _rms_db(render.normalize(dry)), 10 ** (render.CEILING_DB / 20)
    for i in range(8):
        chain = production.draw(rng("production", f"clip-{i}"))
        wet = production.apply(dry, chain, SR)
        assert np.array_equal(wet, production.apply(dry, chain, SR))
        assert wet.shape == dry.shape and wet.dtype == np.float32
        out = render.normalize(wet)
        assert np.abs(out).max() <= ceiling + 1e-6
        assert abs(_rms_db(out) - dry_db) < 12, chain
        if len(chain) > 1:  # more than a gain: another sound, not only another level
            scaled = wet / np.linalg.norm(wet) - dry / np.linalg.norm(dry)
            assert np.linalg.norm(scaled) > 0.01, chain


@needs_fluidsynth
def test_synth_production_is_recorded_and_reproducible(tmp_path):
    pytest.importorskip("pedalboard")
    assert _synth(tmp_path / "a", 2, 0, "--production") == 0
    assert _synth(tmp_path / "b", 2, 0, "--production") == 0
    assert _synth(tmp_path / "dry", 2, 0) == 0
    for record in formats.read_jsonl(tmp_path / "a" / "manifest.jsonl"):
        chain = record["generator"]["production"]
        assert chain[-1]["effect"] == "gain" and all("effect" in step for step in chain)
        audio = record["audio"]
        assert (tmp_path / "a" / audio).read_bytes() == (tmp_path / "b" / audio).read_bytes()
        assert (tmp_path / "a" / audio).read_bytes() != (tmp_path / "dry" / audio).read_bytes()
    assert all("production" not in r["generator"] for r in formats.read_jsonl(tmp_path / "dry" / "manifest.jsonl"))
    assert _synth(tmp_path / "a", 2, 0) == 2  # a produced corpus is not extended with dry clips


# ----------------------------------------------------------------------------- training and OOD corpora
def test_style_names_and_groups_on_the_command_line(tmp_path, capsys):
    from data_gen.procedural.corpus import main
    from data_gen.procedural.styles import resolve_styles

    assert resolve_styles(["solo-piano", "brass_band", "hip-hop"]) == ["solo piano", "brass band", "hip-hop"]
    assert resolve_styles(["folk", "jazz"]) == ["folk", "jazz"]  # the order given: it decides the songs
    assert resolve_styles(["ood"]) == list(OOD_STYLES)
    assert resolve_styles(["train", "jazz"]) == list(TRAIN_STYLES)
    assert main(["--out", str(tmp_path / "x"), "--clips", "0", "--styles", "polka"]) == 2
    assert "polka" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "y"), "--clips", "0", "--styles", "jazz", "--exclude-styles", "jazz"]) == 2


@pytest.mark.parametrize("extra", [["--styles", "train"], ["--styles", "all", "--exclude-styles", "ood"]])
def test_a_training_corpus_has_no_held_out_style(extra):
    from data_gen.procedural.corpus import chosen_styles, clip_specs, parse_options

    args = parse_options(["--out", "unused", "--clips", "224", *extra])
    styles = chosen_styles(args)
    assert styles == list(TRAIN_STYLES)
    songs = [compose(s.family_seed, seconds=4.0, styles=styles) for s in clip_specs(args) if s.variation == 0]
    assert {s.labels["genre"] for s in songs} == set(TRAIN_STYLES)  # every training style, no OOD one
    assert len({(s.labels["key"], s.labels["mode"]) for s in songs}) == 24
    assert {s.labels["time_signature"] for s in songs} == {"3/4", "4/4", "6/8"}


@needs_fluidsynth
@needs_timgm
def test_ood_corpus_holds_held_out_styles_with_the_held_out_soundfont(tmp_path):
    from data_gen.procedural.corpus import OOD_SOUNDFONT, OOD_SPLIT, TRAIN_SOUNDFONTS

    assert OOD_SOUNDFONT not in TRAIN_SOUNDFONTS
    out = tmp_path / "ood"
    assert _synth(out, 5, 2, "--ood", "--min-seconds", "2", "--max-seconds", "2.5", "--long-every", "0") == 0
    records = list(formats.read_jsonl(out / "manifest.jsonl"))
    assert [r["id"] for r in records] == [f"ood-s0-{i:06d}" for i in range(5)]
    for r in records:
        formats.validate_clip(r)
        assert r["split"] == OOD_SPLIT and r["family"].startswith("ood-")
        assert r["labels"]["genre"] in OOD_STYLES
        assert r["generator"]["soundfont"] == OOD_SOUNDFONT
    assert {r["labels"]["genre"] for r in records} == set(OOD_STYLES)  # 3 families, one per style
