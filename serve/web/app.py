"""The web demo: chat about a song in the browser, answered by the API gateway.

    musicllm demo                                           # starts the model, the gateway and this page
    python -m serve.web.app --gateway http://127.0.0.1:8000/v1  # this page alone, for a running gateway

Upload or record a clip: its waveform, tempo, key, mode, metre and chroma appear (MIR
estimates from `musicllm.analysis`, computed here). Questions go to the gateway with the
`openai` client as standard chat-completions requests, the clip as an `input_audio` part in
the first user turn and the earlier turns as history, and the answer streams into the chat.
The "Recommend" tab (serve.web.recommend_tab) asks the gateway's POST /v1/recommend for catalog
tracks like a song and/or a description, with attribute filters.

This module never touches the model: it knows only the OpenAI protocol and a gateway URL. So
the page works the same in front of the transformers engine, vLLM, or any server that speaks
the protocol and reads `input_audio`. Decoding here serves only the analysis panel and early,
named errors; the gateway decodes again and is the judge of what it accepts (its 400 messages
are shown as they are).
"""

from __future__ import annotations

import argparse
import hmac
import os
import signal
import tempfile
from pathlib import Path

from musicllm.analysis import SAMPLE_RATE as ANALYSIS_RATE
from musicllm.audio import AudioError, load_audio
from musicllm.vocabulary import API_KEY_ENV, MAX_AUDIO_SECONDS  # the gateway's default limit, checked here first
from serve.gateway.openai_format import MAX_CLIP_BYTES, clip_part
from serve.web.recommend_tab import asks_for_recommendations, picks_markdown, recommend_tab

CAPTION_PROMPT = "Write a caption for this track."  # one of the caption phrasings the model was trained on
RECOMMEND_PROMPT = "Recommend tracks like this one."  # answered from the gateway's catalog (POST /v1/recommend)
EXAMPLE_QUESTIONS = [
    "What instruments are playing?",
    "What key is this in?",
    "What is the tempo of this piece?",
    "What is the time signature?",
    "What mood does this music convey?",
    "What genre is this?",
]
MAX_UPLOAD = "50mb"  # what the page accepts at all (Gradio refuses bigger uploads in the browser)


def clip_name(path: str | os.PathLike) -> str:
    """The name a user knows a clip by: Gradio keeps the uploaded file's name inside its cache."""
    return Path(path).name


def openai_messages(turns: list[dict], audio_part: dict | None) -> list[dict]:
    """The chat so far as OpenAI messages: the clip in the first user turn, every later turn plain
    text. The gateway keeps no sessions, so each request carries the clip again; the model then
    sees it where the conversation began."""
    messages, placed = [], audio_part is None
    for turn in turns:
        if turn["role"] == "user" and not placed:
            messages.append({"role": "user", "content": [audio_part, {"type": "text", "text": turn["content"]}]})
            placed = True
        else:
            messages.append({"role": turn["role"], "content": turn["content"]})
    return messages


def describe(estimates: dict, name: str, seconds: float) -> str:
    """The analysis panel's text: what the estimates say, and that they are estimates."""
    def value(v, fmt="{}"):
        return "—" if v is None else fmt.format(v)

    key = " ".join(v for v in (estimates.get("key"), estimates.get("mode")) if v) or None
    confidence = estimates.get("key_confidence")
    rows = [
        ("Tempo", value(estimates.get("tempo_bpm"), "{:.0f} BPM")),
        ("Key", value(key) + (f" (confidence {confidence:.2f})" if key and confidence is not None else "")),
        ("Metre", value(estimates.get("time_signature"))),
        ("Loudness", value(estimates.get("loudness_db"), "{:.1f} LUFS")),
    ]
    table = "\n".join(f"| {label} | {text} |" for label, text in rows)
    return (f"**{name}** · {seconds:.1f} s\n\n| | estimate |\n|---|---|\n{table}\n\n"
            "<sub>Signal-processing estimates, not ground truth: often a tempo octave or a "
            "neighbouring key off on real music.</sub>")


