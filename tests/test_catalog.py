"""The catalog database (serve.catalog.store) and the audio embeddings stored in it (musicllm.embeddings).

What users rely on: a track's results land all at once or not at all, never twice; failures keep
their reason; shards split tracks the same way on every machine; exports and merges keep
everything; embeddings put similar audio close together.
"""

from __future__ import annotations

import csv
import json
import sqlite3

import numpy as np
import pytest
from conftest import sine

from serve.catalog.store import Caption, Catalog, CatalogError, TrackSpec, shard_of


def _caption(window: int, text: str = "A calm piano piece.") -> Caption:
    return Caption(window, 0.0, 3.0, text, "test-model")


@pytest.fixture()
def catalog(tmp_path):
    with Catalog(tmp_path / "music.db") as catalog:
        catalog.add_tracks([
            TrackSpec("piano.wav", "/music/piano.wav", labels={"tempo_bpm": 72, "key": "C", "instruments": ["piano"]}),
            TrackSpec("drums.wav", "/music/drums.wav", metadata={"title": "Drums"}),
        ])
        yield catalog


def test_wal_mode_and_adding_tracks_again_keeps_them(catalog):
    assert catalog.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    piano = next(catalog.tracks())
    catalog.finish_track(piano.id, captions=[_caption(-1)])
    assert catalog.add_tracks([TrackSpec("piano.wav", "/elsewhere/piano.wav"), TrackSpec("new.wav", "/n.wav")]) == 1
    assert catalog.track(piano.id).status == "done" and catalog.track(piano.id).path == "/music/piano.wav"
    assert catalog.counts() == {"pending": 2, "done": 1, "failed": 0}
    assert [t.name for t in catalog.tracks(ids=[piano.id, 9999])] == ["piano.wav"]
    assert [t.name for t in catalog.tracks(status="pending", ids={piano.id})] == []


def test_finish_is_all_at_once_and_never_twice(catalog):
    piano, drums = catalog.tracks()
    job = catalog.start_job("caption", {"batch_size": 2})
    # A failure inside the transaction (here: one caption stored twice) leaves the track untouched.
    with pytest.raises(sqlite3.IntegrityError):
        catalog.finish_track(piano.id, captions=[_caption(0), _caption(0)], job_id=job)
    assert catalog.track(piano.id).status == "pending" and catalog.captions(piano.id) == []
    catalog.finish_track(piano.id, captions=[_caption(0), _caption(-1, "Summary.")], duration=3.0,
                         estimates={"tempo_bpm": 70.5, "mode": "major"}, embedding=np.ones(4), embedding_kind="k",
                         job_id=job)
    catalog.finish_track(piano.id, captions=[_caption(0, "again")], job_id=job)  # done already: ignored
    assert [c.text for c in catalog.captions(piano.id)] == ["A calm piano piece.", "Summary."]
    assert catalog.jobs()[0]["done"] == 1
    track = catalog.track(piano.id)
    # Labels win over estimates; estimates fill what labels lack; both stay apart.
    assert track.attributes["tempo_bpm"] == 72 and track.attributes["mode"] == "major"
    assert track.attributes["attribute_source"] == {"tempo_bpm": "label", "key": "label", "mode": "estimate",
                                                    "instruments": "label"}
    assert track.labels["tempo_bpm"] == 72 and track.estimates["tempo_bpm"] == 70.5
    ids, vectors = catalog.embeddings("k")
    assert ids.tolist() == [piano.id] and vectors.dtype == np.float32 and vectors.shape == (1, 4)


def test_failed_tracks_keep_their_reason_and_can_be_retried(catalog):
    piano, drums = catalog.tracks()
    catalog.fail_track(drums.id, "/music/drums.wav: corrupt audio data")
    catalog.fail_track(drums.id, "a second reason is ignored")
    assert catalog.track(drums.id).error == "/music/drums.wav: corrupt audio data"
    assert [t.name for t in catalog.tracks(status="pending")] == ["piano.wav"]
    assert catalog.retry_failed() == 1 and catalog.track(drums.id).status == "pending"
    with pytest.raises(CatalogError, match="status must be one of"):
        list(catalog.tracks(status="finished"))


def test_shards_are_stable_and_partition_the_tracks(catalog):
    names = [f"album/{i:03d}.flac" for i in range(200)]
    shards = [[n for n in names if shard_of(n, 3) == i] for i in range(3)]
    assert sorted(sum(shards, [])) == names and all(40 < len(s) < 100 for s in shards)
    # Pinned: a different value on another machine or Python version would split catalogs wrongly.
    assert [shard_of(n, 7) for n in ("a.wav", "b/c.flac", "proc-00042")] == [3, 4, 2]
    assert [t.name for t in catalog.tracks(shard=(shard_of("piano.wav", 2), 2))][:1] == ["piano.wav"]


