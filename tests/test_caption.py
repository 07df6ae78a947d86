"""`musicllm caption`: a library captioned into a catalog, on the tiny trained serving checkpoint.

What users rely on: every readable track gets its window captions, a summary, MIR estimates and
an embedding; bad files are recorded with their reason and skipped; a run killed with kill -9
resumes and captions each remaining track exactly once; shards split a library and merge back;
exports hold everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from serving_fixtures import SAMPLE_RATE, SERVING_ANSWERS, SERVING_KEYS, SYSTEM, chord, clicks

from serve.catalog.caption import caption_spans, main, parse_args
from serve.catalog.captioner import Captioner, open_engine
from serve.catalog.store import Catalog

ROOT = Path(__file__).resolve().parents[1]
PIANO, DRUMS = SERVING_ANSWERS["piano"][0], SERVING_ANSWERS["drums"][0]
# The question the serving checkpoint was trained on, so that its captions are readable sentences.
PROMPT_ARGS = ["--system", SYSTEM["content"], "--prompt", "What is playing?", "--summary-prompt", "What is playing?",
               "--window-seconds", "3", "--max-tokens", "24", "--threads", "1", "--engine", "transformers"]
GOOD = {"piano-1": chord(3.0), "drums-1": clicks(3.0, 160), "piano-2": chord(3.0) * 0.8, "drums-2": clicks(3.0, 160) * 0.7}
LONG = np.concatenate([chord(3.0), clicks(3.0, 160), chord(3.5)])  # 9.5 s: windows 0-3, 3-6, 6-9.5


def write_library(folder: Path, copies: int = 1) -> Path:
    """Audio files of every kind a library has, good and bad, and a manifest listing them."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for copy in range(copies):
        for name, audio in GOOD.items():
            suffix = ".flac" if name.startswith("drums") else ".wav"
            sf.write(folder / f"{name}-{copy}{suffix}", audio, SAMPLE_RATE)
            labels = {"instruments": ["piano"]} if name.startswith("piano") else {"tempo_bpm": 160}
            records.append({"id": f"{name}-{copy}", "audio": f"{name}-{copy}{suffix}", "labels": labels})
    sf.write(folder / "long.ogg", LONG, SAMPLE_RATE)
    sf.write(folder / "silent.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(40)))
    (folder / "empty.flac").write_bytes(b"")
    (folder / "notes.txt").write_text("liner notes, not audio\n" * 20)
    records += [{"id": name, "audio": name} for name in ("long.ogg", "silent.wav", "corrupt.wav", "empty.flac",
                                                          "notes.txt", "missing.wav")]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder / "manifest.jsonl"


@pytest.fixture(scope="module")
def captioned(serving_checkpoint, tmp_path_factory):
    """The library captioned once, in this process, with MIR estimates and a JSONL export."""
    folder = tmp_path_factory.mktemp("library")
    manifest = write_library(folder)
    out = folder / "catalog.db"
    assert main([str(manifest), "--out", str(out), "--checkpoint", str(serving_checkpoint), "--batch-size", "4",
                 "--export", str(folder / "export.jsonl"), *PROMPT_ARGS]) == 0
    with Catalog(out) as catalog:
        yield catalog, folder


def test_every_readable_track_is_captioned_and_bad_files_are_skipped_with_reasons(captioned):
    catalog, _ = captioned
    tracks = {t.name: t for t in catalog.tracks()}
    failed = {name: t.error for name, t in tracks.items() if t.status == "failed"}
    assert set(failed) == {"silent.wav", "corrupt.wav", "empty.flac", "notes.txt", "missing.wav"}
    assert "audio is silent" in failed["silent.wav"]
    assert "corrupt audio" in failed["corrupt.wav"] and "corrupt.wav" in failed["corrupt.wav"]
    assert "file is empty" in failed["empty.flac"]
    assert "a text file, not audio" in failed["notes.txt"]
    assert "file not found" in failed["missing.wav"]
    assert catalog.counts() == {"pending": 0, "done": 5, "failed": 5}
    # Each track's own caption (not a neighbour's in the batch), a summary, estimates, an embedding.
    for name in GOOD:
        track = tracks[f"{name}-0"]
        captions = catalog.captions(track.id)
        assert [c.window for c in captions] == [0, -1] and captions[1].text == captions[0].text
        assert captions[0].text == (PIANO if name.startswith("piano") else DRUMS)
        assert track.duration == pytest.approx(3.0) and len(track.content_hash) == 64
    assert tracks["drums-1-0"].attributes["tempo_bpm"] == 160  # the label
    assert tracks["drums-1-0"].estimates["tempo_bpm"] == pytest.approx(160, rel=0.1)  # the MIR estimate
    assert tracks["piano-1-0"].attributes["key"] == "C" and tracks["piano-1-0"].attributes["mode"] == "major"
    ids, vectors = catalog.embeddings("audio-meanstd-v1")
    assert len(ids) == 5 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    job = catalog.jobs()[-1]
    assert (job["status"], job["done"], job["failed"]) == ("finished", 5, 5)


def test_a_long_track_gets_a_caption_per_window_and_a_summary(captioned):
    catalog, _ = captioned
    long = next(t for t in catalog.tracks() if t.name == "long.ogg")
    captions = catalog.captions(long.id)
    assert [(c.window, c.start, c.end) for c in captions] == [(0, 0, 3), (1, 3, 6), (2, 6, 9.5), (-1, 0, 9.5)]
    assert [c.text for c in captions[:3]] == [PIANO, DRUMS, PIANO]
    assert captions[-1].text  # the model heard all 9.5 s for the summary
    assert caption_spans(int(10.5 * SAMPLE_RATE), 3 * SAMPLE_RATE)[-1] == (9 * SAMPLE_RATE, int(10.5 * SAMPLE_RATE))
    assert caption_spans(int(9.5 * SAMPLE_RATE), 3 * SAMPLE_RATE)[-1] == (6 * SAMPLE_RATE, int(9.5 * SAMPLE_RATE))


def test_the_summary_hears_the_whole_track_by_default(serving_checkpoint, tmp_path):
    # 42 s in 3 s windows: the summary is not cut at 30 s unless --summary-seconds says so
    audio = np.tile(chord(3.0), 14)
    args = parse_args(["x", "--out", str(tmp_path / "c.db"), "--checkpoint", str(serving_checkpoint), *PROMPT_ARGS])
    with contextlib.ExitStack() as stack:
        captioner = Captioner(open_engine(args, stack), args)
        spans = caption_spans(len(audio), captioner.window)
        assert len(spans) == 14 and captioner.summary_end(audio, spans) == len(audio)
        args.summary_seconds = 30.0
        assert captioner.summary_end(audio, spans) == 30 * SAMPLE_RATE


def test_a_caption_never_contradicts_the_tracks_own_facts(serving_checkpoint, tmp_path):
    # Asked the key, the model says "It is in C major." of the piano: kept where the track's
    # labels agree, dropped (nothing invented in its place) where they say D minor
    labels = {"right": {"key": "C", "mode": "major"}, "wrong": {"key": "D", "mode": "minor"}}
    for name in labels:
        sf.write(tmp_path / f"{name}.wav", chord(3.0), SAMPLE_RATE)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"id": n, "audio": f"{n}.wav", "labels": l}) + "\n"
                                              for n, l in labels.items()))
    out = tmp_path / "c.db"
    assert main([str(tmp_path / "m.jsonl"), "--out", str(out), "--checkpoint", str(serving_checkpoint), *PROMPT_ARGS,
                 "--prompt", "What key is this in?", "--summary-prompt", "What key is this in?"]) == 0
    with Catalog(out) as catalog:
        texts = {t.name: [c.text for c in catalog.captions(t.id)] for t in catalog.tracks()}
    assert texts == {"right": [SERVING_KEYS["piano"]] * 2, "wrong": ["", ""]}


