"""The web demo as a user meets it: a real headless Chromium on the Gradio page, which talks over
HTTP to a real gateway (uvicorn, transformers engine on the overfit serving checkpoint).

Expected answers come from the same gateway through the `openai` client, so the chat must show
exactly what the API answers for that conversation (greedy decoding makes it repeatable). The
gateway's clip limit is 5 s here, the page's 600 s, so a 7 s clip passes the page's analysis and
is refused by the gateway: its 400 message must reach the user.
"""

from __future__ import annotations

import base64
import io
import re

import httpx

import numpy as np
import openai
import pytest
import soundfile as sf
from playwright.sync_api import expect, sync_playwright

from musicllm.vllm_server import free_port
from serve.gateway.openai_format import clip_part
from serve.web.app import CAPTION_PROMPT, build_app, launch, openai_messages
from serve.web.recommend_tab import recommend_body
from eval.follow import kinds_mentioned, responds
from serving_fixtures import FOLLOW_UP, SERVING_CLIPS, clicks
from test_search import TRACKS, build_catalog

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WAIT_MS = 60_000  # first analysis of a process compiles librosa's numba kernels (~5 s); 2 busy cores
GATEWAY_MAX_SECONDS = 5.0
MAX_UPLOAD = "1mb"  # what the page accepts; a 40 s WAV at 16 kHz is 1.3 MB


@pytest.fixture(scope="module")
def gateway_url(transformers_engine, tmp_path_factory):
    """The gateway, with test_search's labelled catalog behind POST /v1/recommend."""
    from serve.gateway.api import create_app, serve_in_thread
    from serve.gateway.openai_format import Limits

    engine = transformers_engine
    catalog = build_catalog(tmp_path_factory.mktemp("catalog") / "music.db", engine.model, engine.processor)
    app = create_app(engine, limits=Limits(max_audio_seconds=GATEWAY_MAX_SECONDS), catalog=catalog)
    with serve_in_thread(app, "127.0.0.1", 0) as url:
        yield url + "/v1"


@pytest.fixture(scope="module")
def web_url(gateway_url):
    app = build_app(gateway_url)
    try:
        yield launch(app, "127.0.0.1", free_port(), max_file_size=MAX_UPLOAD)
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, web_url):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)  # expect's own default is 5 s
    page.goto(web_url)
    yield page
    context.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("clips")
    paths = {"piano": folder / "piano.wav", "long": folder / "seven-seconds.wav", "broken": folder / "broken.wav",
             "big": folder / "big.wav"}
    sf.write(paths["big"], clicks(40.0, 100), 16000, subtype="PCM_16")
    sf.write(paths["piano"], SERVING_CLIPS["piano"], 16000, subtype="PCM_16")
    sf.write(paths["long"], clicks(7.0, 120), 16000, subtype="PCM_16")
    paths["broken"].write_bytes(b"RIFF\x10\x00\x00\x00WAVEthis is not audio" * 8)
    return paths


def api_answer(gateway_url: str, turns: list[dict], clip) -> str:
    """What the gateway answers for this chat, asked directly with the official client."""
    client = openai.OpenAI(base_url=gateway_url, api_key="none")
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(model=model, messages=openai_messages(turns, clip_part(clip)),
                                           max_tokens=256, temperature=0.0)
    return reply.choices[0].message.content


def upload(page, path) -> None:
    page.locator("#clip input[type=file]").set_input_files(str(path))


def ask(page, question: str) -> None:
    box = page.locator("#question textarea")
    box.fill(question)
    box.press("Enter")


def watch_bot_messages(page) -> None:
    """Record every text the chat's answers show, to tell a streamed answer from one that
    appears whole."""
    page.evaluate("""() => {
        window.seenAnswers = [];
        new MutationObserver(() => {
            document.querySelectorAll('#chat [data-testid=bot]').forEach(m => window.seenAnswers.push(m.innerText.trim()));
        }).observe(document.querySelector('#chat'), {subtree: true, childList: true, characterData: true});
    }""")