def analyze_clip(path: str, max_seconds: float = MAX_AUDIO_SECONDS):
    """(panel markdown, waveform figure, chroma figure) for a clip file; AudioError naming the
    file when it cannot be used."""
    from musicllm.analysis import analyze
    from serve.web.plots import chroma_figure, waveform_figure

    name = clip_name(path)
    audio = load_audio(path, ANALYSIS_RATE, max_seconds=max_seconds, name=name)
    estimates = analyze(audio, ANALYSIS_RATE)
    return (describe(estimates, name, len(audio) / ANALYSIS_RATE), waveform_figure(audio, ANALYSIS_RATE, estimates),
            chroma_figure(audio, ANALYSIS_RATE))


def example_clip(folder: str | os.PathLike) -> str:
    """A WAV of `test_clip` in `folder`, offered on the page for users without a song at hand."""
    import soundfile as sf

    from musicllm.audio import test_clip

    path = Path(folder) / "c-major-arpeggio-120bpm.wav"
    if not path.is_file():
        sf.write(path, test_clip(sample_rate=22050), 22050, subtype="PCM_16")
    return str(path)


class Gateway:
    """The OpenAI client side of the page: which model to ask, and answers as streamed text.
    Errors become `gr.Error`s that say what the gateway said."""

    def __init__(self, url: str, api_key: str | None = None, model: str | None = None, timeout: float = 300.0):
        from openai import AsyncOpenAI

        self.url, self.model = url, model
        # The client insists on a key; a gateway without one configured ignores it.
        self.client = AsyncOpenAI(base_url=url, api_key=api_key or "none", timeout=timeout, max_retries=0)

    async def model_id(self) -> str:
        if self.model is None:
            models = await self.client.models.list()
            if not models.data:
                raise RuntimeError(f"the gateway at {self.url} lists no models")
            self.model = models.data[0].id
        return self.model

    async def stream(self, messages: list[dict], max_tokens: int, temperature: float):
        """Yield pieces of the answer as they arrive."""
        import gradio as gr
        import openai

        try:
            stream = await self.client.chat.completions.create(
                model=await self.model_id(), messages=messages, stream=True, max_tokens=int(max_tokens),
                temperature=float(temperature))
            async with stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
        except openai.APIStatusError as err:
            raise gr.Error(f"The gateway refused the request ({err.status_code}): {_error_message(err)}",
                           print_exception=False) from err
        except openai.APIConnectionError as err:
            raise gr.Error(f"Cannot reach the API gateway at {self.url}: {err}", print_exception=False) from err


    async def recommend(self, audio_part: dict | None, words: str, k: int = 5) -> str:
        """Catalog tracks like the clip (with no clip: matching the words), each with its reason,
        as chat text."""
        body = {"input_audio": audio_part["input_audio"]} if audio_part else {"query": words}
        return picks_markdown(await self.recommend_picks({**body, "k": k}))

    async def recommend_picks(self, body: dict) -> list[dict]:
        """POST /v1/recommend with `body`; the reply's picks (title, attributes, reason, ...)."""
        import gradio as gr
        import openai

        try:
            reply = await self.client.post("/recommend", cast_to=object, body=body)
        except openai.NotFoundError as err:
            raise gr.Error("This gateway has no catalog to recommend from (start it with "
                           "`musicllm serve --catalog music.db`).", print_exception=False) from err
        except openai.APIStatusError as err:
            raise gr.Error(f"The gateway refused the request ({err.status_code}): {_error_message(err)}",
                           print_exception=False) from err
        except openai.APIConnectionError as err:
            raise gr.Error(f"Cannot reach the API gateway at {self.url}: {err}", print_exception=False) from err
        return reply["data"]


def _error_message(err) -> str:
    """The `error.message` of an OpenAI-style error body, or whatever the server sent."""
    body = err.body if isinstance(err.body, dict) else {}
    return (body.get("error") or body).get("message") or str(err.message)