def test_export_jsonl_and_csv(catalog, tmp_path):
    piano, drums = catalog.tracks()
    catalog.finish_track(piano.id, captions=[_caption(0, "Window, with a comma."), _caption(-1, "Sum.")],
                         duration=3.0, embedding=np.full(3, 0.5), embedding_kind="audio")
    catalog.fail_track(drums.id, "drums.wav: audio is silent")
    assert catalog.export(tmp_path / "out.jsonl", with_embeddings=True) == 2
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert records[0]["id"] == "piano.wav" and records[0]["summary"] == "Sum." and records[0]["key"] == "C"
    assert records[0]["captions"] == [{"window": 0, "start": 0.0, "end": 3.0, "text": "Window, with a comma."}]
    assert records[0]["embeddings"] == {"audio": [0.5, 0.5, 0.5]}
    assert records[1]["status"] == "failed" and records[1]["error"] == "drums.wav: audio is silent"
    assert records[1]["metadata"] == {"title": "Drums"}
    assert catalog.export(tmp_path / "out.csv") == 2
    rows = list(csv.DictReader(open(tmp_path / "out.csv", newline="")))
    assert rows[0]["summary"] == "Sum." and json.loads(rows[0]["instruments"]) == ["piano"]
    assert json.loads(rows[0]["captions"])[0]["text"] == "Window, with a comma."
    with pytest.raises(CatalogError, match="must end in .jsonl or .csv"):
        catalog.export(tmp_path / "out.txt")


def test_merge_joins_shards_by_name(catalog, tmp_path):
    piano, drums = catalog.tracks()
    catalog.finish_track(piano.id, captions=[_caption(-1, "From shard A.")], embedding=np.ones(2), embedding_kind="k")
    with Catalog(tmp_path / "b.db") as other:
        other.add_tracks([TrackSpec("drums.wav", "/music/drums.wav"), TrackSpec("bass.wav", "/music/bass.wav")])
        drums_b = next(other.tracks())
        other.finish_track(drums_b.id, captions=[_caption(-1, "From shard B.")], embedding=np.zeros(2),
                           embedding_kind="k")
    assert catalog.merge(tmp_path / "b.db") == {"added": 1, "updated": 1}
    assert catalog.merge(tmp_path / "b.db") == {"added": 0, "updated": 0}  # merging again changes nothing
    summaries = {t.name: [c.text for c in catalog.captions(t.id)] for t in catalog.tracks()}
    assert summaries == {"piano.wav": ["From shard A."], "drums.wav": ["From shard B."], "bass.wav": []}
    assert catalog.counts() == {"pending": 1, "done": 2, "failed": 0}
    assert len(catalog.embeddings("k")[0]) == 2


def test_refuses_files_that_are_not_catalogs(tmp_path):
    (tmp_path / "notes.db").write_text("not a database, just text " * 100)
    with pytest.raises(CatalogError, match="notes.db: not a catalog database"):
        Catalog(tmp_path / "notes.db")
    with Catalog(tmp_path / "old.db") as old:
        old.db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(CatalogError, match="schema version 0"):
        Catalog(tmp_path / "old.db")


def test_audio_embeddings(tiny_model):
    from musicllm.embeddings import EMBEDDING_KIND, Standardizer, audio_embedding, audio_embeddings, embedding_dim

    model, processor = tiny_model
    low, low_long, high = sine(3.0, freq=220.0), sine(23.0, freq=220.0), sine(3.0, freq=1760.0)
    vectors = audio_embeddings(model, processor, [low, low_long, high])
    assert EMBEDDING_KIND and vectors.shape == (3, embedding_dim(model.config)) == (3, 2 * model.config.audio_hidden_size)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The batch form equals one clip at a time; a long track (3 windows) stays close to its short self.
    assert np.allclose(audio_embedding(model, processor, high), vectors[2], atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] and similarity[0, 1] > 0.9
    standardised = Standardizer.fit(vectors)(vectors)
    assert np.allclose(np.linalg.norm(standardised, axis=1), 1.0, atol=1e-5)
    restored = Standardizer.from_dict(json.loads(json.dumps(Standardizer.fit(vectors).to_dict())))
    assert np.allclose(restored(vectors), standardised, atol=1e-6)
    with pytest.raises(ValueError, match=r"clips\[0\]: must be a non-empty 1-D array"):
        audio_embeddings(model, processor, [np.zeros(0, np.float32)])
