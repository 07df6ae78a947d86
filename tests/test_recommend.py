"""Recommendations: only catalog tracks, grounded reasons, the command and POST /v1/recommend.

The catalog is test_search's labelled one; the LLM is the session's serving checkpoint (a tiny
model overfit to a few sentences), so its reasons are short music sentences, checked here for
what the grounding rule guarantees whatever the model says.
"""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
import soundfile as sf

from serving_fixtures import SAMPLE_RATE, chord, clicks
from test_search import TRACKS, build_catalog

from serve.catalog.filters import Filters

CATALOG_TITLES = set(TRACKS)


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory, transformers_engine):
    engine = transformers_engine
    return build_catalog(tmp_path_factory.mktemp("catalog") / "music.db", engine.model, engine.processor)


def wav_bytes(clip) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, clip, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def gateway(catalog_path, transformers_engine):
    """The real gateway app with the recommend route, served by uvicorn on 127.0.0.1."""
    from serve.gateway.api import create_app, serve_in_thread

    app = create_app(transformers_engine, api_key="secret", catalog=catalog_path)
    with serve_in_thread(app) as url:
        with httpx.Client(base_url=url, timeout=120, headers={"Authorization": "Bearer secret"}) as client:
            yield client


def test_grounding_drops_invented_names_and_keeps_music_words():
    from serve.catalog.recommend import grounded

    text = ('A calm piano piece in C major. It sounds like Bohemian Rhapsody by Queen. Try "Blue Train" next. '
            "Fans of Garage Fury will love it. Great for studying!")
    assert grounded(text, {"Moonlit Study"}, {"Garage Fury", "Moonlit Study"}) == \
        "A calm piano piece in C major. Great for studying!"
    assert grounded("Moonlit Study is soft and slow.", {"Moonlit Study"}, set()) == "Moonlit Study is soft and slow."
    facts = {"tempo_bpm": 70.0, "key": "C", "mode": "major"}
    assert grounded("About 72 BPM. About 160 BPM, very fast. It is in C major. It is in A minor.", set(), set(),
                    facts) == "About 72 BPM. It is in C major."
    # broken output of a small model (seen from the default model): not sentences, dropped
    assert grounded("-string guitar, drums; Structure:00–0:05–0:05–0:05–0:05–0:12. It is calm.", set(), set()) == \
        "It is calm."
    assert grounded("It moves 0:05–0:05–0:05–0:05 in 4/4/4/4.", set(), set()) == ""


def test_recommendations_contain_only_catalog_tracks(catalog_path, transformers_engine):
    from musicllm.embeddings import audio_embedding
    from serve.catalog.recommend import Recommender
    from serve.catalog.search import Searcher

    engine = transformers_engine
    clip = clicks(3.0, 170)
    recommender = Recommender(Searcher(catalog_path), engine)
    picks = recommender.recommend(clip, audio_embedding(engine.model, engine.processor, clip), k=3)
    assert {p.title for p in picks} == {"Garage Fury", "Night Drive", "Punk Minute"}
    for pick in picks:
        assert pick.reason and pick.similarity is not None
        others = CATALOG_TITLES - {pick.title}
        assert not any(title in pick.reason for title in others)
    # The LLM's text is checked sentence by sentence; an invented name never gets through.
    invented = recommender.picks(recommender.candidates(audio_embedding(engine.model, engine.processor, clip), k=2),
                                 ['You will love "Stairway Forever" by The Nobodies.', "Also try Punk Minute."])
    assert all("Stairway" not in p.reason and "Nobodies" not in p.reason for p in invented)
    assert invented[0].reason.startswith("Recommended because it is among the catalog's nearest tracks to your song")
    # A few words are no reason: the facts say why instead.
    short = recommender.picks(recommender.candidates(audio_embedding(engine.model, engine.processor, clip), k=1),
                              ["It is sad."])
    assert short[0].reason.startswith("Recommended because it is among the catalog's nearest tracks to your song")
    recommender.searcher.close()


