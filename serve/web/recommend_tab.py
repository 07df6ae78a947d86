"""The web page's "Recommend" tab: catalog tracks for a song and/or a description, with filters.

Upload a song you like and/or describe what you want ("calm piano for studying"), narrow by
tempo range, key, mode, time signature, instruments and genre, and get the catalog's picks: title, the
catalog's attributes, and the reason (grounded in the pick's stored captions, serve.catalog.recommend).
The tab sends one POST /v1/recommend to the gateway (`{"input_audio", "query", "filters", "k"}`;
without a song, `{"query", ...}` alone: the catalog searched by the description) and shows what
comes back; the gateway's 4xx messages are shown as they are.

This module knows the /v1/recommend request and reply shapes and nothing about the catalog,
search or the model: the gateway is the judge of what it accepts.
"""

from __future__ import annotations

import re

from musicllm.vocabulary import PITCH_CLASSES, TIME_SIGNATURES, attribute_phrases

ANY = "any"
KEYS = [ANY] + [f"{tonic} {mode}" for mode in ("major", "minor") for tonic in PITCH_CLASSES]
MAX_PICKS = 20


def recommend_body(audio_part: dict | None, query: str, k: int, tempo: str = "", key: str = ANY, mode: str = ANY,
                   time_signature: str = ANY, instruments: str = "", genre: str = "") -> dict:
    """The POST /v1/recommend body for the tab's fields; empty fields and "any" are left out."""
    filters = {"tempo": tempo.strip(), "key": "" if key == ANY else key, "mode": "" if mode == ANY else mode,
               "time_signature": "" if time_signature == ANY else time_signature, "genre": genre.strip(),
               "instruments": [name.strip() for name in instruments.split(",") if name.strip()]}
    body = {"k": int(k), "filters": {name: value for name, value in filters.items() if value}}
    if audio_part is not None:
        body["input_audio"] = audio_part["input_audio"]
    if query.strip():
        body["query"] = query.strip()
    return body


def attributes_line(attributes: dict) -> str:
    """"rock · E minor · 168 BPM · 4/4 · drums, guitar": what the catalog says, unknowns left out."""
    return " · ".join(attribute_phrases(attributes).values())


def picks_view(picks: list[dict]) -> str:
    """The reply's picks as the tab shows them: a numbered list of title, attributes and reason."""
    if not picks:
        return "No track in the catalog matches (try fewer filters)."
    rows = []
    for rank, pick in enumerate(picks, 1):
        similarity = f" <sub>similarity {pick['similarity']:.2f}</sub>" if pick.get("similarity") is not None else ""
        rows.append(f"{rank}. **{pick['title']}**{similarity}  \n   {attributes_line(pick.get('attributes') or {})}"
                    f"  \n   {pick['reason']}")
    return "\n".join(rows)


def recommend_tab(gateway, max_clip_bytes: int) -> None:
    """Build the tab's components and events inside the current `gr.Blocks` (serve.web.app.build_app)."""
    import anyio.to_thread
    import gradio as gr

    from musicllm.audio import AudioError
    from serve.gateway.openai_format import clip_part

    async def recommend(path, query, tempo, key, mode, time_signature, instruments, genre, k):
        if path is None and not (query or "").strip():
            gr.Warning("Upload a song you like or describe what you want (or both).")
            return gr.skip()
        audio_part = None
        if path is not None:
            try:
                audio_part = await anyio.to_thread.run_sync(clip_part, path, max_clip_bytes)  # file I/O, maybe FLAC
            except AudioError as err:
                raise gr.Error(str(err), title="Unusable audio", print_exception=False) from err
        body = recommend_body(audio_part, query or "", k, tempo or "", key, mode, time_signature, instruments or "",
                              genre or "")
        # A description alone goes as it is: the gateway searches the catalog's captions and attributes.
        return picks_view(await gateway.recommend_picks(body))

    gr.Markdown("Tracks from the gateway's catalog like a song you upload and/or a description, "
                "each with the reason it was picked.")
    with gr.Row():
        with gr.Column(scale=2):
            song = gr.Audio(sources=["upload"], type="filepath", label="A song you like", elem_id="rec-clip")
            query = gr.Textbox(label="Describe what you want", placeholder="calm piano for studying",
                               elem_id="rec-query", lines=1)
            with gr.Accordion("Filters", open=True):
                with gr.Row():
                    tempo = gr.Textbox(label="Tempo (BPM)", placeholder="90-120", elem_id="rec-tempo")
                    key = gr.Dropdown(KEYS, value=ANY, label="Key", elem_id="rec-key")
                    mode = gr.Dropdown([ANY, "major", "minor"], value=ANY, label="Mode", elem_id="rec-mode")
                    time_signature = gr.Dropdown([ANY, *TIME_SIGNATURES], value=ANY, label="Time signature",
                                                 elem_id="rec-time-signature")
                with gr.Row():
                    instruments = gr.Textbox(label="Instruments (comma-separated, all must play)",
                                             placeholder="piano", elem_id="rec-instruments")
                    genre = gr.Textbox(label="Genre", placeholder="rock", elem_id="rec-genre")
            k = gr.Slider(1, MAX_PICKS, value=5, step=1, label="How many picks", elem_id="rec-k")
            go = gr.Button("Recommend", variant="primary", elem_id="rec-go")
        with gr.Column(scale=3):
            picks = gr.Markdown("The picks appear here.", elem_id="rec-picks")
    inputs = [song, query, tempo, key, mode, time_signature, instruments, genre, k]
    go.click(recommend, inputs, picks, concurrency_limit=None)
    query.submit(recommend, inputs, picks, concurrency_limit=None)


_ASKS_FOR_PICKS = re.compile(r"\b(recommend|suggest)\w*\b|\b(similar|sounds? like this|more like this)\b", re.IGNORECASE)


def asks_for_recommendations(question: str) -> bool:
    """Whether a chat message asks for catalog tracks ("recommend something like this")."""
    return bool(_ASKS_FOR_PICKS.search(question or ""))


def picks_markdown(picks: list[dict]) -> str:
    """A /v1/recommend reply's `data` as a chat answer: catalog titles in bold, each with its reason."""
    if not picks:
        return "No track in the catalog matches."
    return "\n".join(f"{n}. **{p['title']}** — {p['reason']}" for n, p in enumerate(picks, 1))