def test_export_and_a_rerun_that_has_nothing_to_do(captioned, serving_checkpoint, capsys):
    catalog, folder = captioned
    records = [json.loads(line) for line in (folder / "export.jsonl").read_text().splitlines()]
    assert len(records) == 10
    piano = next(r for r in records if r["id"] == "piano-1-0")
    assert piano["summary"] == PIANO and piano["instruments"] == ["piano"] and piano["estimates"]["key"] == "C"
    assert main([str(folder / "manifest.jsonl"), "--out", str(catalog.path), "--checkpoint", str(serving_checkpoint),
                 "--export", str(folder / "export.csv"), *PROMPT_ARGS]) == 0
    assert "0 to caption" in capsys.readouterr().out
    assert len(catalog.jobs()) == 1  # nothing to do: no model loaded, no job
    assert (folder / "export.csv").read_text().count("\n") >= 11


def test_kill_9_mid_batch_then_rerun_captions_each_track_exactly_once(serving_checkpoint, tmp_path, capsys):
    manifest = write_library(tmp_path / "library", copies=3)  # 12 good one-window tracks + long.ogg
    out = tmp_path / "catalog.db"
    command = [sys.executable, "-m", "serve.catalog.caption", str(manifest), "--out", str(out), "--checkpoint",
               str(serving_checkpoint), "--batch-size", "2", "--no-analysis", *PROMPT_ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        done, deadline = 0, time.monotonic() + 180
        while done < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
            done = _done(out)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    with Catalog(out) as catalog:
        before = catalog.counts()
        assert 2 <= before["done"] < 13, before  # killed with work left
        first_texts = {t.name: [c.text for c in catalog.captions(t.id)] for t in catalog.tracks(status="done")}
    assert main([str(manifest), "--out", str(out), "--checkpoint", str(serving_checkpoint), "--batch-size", "2",
                 "--no-analysis", *PROMPT_ARGS]) == 0
    left = 18 - before["done"] - before["failed"]
    assert re.search(rf"{left}/{left} \[[\d:]+<[\d:]+, +[\d.]+(track/s|s/track)", capsys.readouterr().err)  # rate, ETA
    with Catalog(out) as catalog:
        assert catalog.counts() == {"pending": 0, "done": 13, "failed": 5}
        jobs = catalog.jobs()
        assert [j["status"] for j in jobs] == ["interrupted", "finished"]
        assert jobs[0]["done"] + jobs[1]["done"] == 13  # each track finished by exactly one run
        rows = catalog.db.execute("SELECT t.name, COUNT(*) FROM captions c JOIN tracks t ON t.id = c.track_id "
                                  "GROUP BY t.name").fetchall()
        assert dict(rows) == {**{t.name: 2 for t in catalog.tracks(status="done") if t.name != "long.ogg"},
                              "long.ogg": 4}
        for name, texts in first_texts.items():  # what the killed run committed stayed as it was
            track = next(t for t in catalog.tracks() if t.name == name)
            assert [c.text for c in catalog.captions(track.id)] == texts


def test_the_vllm_engine_gives_the_same_captions(captioned, serving_checkpoint, tmp_path):
    """`--engine vllm` (vLLM offline, in the caption process) against the transformers engine's run."""
    from musicllm.vllm_server import vllm_env

    catalog, folder = captioned
    out = tmp_path / "vllm.db"
    command = [sys.executable, "-m", "serve.catalog.caption", str(folder / "manifest.jsonl"), "--out", str(out),
               "--checkpoint", str(serving_checkpoint), "--batch-size", "4", "--no-analysis", *PROMPT_ARGS,
               "--engine", "vllm"]
    result = subprocess.run(command, cwd=ROOT, env={**vllm_env(tmp_path), "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with Catalog(out) as other:
        assert other.counts() == catalog.counts()
        assert other.jobs()[0]["settings"]["engine"] == "vllm"
        for track in catalog.tracks(status="done"):
            twin = next(t for t in other.tracks() if t.name == track.name)
            assert [(c.window, c.end, c.text) for c in other.captions(twin.id)] == [
                (c.window, c.end, c.text) for c in catalog.captions(track.id)]


def test_ray_data_actors_caption_the_library_exactly_once(captioned, serving_checkpoint, tmp_path):
    """--ray-workers 2 --engine vllm on a local 2-CPU Ray instance: tracks stream through 2 actors
    (Ray Data map_batches), each holding a vLLM offline engine; the driver stores their records,
    which match the transformers engine's captions; a rerun finds nothing left to do."""
    from musicllm.vllm_server import vllm_env

    catalog, folder = captioned
    out = tmp_path / "ray.db"
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    command = [sys.executable, "-m", "serve.catalog.caption", str(folder / "manifest.jsonl"), "--out", str(out),
               "--checkpoint", str(serving_checkpoint), "--no-analysis", "--ray-workers", "2", "--batch-size", "2",
               *PROMPT_ARGS, "--engine", "vllm"]  # the last --engine wins over PROMPT_ARGS
    env = {**vllm_env(tmp_path), "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(ROOT)}
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert again.returncode == 0 and "0 to caption" in again.stdout  # nothing left: Ray is not even started
    with Catalog(out) as ray_catalog:
        assert ray_catalog.counts() == catalog.counts()
        errors = {t.name: t.error for t in ray_catalog.tracks(status="failed")}
        assert errors == {t.name: t.error for t in catalog.tracks(status="failed")}
        for track in catalog.tracks(status="done"):
            twin = next(t for t in ray_catalog.tracks() if t.name == track.name)
            assert [(c.window, c.text) for c in ray_catalog.captions(twin.id)] == \
                [(c.window, c.text) for c in catalog.captions(track.id)]
        assert len(ray_catalog.embeddings("audio-meanstd-v1")[0]) == 5
        (job,) = ray_catalog.jobs()
        assert (job["status"], job["done"], job["failed"]) == ("finished", 5, 5)
        assert (job["settings"]["engine"], job["settings"]["ray_workers"]) == ("vllm", "2")


def _done(path: Path) -> int:
    """Tracks done so far, read beside the writer (WAL); 0 while the database is being created."""
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
            return db.execute("SELECT COUNT(*) FROM tracks WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:  # no tracks table yet
        return 0


def test_shards_split_a_folder_and_merge_back(serving_checkpoint, tmp_path):
    write_library(tmp_path / "library")
    (tmp_path / "library" / "sub").mkdir()
    sf.write(tmp_path / "library" / "sub" / "piano.wav", chord(3.0), SAMPLE_RATE)
    (tmp_path / "library" / "._piano-1-0.wav").write_bytes(b"\0" * 4096)  # macOS metadata, not a track
    common = ["--checkpoint", str(serving_checkpoint), "--no-analysis", "--batch-size", "8", *PROMPT_ARGS]
    names = []
    for i in range(2):
        assert main([str(tmp_path / "library"), "--out", str(tmp_path / f"shard{i}.db"), "--shard", f"{i}/2", *common]) == 0
        with Catalog(tmp_path / f"shard{i}.db") as shard:
            names.append({t.name for t in shard.tracks()})
    every = {"piano-1-0.wav", "drums-1-0.flac", "piano-2-0.wav", "drums-2-0.flac", "long.ogg", "silent.wav",
             "corrupt.wav", "empty.flac", "sub/piano.wav"}  # not notes.txt, manifest.jsonl nor hidden files
    assert names[0] | names[1] == every and not names[0] & names[1] and names[0] and names[1]
    out = tmp_path / "all.db"
    assert main(["--merge", str(tmp_path / "shard0.db"), str(tmp_path / "shard1.db"), "--out", str(out),
                 "--export", str(tmp_path / "all.csv")]) == 0
    with Catalog(out) as catalog:
        assert catalog.counts() == {"pending": 0, "done": 6, "failed": 3}
        sub = next(t for t in catalog.tracks() if t.name == "sub/piano.wav")
        assert [c.text for c in catalog.captions(sub.id)] == [PIANO, PIANO]
        assert len(catalog.embeddings("audio-meanstd-v1")[0]) == 6


def test_bad_arguments_are_refused_with_a_message(tmp_path, capsys, monkeypatch):
    for argv, message in [([str(tmp_path), "--out", "x.db", "--shard", "2/2"], "--shard '2/2'"),
                          (["--out", "x.db"], "PATH_OR_MANIFEST is required"),
                          ([str(tmp_path), "--out", "x.db", "--export", "x.parquet"], "must end in .jsonl or .csv")]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.db")]) == 1
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    with monkeypatch.context() as patch:  # ray without its Data extra: said before any work
        patch.setitem(sys.modules, "ray.data", None)
        assert main([str(tmp_path), "--out", str(tmp_path / "y.db"), "--ray-workers", "2"]) == 1
        assert "--ray-workers needs Ray Data" in capsys.readouterr().err and not (tmp_path / "y.db").exists()
    manifest = tmp_path / "manifest.jsonl"
    for lines, message in [(['{"id": "a", "audio": "a.wav"}', "{not json", '{"id": "b"}'], "manifest.jsonl:2: not valid JSON"),
                           (['{"id": "a", "audio": "a.wav"}', '{"id": "b"}'], "record 2: a clip record needs an 'audio' path"),
                           (['["a.wav"]', '{"id": "b"}'], "manifest.jsonl:1: expected a JSON object")]:
        manifest.write_text("\n".join(lines) + "\n")
        assert main([str(manifest), "--out", str(tmp_path / "x.db")]) == 1
        assert message in capsys.readouterr().err
    from musicllm.cli import main as musicllm

    with pytest.raises(SystemExit) as exit_info:
        musicllm(["caption", "--help"])
    assert exit_info.value.code == 0 and "usage: musicllm caption" in capsys.readouterr().out