def test_the_song_itself_and_a_named_track_are_left_out(catalog_path, transformers_engine):
    from musicllm.embeddings import audio_embedding
    from serve.catalog.recommend import Recommender
    from serve.catalog.search import Searcher

    engine = transformers_engine
    recommender = Recommender(Searcher(catalog_path))  # no engine: reasons from the facts
    picks = recommender.recommend(track_name="music/garage-fury.wav", k=2)
    assert "Garage Fury" not in {p.title for p in picks} and len(picks) == 2
    assert all(p.reason.startswith("Recommended because") for p in picks)
    for pick in picks:  # the reason states the pick's stored facts, in the catalog's words
        a = pick.attributes
        assert f"{a['genre']}, {a['mood']}, {a['key']} {a['mode']}, {a['tempo_bpm']:.0f} BPM, {a['time_signature']}" \
            in pick.reason, pick.reason
    clip = clicks(3.0, 168)
    picks = recommender.recommend(audio=audio_embedding(engine.model, engine.processor, clip), file_hash="hash-Night Drive",
                                  k=7)
    assert "Night Drive" not in {p.title for p in picks}
    with pytest.raises(LookupError, match="no track named 'nope'"):
        recommender.recommend(track_name="nope")
    recommender.searcher.close()


def test_a_description_alone_gets_catalog_tracks_with_reasons_from_their_facts(catalog_path, transformers_engine):
    """"calm piano for studying", no song: text search over the stored captions and attributes;
    the LLM is asked (text only) about each pick's facts, and its text goes through the same check."""
    from serve.catalog.recommend import Recommender
    from serve.catalog.search import Searcher

    recommender = Recommender(Searcher(catalog_path), transformers_engine)
    picks = recommender.recommend(text="calm piano for studying", k=3)
    assert picks[0].title == "Moonlit Study" and {p.title for p in picks} <= CATALOG_TITLES and len(picks) == 3
    for pick in picks:
        assert pick.reason and pick.similarity is None
        assert not any(title in pick.reason for title in CATALOG_TITLES - {pick.title})
    request = recommender.requests(picks[:1], None, text="calm piano for studying")[0]
    assert request.clips == [] and "I am looking for: calm piano for studying" in request.messages[-1]["content"]
    assert "- description: A calm, slow solo piano piece in C major" in request.messages[-1]["content"]
    minor = recommender.recommend(text="slow piano", k=2, filters=Filters(mode="minor"), explain=False)
    assert [p.title for p in minor] == ["Quiet Keys", "Blue Smoke"]  # the minor-key piano tracks
    assert minor[0].reason.startswith("Recommended because its stored description and attributes match")
    with pytest.raises(ValueError, match="give a song .* or a description"):
        recommender.recommend(text="  ")
    recommender.searcher.close()