def test_upload_analysis_then_a_streamed_chat_over_two_turns_and_caption_this(page, clips, gateway_url):
    upload(page, clips["piano"])
    panel = page.locator("#analysis")
    expect(panel).to_contain_text("piano.wav")
    expect(panel).to_contain_text("Key")
    expect(panel).to_contain_text("LUFS")
    expect(page.locator("#waveform img")).to_be_visible()
    expect(page.locator("#chroma img")).to_be_visible()

    bot, user = page.locator("#chat [data-testid=bot]"), page.locator("#chat [data-testid=user]")
    first = api_answer(gateway_url, [{"role": "user", "content": "What is playing?"}], clips["piano"])
    watch_bot_messages(page)
    ask(page, "What is playing?")
    expect(bot).to_have_count(1)
    expect(bot.last).to_have_text(first)
    assert responds("instruments", first) and "piano" in first, first  # what the user reads answers the question
    expect(page.locator("#question textarea")).to_have_value("")
    seen = page.evaluate("window.seenAnswers")
    assert any(text and text != first and first.startswith(text) for text in seen), \
        f"the answer appeared whole, not streamed: {seen}"

    history = [{"role": "user", "content": "What is playing?"}, {"role": "assistant", "content": first},
               {"role": "user", "content": FOLLOW_UP}]
    second = api_answer(gateway_url, history, clips["piano"])
    ask(page, FOLLOW_UP)
    expect(bot).to_have_count(2)
    expect(bot.last).to_have_text(second)
    assert responds("tempo", second) and "key" not in kinds_mentioned(second) and second != first, second
    expect(user).to_have_text(["What is playing?", FOLLOW_UP])

    page.locator("#clear").click()
    expect(bot).to_have_count(0)
    caption = api_answer(gateway_url, [{"role": "user", "content": CAPTION_PROMPT}], clips["piano"])
    page.locator("#caption").click()
    expect(user).to_have_text([CAPTION_PROMPT])
    expect(bot).to_have_count(1)
    expect(bot.last).to_have_text(caption)


def test_the_example_clip_is_analysed_with_its_tempo_and_key(page):
    ask(page, "What is playing?")  # no clip yet: a hint, not a request
    expect(page.locator("[data-testid=toast-body]").first).to_contain_text("Upload or record a clip first")
    page.get_by_text("c-major-arpeggio-120bpm.wav").click()
    panel = page.locator("#analysis")
    expect(panel).to_contain_text("120 BPM")
    expect(panel).to_contain_text("C major")
    expect(panel).to_contain_text("4/4")


def test_a_corrupt_file_gets_a_visible_error_naming_it(page, clips):
    upload(page, clips["broken"])
    toast = page.locator("[data-testid=toast-body]")
    expect(toast.first).to_contain_text("broken.wav")
    expect(page.locator("#analysis")).to_contain_text("Cannot use this clip")
    expect(page.locator("#analysis")).to_contain_text("broken.wav")
    # No red "Error" badge over the panels (a gr.Error marks every output of the event).
    for panel in ("#waveform", "#chroma"):
        expect(page.locator(panel).last).not_to_contain_text("Error")  # .last: the Audio player has a #waveform too
    expect(page.locator("#analysis")).to_have_text(re.compile(r"^\s*Cannot use this clip\. broken\.wav: [^\n]*\)\s*$"))
    ask(page, "What is playing?")
    expect(toast.last).to_contain_text("broken.wav")
    expect(page.locator("#chat [data-testid=bot]")).to_have_count(0)


def test_the_gateways_refusal_is_shown_and_the_chat_stays_usable(page, clips):
    upload(page, clips["long"])
    expect(page.locator("#analysis")).to_contain_text("seven-seconds.wav")
    ask(page, "What is playing?")
    toast = page.locator("[data-testid=toast-body]")
    expect(toast.first).to_contain_text("400")
    expect(toast.first).to_contain_text(f"the limit is {GATEWAY_MAX_SECONDS:g} s")
    expect(page.locator("#chat [data-testid=bot]")).to_have_count(0)
    expect(page.locator("#question textarea")).to_have_value("What is playing?")  # back, to send again

    page.locator("#clip button[aria-label=Clear]").click()  # the upload box returns in place of the player
    upload(page, clips["piano"])
    expect(page.locator("#analysis")).to_contain_text("piano.wav")
    ask(page, "What is playing?")
    expect(page.locator("#chat [data-testid=bot]")).to_have_count(1)