def build_app(gateway_url: str, api_key: str | None = None, model: str | None = None,
              max_audio_seconds: float = MAX_AUDIO_SECONDS, max_clip_bytes: int = MAX_CLIP_BYTES):
    """The Gradio page (a `gr.Blocks`, not launched) for the gateway at `gateway_url` (".../v1").
    `model` is the model id to ask for (default: the first one the gateway lists)."""
    import anyio.to_thread
    import gradio as gr

    gateway = Gateway(gateway_url, api_key, model)
    examples_dir = Path(tempfile.gettempdir()) / "musicllm-web"  # one small file, reused by every run
    examples_dir.mkdir(exist_ok=True)

    def on_clip(path):
        """New clip: analysis panel, plots, and a fresh chat (the old one was about another clip)."""
        if path is None:
            yield "Upload or record a clip to see its analysis.", None, None, [], []
            return
        yield f"Analysing **{clip_name(path)}** …", None, None, [], []
        try:
            yield *analyze_clip(path, max_audio_seconds), [], []
        except AudioError as err:
            # A toast and the panel say it; gr.Error would also badge every output "Error".
            gr.Warning(str(err), title="Unusable audio")
            yield f"**Cannot use this clip.** {err}", None, None, [], []

    async def ask(question, path, turns, max_tokens, temperature):
        """One user turn: the whole chat so far plus the question to the gateway; the answer
        streams into the chat. The turn joins the history only once the answer is complete."""
        question = (question or "").strip()
        if not question:
            gr.Warning("Type a question first (or pick an example).")
            return
        wants_picks = asks_for_recommendations(question)  # answered from the catalog, not the LLM chat
        if path is None and not wants_picks:
            gr.Warning("Upload or record a clip first: the questions are about it.")
            return
        audio_part = None  # "recommend calm piano" with no clip: the catalog is searched by the words
        if path is not None:
            try:
                # The gateway keeps no sessions: every request carries the whole chat, clip included.
                audio_part = await anyio.to_thread.run_sync(clip_part, path, max_clip_bytes)  # file I/O, maybe FLAC
            except AudioError as err:
                raise gr.Error(str(err), title="Unusable audio", print_exception=False) from err
        asked = turns + [{"role": "user", "content": question}]
        if wants_picks:
            done = asked + [{"role": "assistant", "content": await gateway.recommend(audio_part, question)}]
            yield done, done, ""
            return
        messages = openai_messages(asked, audio_part)
        answer = ""
        yield asked + [{"role": "assistant", "content": "…"}], gr.skip(), ""
        try:
            async for piece in gateway.stream(messages, max_tokens, temperature):
                answer += piece
                yield asked + [{"role": "assistant", "content": answer}], gr.skip(), gr.skip()
        except gr.Error:
            yield turns, gr.skip(), question  # the chat as it was, the question back in the box
            raise
        done = asked + [{"role": "assistant", "content": answer or "(no answer)"}]
        yield done, done, gr.skip()

    with gr.Blocks(title="musicllm", analytics_enabled=False) as app:
        gr.Markdown("# musicllm\nUpload or record a piece of music, then ask about it. "
                    f"<sub>Answers come from the API gateway at `{gateway_url}`.</sub>")
        turns = gr.State([])
        with gr.Tab("Chat", elem_id="tab-chat"), gr.Row():
            with gr.Column(scale=2):
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip", elem_id="clip",
                                 buttons=["download"])
                gr.Examples([[example_clip(examples_dir)]], inputs=[audio], label="No song at hand? Try this clip")
                panel = gr.Markdown("Upload or record a clip to see its analysis.", elem_id="analysis")
                waveform = gr.Plot(label="Waveform and beats", show_label=False, elem_id="waveform", format="png")
                chroma = gr.Plot(label="Chroma", show_label=False, elem_id="chroma", format="png")
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="Chat", elem_id="chat", height=460, buttons=["copy", "copy_all"])
                question = gr.Textbox(label="Your question", placeholder="What instruments are playing?",
                                      elem_id="question", lines=1, max_lines=4, submit_btn=True)
                with gr.Row():
                    caption = gr.Button("Caption this", elem_id="caption", variant="primary")
                    recommend = gr.Button("Recommend similar", elem_id="recommend")
                    clear = gr.Button("New chat", elem_id="clear")
                gr.Examples([[q] for q in EXAMPLE_QUESTIONS], inputs=[question], label="Example questions")
                with gr.Accordion("Answer settings", open=False):
                    max_tokens = gr.Slider(16, 1024, value=256, step=16, label="Longest answer (tokens)")
                    temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.1, label="Temperature (0 = always the same answer)")

        with gr.Tab("Recommend", elem_id="tab-recommend"):
            recommend_tab(gateway, max_clip_bytes)

        audio.change(on_clip, [audio], [panel, waveform, chroma, chat, turns], concurrency_limit=2)
        # The gateway batches concurrent requests: do not serialise users behind one queue slot.
        inputs, outputs = [question, audio, turns, max_tokens, temperature], [chat, turns, question]
        question.submit(ask, inputs, outputs, concurrency_limit=None)
        caption.click(lambda: CAPTION_PROMPT, None, question, queue=False).then(
            ask, inputs, outputs, concurrency_limit=None)
        recommend.click(lambda: RECOMMEND_PROMPT, None, question, queue=False).then(
            ask, inputs, outputs, concurrency_limit=None)
        clear.click(lambda: ([], []), None, [chat, turns], queue=False)
    return app