def test_command_line_takes_a_description_alone(catalog_path, gateway, capsys):
    """`musicllm recommend "calm piano" --catalog music.db`: with --no-explain nothing but the
    catalog search runs (no torch); with --url the gateway answers the same description."""
    import subprocess
    import sys

    from serve.recommend_cli import main

    code = ("import sys; from serve.recommend_cli import main; code = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code, "calm piano for studying", "--catalog", str(catalog_path),
                             "--no-explain", "--k", "2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1. Moonlit Study\n   Recommended because its stored description")
    url = str(gateway.base_url).rstrip("/") + "/v1"
    assert main(["calm piano for studying", "--url", url, "--api-key", "secret", "--k", "2", "--json"]) == 0
    picks = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert picks[0]["title"] == "Moonlit Study" and all(p["reason"] for p in picks)
    for argv, message in ([["--catalog", str(catalog_path)], "and/or a DESCRIPTION"],
                          [["calm", "--query", "piano", "--catalog", str(catalog_path)], "not both"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err


def test_command_line_prints_only_catalog_titles(catalog_path, serving_checkpoint, tmp_path, capsys):
    from serve.recommend_cli import main

    song = tmp_path / "song.wav"
    song.write_bytes(wav_bytes(chord(3.0, (262.0, 330.0, 392.0))))
    assert main(["--audio", str(song), "--catalog", str(catalog_path), "--checkpoint", str(serving_checkpoint),
                 "--k", "2", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    picked = [line.split(". ", 1)[1].split("  (similarity")[0] for line in lines if line[:1].isdigit()]
    assert len(picked) == 2 and set(picked) <= CATALOG_TITLES and picked[0] == "Moonlit Study"
    assert main(["--audio", str(tmp_path / "missing.wav"), "--catalog", str(catalog_path),
                 "--checkpoint", str(serving_checkpoint)]) == 2
    assert "missing.wav" in capsys.readouterr().err


def test_command_line_asks_a_running_gateway_with_url(gateway, tmp_path, capsys):
    """--url: the gateway embeds, searches and explains; the command prints its catalog picks,
    and says what the gateway refused (here: a wrong key; a bad filter)."""
    from serve.recommend_cli import main

    song = tmp_path / "drums.wav"
    song.write_bytes(wav_bytes(clicks(3.0, 170)))
    url = str(gateway.base_url).rstrip("/") + "/v1"
    assert main(["--audio", str(song), "--url", url, "--api-key", "secret", "--k", "2", "--json"]) == 0
    picks = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["title"] for p in picks][0] == "Garage Fury" and {p["title"] for p in picks} <= CATALOG_TITLES
    assert all(p["reason"] for p in picks)
    # A format the gateway does not take as it is (AIFF) goes as FLAC: the same song, the same pick.
    aiff = tmp_path / "drums.aiff"
    sf.write(aiff, sf.read(song)[0], sf.info(song).samplerate, format="AIFF")
    assert main(["--audio", str(aiff), "--url", url, "--api-key", "secret", "--k", "2", "--json"]) == 0
    assert [json.loads(line)["title"] for line in capsys.readouterr().out.splitlines()][0] == "Garage Fury"
    assert main(["--track", "music/moonlit-study.wav", "--url", url, "--api-key", "secret", "--mode", "minor",
                 "--k", "3", "--json"]) == 0
    picks = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert picks and {p["attributes"]["mode"] for p in picks} == {"minor"}  # the named track itself is major
    assert main(["--audio", str(song), "--url", url, "--api-key", "wrong"]) == 2
    assert "answered 401: Incorrect or missing API key" in capsys.readouterr().err
    assert main(["--audio", str(song), "--url", "http://127.0.0.1:9/v1"]) == 2
    assert "cannot reach the gateway at http://127.0.0.1:9/v1" in capsys.readouterr().err


def test_no_explain_loads_only_the_encoder(catalog_path, serving_checkpoint, tmp_path):
    """Without reasons from the LLM, the command loads the frozen encoder alone (no LLM, no peft,
    no tokenizer), and its windows and vectors are the full model's."""
    import subprocess
    import sys

    import numpy as np

    from musicllm.checkpoint import load_checkpoint
    from musicllm.embeddings import AudioEncoder, audio_embedding

    clip = clicks(12.0, 150)  # two windows
    model, processor = load_checkpoint(serving_checkpoint)
    encoder = AudioEncoder.from_checkpoint(serving_checkpoint)
    assert np.allclose(audio_embedding(encoder, encoder.processor, clip), audio_embedding(model, processor, clip), atol=1e-6)
    clips = [clip, chord(0.2), chord(10.0)]  # windows of three lengths, zero-padded
    ours, theirs = encoder.processor.audio_windows(clips), processor.audio_windows(clips)
    assert all(np.array_equal(ours[k].numpy(), theirs[k].numpy()) for k in ("audio_values", "audio_lens"))
    song = tmp_path / "piano.wav"
    song.write_bytes(wav_bytes(chord(3.0, (262.0, 330.0, 392.0))))
    code = ("import sys; from serve.recommend_cli import main; code = main(sys.argv[1:]); "
            "assert not {'peft', 'musicllm.modeling', 'musicllm.processing'} & set(sys.modules), 'LLM or tokenizer loaded'; "
            "sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code, "--audio", str(song), "--catalog", str(catalog_path),
                             "--checkpoint", str(serving_checkpoint), "--no-explain", "--k", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1. Moonlit Study")


def test_route_needs_the_api_key(gateway):
    reply = gateway.post("/v1/recommend", json={"track": "music/moonlit-study.wav"}, headers={"Authorization": ""})
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"


def test_route_recommends_from_a_description_alone(gateway):
    reply = gateway.post("/v1/recommend", json={"query": "calm piano for studying", "k": 2})
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert data[0]["title"] == "Moonlit Study" and {p["title"] for p in data} <= CATALOG_TITLES
    assert all(p["reason"] and p["similarity"] is None for p in data)
    narrowed = gateway.post("/v1/recommend", json={"query": "slow piano", "k": 2, "filters": {"mode": "minor"},
                                                   "explain": False}).json()["data"]
    assert [p["title"] for p in narrowed] == ["Quiet Keys", "Blue Smoke"]
    # Filters take the names the picks' attributes have (the corpus's, from the manifest to the page).
    rock = gateway.post("/v1/recommend", json={"query": "fast", "k": 5, "explain": False,
                                               "filters": {"genre": "rock", "time_signature": "4/4"}}).json()["data"]
    assert {p["title"] for p in rock} == {"Garage Fury", "Punk Minute"}
    assert all(p["attributes"]["genre"] == "rock" and p["attributes"]["time_signature"] == "4/4" for p in rock)


def test_route_recommends_catalog_tracks_with_reasons(gateway):
    audio = base64.b64encode(wav_bytes(clicks(3.0, 170))).decode()
    reply = gateway.post("/v1/recommend", json={"input_audio": {"data": audio, "format": "wav"}, "k": 2,
                                                "filters": {"mode": "minor"}})
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert [p["title"] for p in data] == ["Garage Fury", "Night Drive"]  # only the minor-key drum tracks
    assert all(p["reason"] and p["attributes"]["mode"] == "minor" for p in data)
    by_name = gateway.post("/v1/recommend", json={"track": "music/moonlit-study.wav", "k": 1})
    assert by_name.status_code == 200 and by_name.json()["data"][0]["title"] != "Moonlit Study"


@pytest.mark.parametrize("body, status, param, fragment", [
    ({"k": 3}, 400, "query", "and/or 'query' (a description"),
    ({"query": "   "}, 400, "query", "and/or 'query' (a description"),
    ({"query": 7}, 400, "query", "'query' must be str"),
    ({"track": "music/moonlit-study.wav", "input_audio": {"data": "AAAA", "format": "wav"}}, 400, "track",
     "at most one song"),
    ({"input_audio": {"data": "!!not base64!!", "format": "wav"}}, 400, "request.input_audio.data", "base64"),
    ({"input_audio": {"data": base64.b64encode(b"RIFF0000WAVEjunk").decode(), "format": "wav"}}, 400, None, "input_audio"),
    ({"input_audio": {"data": "AAAA", "format": "midi"}}, 400, "request.input_audio.format", "unsupported audio format"),
    ({"track": "music/moonlit-study.wav", "k": 0}, 400, "k", "'k' must be an integer between 1 and 50"),
    ({"track": "music/moonlit-study.wav", "filters": {"colour": "blue"}}, 400, "filters.colour", "unknown filter"),
    ({"track": "music/moonlit-study.wav", "filters": {"metre": "3/4"}}, 400, "filters.metre",
     "unknown filter; use genre, instruments, key, mode, mood, tempo, time_signature"),
    ({"track": "music/moonlit-study.wav", "filters": {"tempo": "fast"}}, 400, "filters", "expected a BPM range"),
    ({"track": "nope"}, 404, "track", "no track named 'nope' in the catalog"),
    ({"query": "calm piano " * 200_000}, 400, "query", "'query' is 2,200,000 characters long; the limit is 2,000"),
    ({"track": "x" * 5000}, 400, "track", "the limit is 2,000"),
    ([1, 2], 400, None, "must be a JSON object"),
])
def test_route_refuses_bad_input_with_openai_errors(gateway, catalog_path, body, status, param, fragment):
    reply = gateway.post("/v1/recommend", json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert fragment in error["message"] and error["type"] == "invalid_request_error"
    assert str(catalog_path.parent) not in error["message"]  # the server's files are nobody's business
    assert "messages" not in error["message"]  # fields this client never sent
    if param:
        assert error["param"] == param


def test_web_chat_answers_recommendation_requests_from_the_catalog(gateway, transformers_engine):
    """The web page's hook: "recommend something like this" goes to /v1/recommend, not the LLM chat."""
    import asyncio

    import gradio as gr

    from serve.gateway.api import create_app, serve_in_thread
    from serve.web.recommend_tab import asks_for_recommendations
    from serve.web.app import Gateway

    assert asks_for_recommendations("Recommend something similar") and not asks_for_recommendations("What key?")
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_bytes(clicks(3.0, 170))).decode(),
                                                   "format": "wav"}}
    url = str(gateway.base_url).rstrip("/")
    answer = asyncio.run(Gateway(f"{url}/v1", api_key="secret").recommend(part, "Recommend something similar", k=2))
    lines = answer.splitlines()
    assert len(lines) == 2 and lines[0].startswith("1. **Garage Fury** — ")
    # no clip uploaded: "recommend calm piano for studying" searches the catalog by its words
    answer = asyncio.run(Gateway(f"{url}/v1", api_key="secret").recommend(None, "Recommend calm piano for studying", k=2))
    lines = answer.splitlines()
    assert len(lines) == 2 and lines[0].startswith("1. **Moonlit Study** — ")
    with serve_in_thread(create_app(transformers_engine)) as url:  # a gateway without a catalog
        with pytest.raises(gr.Error, match="no catalog to recommend from"):
            asyncio.run(Gateway(f"{url}/v1").recommend(part, "Recommend something similar"))


def test_gateway_with_a_missing_catalog_fails_at_start(tmp_path, transformers_engine):
    from serve.gateway.api import create_app
    from serve.catalog.store import CatalogError

    with pytest.raises(CatalogError, match="missing.db: no such catalog"):
        create_app(transformers_engine, catalog=tmp_path / "missing.db")


def test_recommend_similar_in_the_web_chat(gateway, tmp_path):
    """In a real Chromium: upload a clip, click "Recommend similar": the chat lists catalog tracks."""
    from playwright.sync_api import expect, sync_playwright

    from musicllm.vllm_server import free_port
    from serve.web.app import RECOMMEND_PROMPT, build_app, launch
    from test_web import CHROMIUM_ARGS, upload

    song = tmp_path / "drums.wav"
    song.write_bytes(wav_bytes(clicks(3.0, 170)))
    app = build_app(str(gateway.base_url).rstrip("/") + "/v1", api_key="secret")
    try:
        url = launch(app, "127.0.0.1", free_port())
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)
            page.goto(url)
            upload(page, song)
            expect(page.locator("#analysis")).to_contain_text("drums.wav")
            page.locator("#recommend").click()
            expect(page.locator("#chat [data-testid=user]")).to_have_text([RECOMMEND_PROMPT])
            bot = page.locator("#chat [data-testid=bot]")
            expect(bot).to_have_count(1)
            expect(bot.last).to_contain_text("Garage Fury — ")
            # A numbered markdown list: the page shows "Title — reason" per item.
            listed = [line.split(" — ")[0].strip() for line in bot.last.inner_text().splitlines() if " — " in line]
            assert len(listed) == 5 and listed[0] == "Garage Fury" and set(listed) <= CATALOG_TITLES
            browser.close()
    finally:
        app.close()


def test_encoder_alone_from_a_checkpoint_with_a_transformers_encoder(tmp_path):
    """A MERT-like (HuBERT) encoder: its saved weights are loaded, never random ones."""
    import numpy as np
    from safetensors.torch import load_file, save_file

    from musicllm.builders import build_from_backbones
    from musicllm.checkpoint import save_checkpoint
    from musicllm.embeddings import AudioEncoder, audio_embedding
    from test_builders import save_encoder, save_llm

    model, processor = build_from_backbones(save_encoder(tmp_path / "enc", "hubert"), str(save_llm(tmp_path / "llm", "qwen2")),
                                            stack_factor=4)
    save_checkpoint(model.eval(), processor, tmp_path / "ckpt", export=False)
    encoder = AudioEncoder.from_checkpoint(tmp_path / "ckpt")
    clip = chord(2.0)
    assert np.allclose(audio_embedding(encoder, encoder.processor, clip), audio_embedding(model, processor, clip), atol=1e-5)
    weights = tmp_path / "ckpt" / "model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if not k.startswith("audio_tower.")}, weights)
    with pytest.raises(FileNotFoundError, match="lacks the encoder weights audio_tower."):
        AudioEncoder.from_checkpoint(tmp_path / "ckpt")