def test_an_upload_over_the_size_limit_is_refused_in_the_page(page, clips):
    upload(page, clips["big"])
    toast = page.locator("[data-testid=toast-body]").first
    expect(toast).to_contain_text("exceed the maximum allowed size of 1.0 Mb")
    expect(toast).to_contain_text("big.wav")
    page.wait_for_timeout(1000)
    expect(page.locator("#analysis")).not_to_contain_text("big.wav")


def test_with_an_api_key_the_page_and_its_gradio_api_need_the_key(gateway_url, browser):
    """The page holds the gateway's key: whoever reaches it must show the key too, in the browser
    and through gradio_client (which used to call /ask with no credentials at all)."""
    from gradio_client import Client

    app = build_app(gateway_url, api_key="page-secret")
    url = launch(app, "127.0.0.1", free_port(), max_file_size=MAX_UPLOAD, api_key="page-secret")
    try:
        for route in ("/config", "/gradio_api/info"):
            assert httpx.get(url + route, timeout=30).status_code == 401
        assert httpx.post(url + "/gradio_api/call/ask", json={"data": []}, timeout=30).status_code == 401
        with pytest.raises(Exception, match="credentials were not provided"):
            Client(url, verbose=False)
        with pytest.raises(ValueError, match="Could not login"):
            Client(url, auth=("someone", "wrong"), verbose=False)
        assert "/ask" in Client(url, auth=("someone", "page-secret"), verbose=False).view_api(
            print_info=False, return_format="dict")["named_endpoints"]

        page = browser.new_page()
        page.goto(url)
        expect(page.get_by_text("sign in with any user name and the key as the password")).to_be_visible(timeout=WAIT_MS)
        page.locator("input[type=text]").first.fill("someone")
        page.locator("input[type=password]").fill("page-secret")
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_role("button", name="Caption this")).to_be_visible(timeout=WAIT_MS)
        page.close()
    finally:
        app.close()


def test_the_page_alone_stops_on_ctrl_c_even_started_with_sigint_ignored(gateway_url):
    """`python -m serve.web.app &` in a script inherits SIGINT ignored; it used to run on after Ctrl-C."""
    import signal
    import subprocess
    import sys
    import time

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "serve.web.app", "--gateway", gateway_url, "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()


def test_clips_go_as_they_are_unless_too_big_or_in_a_format_the_gateway_does_not_read(tmp_path):
    clip = SERVING_CLIPS["piano"]
    small = tmp_path / "small.wav"
    sf.write(small, clip, 16000, subtype="PCM_16")
    part = clip_part(small)["input_audio"]
    assert part["format"] == "wav" and base64.b64decode(part["data"]) == small.read_bytes()

    for name, fmt in [("stereo.wav", "WAV"), ("clip.aiff", "AIFF")]:
        path = tmp_path / name
        sf.write(path, np.stack([clip, clip], axis=1), 44100, format=fmt, subtype="PCM_16")
        part = clip_part(path, max_bytes=1000)["input_audio"]
        audio, rate = sf.read(io.BytesIO(base64.b64decode(part["data"])))
        assert part["format"] == "flac" and rate == 24000 and audio.ndim == 1
        assert len(audio) / rate == pytest.approx(len(clip) / 44100, abs=0.01)


def gateway_picks(gateway_url: str, body: dict) -> httpx.Response:
    """What POST /v1/recommend answers for `body`, asked directly."""
    return httpx.post(f"{gateway_url}/recommend", json=body, timeout=120)


def shown_picks(page) -> list[str]:
    return page.locator("#rec-picks li strong").all_inner_texts()