def launch(app, host: str = "127.0.0.1", port: int = 7860, max_file_size: str | int = MAX_UPLOAD,
           api_key: str | None = None) -> str:
    """Start `app` in background threads (Gradio's own server) and return its URL; `app.close()`
    stops it. Never a share link, no server-side rendering (it would need Node), quiet logs.

    With `api_key`, the page and its Gradio API (what `gradio_client` calls) need a sign-in whose
    password is that key (any user name): the page holds the gateway's key, so whoever reaches
    the page must show it too."""
    auth = None
    if api_key:
        def auth(user: str, password: str) -> bool:
            return hmac.compare_digest(password.encode(), api_key.encode())
    app.queue(default_concurrency_limit=4)
    app.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
               quiet=True, show_error=True, max_file_size=max_file_size, ssr_mode=False,
               footer_links=[], pwa=False, mcp_server=False, auth=auth,
               auth_message="This server needs its API key: sign in with any user name and the key as the password.")
    return f"http://{host}:{port}"


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (a service manager, `kill`) stops things as Ctrl-C does


def stop_on_signals() -> dict:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt in the main thread; returns the previous
    handlers. SIGINT too: a process started in the background of a script inherits SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler of its own."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, _interrupt)
    return previous


def main(argv: list[str] | None = None) -> int:
    import time

    parser = argparse.ArgumentParser(prog="python -m serve.web.app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", default="http://127.0.0.1:8000/v1",
                        help="base URL of the OpenAI-compatible gateway (musicllm serve), ending in /v1")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                        help=f"the gateway's API key, if it has one (default: ${API_KEY_ENV}); the page then "
                             "asks for it too")
    parser.add_argument("--model", default=None, help="model id to ask for (default: the first the gateway lists)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind; anything but 127.0.0.1 exposes the page to your network")
    parser.add_argument("--port", type=int, default=7860, help="port for the page")
    parser.add_argument("--max-upload", default=MAX_UPLOAD, help="largest upload the page accepts, e.g. 50mb")
    parser.add_argument("--max-audio-seconds", type=float, default=MAX_AUDIO_SECONDS,
                        help="longest clip analysed and sent (the gateway has its own limit too)")
    args = parser.parse_args(argv)
    stop_on_signals()
    app = build_app(args.gateway, args.api_key, args.model, max_audio_seconds=args.max_audio_seconds)
    try:  # Ctrl-C may come while launch() still runs: the page answers before launch() returns
        url = launch(app, args.host, args.port, args.max_upload, api_key=args.api_key)
        signed = "; sign in with the API key" if args.api_key else ""
        print(f"web demo: {url}  (gateway {args.gateway}{signed}; Ctrl-C stops)", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