def test_the_recommend_tab_shows_catalog_picks_for_a_song_with_filters_and_reasons(page, gateway_url, tmp_path):
    song = tmp_path / "drums.wav"
    sf.write(song, clicks(3.0, 170), 16000, subtype="PCM_16")
    page.get_by_role("tab", name="Recommend").click()
    page.locator("#rec-go").click()  # nothing to go on: a hint, no request
    expect(page.locator("[data-testid=toast-body]").first).to_contain_text("Upload a song you like or describe")

    page.locator("#rec-clip input[type=file]").set_input_files(str(song))
    page.locator("#rec-go").click()
    expected = gateway_picks(gateway_url, recommend_body(clip_part(song), "", 5)).json()["data"]
    expect(page.locator("#rec-picks li")).to_have_count(5)
    assert shown_picks(page) == [p["title"] for p in expected] and set(shown_picks(page)) <= set(TRACKS)
    assert shown_picks(page)[0] == "Garage Fury"
    for pick in expected:  # each pick with the catalog's attributes and the gateway's (grounded) reason
        item = page.locator("#rec-picks li").filter(has_text=pick["title"])
        expect(item).to_contain_text(pick["reason"])
        expect(item).to_contain_text(f"{pick['attributes']['tempo_bpm']:.0f} BPM")
        expect(item).to_contain_text(pick["attributes"]["genre"])

    page.locator("#rec-tempo input, #rec-tempo textarea").fill("160-200")
    page.locator("#rec-genre input, #rec-genre textarea").fill("rock")
    page.locator("#rec-go").click()
    expect(page.locator("#rec-picks li")).to_have_count(2)
    assert shown_picks(page) == ["Garage Fury", "Punk Minute"]
    page.locator("#rec-mode input").click()
    page.get_by_role("option", name="minor").click()
    page.locator("#rec-go").click()
    expect(page.locator("#rec-picks li")).to_have_count(1)
    assert shown_picks(page) == ["Garage Fury"]  # E minor; Punk Minute is in A major

    page.locator("#rec-tempo input, #rec-tempo textarea").fill("fast")  # the gateway's 400 names the field
    page.locator("#rec-go").click()
    toast = page.locator("[data-testid=toast-body]")
    expect(toast.last).to_contain_text("400")
    expect(toast.last).to_contain_text("tempo")


def test_the_recommend_tab_with_a_description_alone_shows_catalog_picks(page, gateway_url, clips):
    body = recommend_body(None, "calm piano for studying", 3, instruments="piano")
    reply = gateway_picks(gateway_url, body)
    assert reply.status_code == 200, reply.text
    expected = reply.json()["data"]
    page.get_by_role("tab", name="Recommend").click()
    page.locator("#rec-query input, #rec-query textarea").fill("calm piano for studying")
    page.locator("#rec-instruments input, #rec-instruments textarea").fill("piano")
    page.locator("#rec-k input[type=number]").fill("3")
    page.locator("#rec-go").click()
    expect(page.locator("#rec-picks li")).to_have_count(3)  # the catalog's three piano tracks
    assert shown_picks(page) == [p["title"] for p in expected] and shown_picks(page)[0] == "Moonlit Study"
    assert set(shown_picks(page)) == {"Moonlit Study", "Quiet Keys", "Blue Smoke"}
    for pick in expected:  # each with the catalog's attributes and a reason grounded in its facts
        item = page.locator("#rec-picks li").filter(has_text=pick["title"])
        expect(item).to_contain_text(pick["reason"])
        expect(item).to_contain_text("piano")
    page.locator("#rec-clip input[type=file]").set_input_files(str(clips["broken"]))  # an unusable song: named
    page.locator("#rec-go").click()
    expect(page.locator("[data-testid=toast-body]").last).to_contain_text("broken.wav: corrupt audio")


def test_recommend_request_bodies_leave_out_what_the_user_left_open():
    assert recommend_body(None, "  calm piano ", 5) == {"k": 5, "filters": {}, "query": "calm piano"}
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    assert recommend_body(part, "", 3, tempo=" 90-120 ", key="A minor", mode="any", time_signature="6/8",
                          instruments="piano, fiddle ,", genre="folk") == {
        "k": 3, "input_audio": {"data": "AAAA", "format": "wav"},
        "filters": {"tempo": "90-120", "key": "A minor", "time_signature": "6/8", "genre": "folk",
                    "instruments": ["piano", "fiddle"]}}
