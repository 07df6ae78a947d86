"""The OpenAI-compatible API gateway (`musicllm serve`): chat completions with audio, over any engine.

    musicllm serve                                       # default model; a vLLM server when it can, else transformers
    musicllm serve --engine transformers --checkpoint runs/tiny/instruct/model --threads 2
    musicllm serve --engine vllm --vllm-url http://127.0.0.1:8001/v1 --api-key SECRET --port 8000

Then any OpenAI client works unchanged (base_url http://127.0.0.1:8000/v1), sending audio as
`{"type": "input_audio", "input_audio": {"data": <base64>, "format": "wav"}}` content parts.

Routes: POST /v1/chat/completions (JSON or SSE stream), GET /v1/models, GET /health (no key),
and POST /v1/recommend with --catalog (what it means: serve.catalog.recommend).
Every error is an OpenAI error body with a 4xx/5xx status; the server keeps serving after it.
Requests go to the engine concurrently (no lock here): the engine batches them. The event loop
only routes: parsing the body, decoding audio, tokenising and embedding run in worker threads,
after cheap size checks (bytes, characters, clips, decoded samples); more than
Limits.max_concurrent requests in flight get 503 with Retry-After.

This module knows HTTP and nothing about models: what a request means is `serve.gateway.openai_format`,
how text is generated is the engine's (`musicllm.engines`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import AsyncIterator, Iterator

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from musicllm.audio import AudioError
from musicllm.engine_choice import KINDS
from musicllm.engines import EngineRequestError, EngineUnavailable
from musicllm.paths import default_model
from musicllm.vocabulary import API_KEY_ENV
from serve.catalog.filters import Filters, parse_key, parse_tempo
from serve.catalog.recommend import MAX_K, MAX_QUERY_CHARS, Recommender
from serve.gateway.openai_format import (MiB, APIError, Limits, StreamOptions, audio_bytes, bad, chunk_body,
                                         completion_body, decode_clip, error_body, parse_chat_request, usage)

log = logging.getLogger("musicllm.serve")


def create_app(engine, *, api_key: str | None = None, limits: Limits | None = None,
               catalog: str | Path | None = None) -> FastAPI:
    """The gateway for `engine`. The caller owns the engine (and closes it); with `api_key`, every
    /v1 route needs `Authorization: Bearer <api_key>`; with a `catalog` database, POST /v1/recommend."""
    limits = limits or Limits()
    app = FastAPI(title="musicllm", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.limits = engine, limits
    _install_error_handlers(app)
    app.add_middleware(Admission, limit=limits.max_concurrent)

    async def authorize(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise APIError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'.",
                           code="invalid_api_key")

    @app.get("/health")
    async def health() -> JSONResponse:
        """200 when the engine can answer; 503 saying why not (a vLLM server down or restarting)."""
        problem = await engine.problem()
        body = {"status": "unavailable" if problem else "ok", "engine": engine.name, "model": engine.model_id}
        return JSONResponse(body | ({"error": problem} if problem else {}), status_code=503 if problem else 200)

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    async def models() -> dict:
        return {"object": "list", "data": [_model_card(engine)]}

    @app.get("/v1/models/{model:path}", dependencies=[Depends(authorize)])
    async def model(model: str) -> dict:
        if model != engine.model_id:
            raise APIError(404, f"The model '{model}' does not exist; this server serves '{engine.model_id}'.",
                           param="model", code="model_not_found")
        return _model_card(engine)

    @app.post("/v1/chat/completions", dependencies=[Depends(authorize)])
    async def chat_completions(request: Request) -> Response:
        body = await _read_json(request, limits.max_request_bytes)
        generation, options = await parse_chat_request(body, engine, limits)
        if options.stream:
            events = await _start_stream(engine, generation, options)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        completion = await _complete_unless_disconnected(engine, generation, request)
        return JSONResponse(completion_body(completion, options))

    if catalog is not None:
        _add_recommend_route(app, catalog, engine, limits, dependencies=[Depends(authorize)])
    return app


def _add_recommend_route(app: FastAPI, catalog: str | Path, engine, limits: Limits, dependencies: list) -> None:
    """POST /v1/recommend: catalog tracks like a song and/or fitting a description (serve.catalog.recommend).

    The catalog is used from one worker thread (SQLite connections belong to their thread), which
    also keeps search off the event loop; the song's embedding and the reasons use the engine."""
    import concurrent.futures
    import hashlib
    from dataclasses import asdict

    from musicllm.embeddings import audio_embedding
    from serve.catalog.search import Searcher, existing_catalog

    catalog = existing_catalog(catalog)  # a wrong --catalog stops the server at start, not each request
    worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="musicllm-catalog")
    state = {}

    def recommender() -> Recommender:  # runs in the worker thread only
        if "recommender" not in state:
            state["recommender"] = Recommender(Searcher(catalog), engine)
        return state["recommender"]

    async def in_worker(function):
        return await asyncio.get_running_loop().run_in_executor(worker, function)

    @app.post("/v1/recommend", dependencies=dependencies)
    async def recommend(request: Request) -> JSONResponse:
        body = await _read_json(request, limits.max_request_bytes)
        fields = parse_recommend_body(body)
        clip = audio = digest = None
        if fields["track"] is None and body.get("input_audio") is not None:
            raw = audio_bytes(body, "request", limits)
            clip = await anyio.to_thread.run_sync(decode_clip, engine, "input_audio", raw, limits)
            audio = await anyio.to_thread.run_sync(audio_embedding, engine.model, engine.processor, clip)
            digest = hashlib.sha256(raw).hexdigest()
        try:
            hits = await in_worker(lambda: recommender().candidates(audio, digest, fields["track"], fields["k"],
                                                                    fields["filters"], fields["query"]))
        except LookupError as err:
            raise APIError(404, str(err), param="track", code="track_not_found") from None
        except ValueError as err:
            raise APIError(400, str(err), code="invalid_value") from None
        texts = None
        if fields["explain"] and hits and (clip is not None or fields["track"] is None):  # a song, or words alone
            requests = await in_worker(lambda: recommender().requests(hits, clip, fields["max_tokens"], fields["query"]))
            texts = [c.text for c in await asyncio.gather(*(engine.complete(r) for r in requests))]
        picks = await in_worker(lambda: recommender().picks(hits, texts))
        return JSONResponse({"object": "list", "model": engine.model_id, "data": [asdict(p) for p in picks]})


def parse_recommend_body(body) -> dict:
    """The request's fields, checked: {audio part | track | neither, k, query, filters, explain,
    max_tokens}; without a song, `query` (a description) is required. Raises
    serve.gateway.openai_format.APIError (400) naming the field."""
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", None, "invalid_type")
    if body.get("input_audio") is not None and body.get("track") is not None:
        raise bad("Give at most one song: 'input_audio' or 'track', not both.", "track", "invalid_value")
    k = body.get("k", 5)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise bad(f"'k' must be an integer between 1 and {MAX_K}, got {k!r}.", "k")
    for name, kind in (("query", str), ("track", str), ("explain", bool), ("filters", dict)):
        if body.get(name) is not None and not isinstance(body[name], kind):
            raise bad(f"'{name}' must be {'an object' if kind is dict else kind.__name__}.", name, "invalid_type")
    for name in ("query", "track"):  # checked before anything reads them: a description, a name
        if len(body.get(name) or "") > MAX_QUERY_CHARS:
            raise bad(f"'{name}' is {len(body[name]):,} characters long; the limit is {MAX_QUERY_CHARS:,}.", name,
                      "string_too_long")
    if body.get("input_audio") is None and body.get("track") is None and not (body.get("query") or "").strip():
        raise bad("Give a song, 'input_audio' ({\"data\": base64, \"format\": \"wav\"}) or 'track' (a catalog "
                  "track's name), and/or 'query' (a description, e.g. \"calm piano for studying\").", "query",
                  "missing_required_parameter")
    max_tokens = body.get("max_tokens", 96)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 512:
        raise bad(f"'max_tokens' must be an integer between 1 and 512, got {max_tokens!r}.", "max_tokens")
    return dict(k=k, query=body.get("query"), track=body.get("track"), explain=body.get("explain", True),
                max_tokens=max_tokens, filters=parse_filters(body.get("filters") or {}))


def parse_filters(raw: dict) -> Filters:
    """The `filters` object: tempo ("90-120" or [90, 120]), key, mode, time_signature, instruments, genre, mood."""
    known = {"tempo", "key", "mode", "time_signature", "instruments", "genre", "mood"}
    for name in raw:
        if name not in known:
            raise bad(f"filters.{name}: unknown filter; use {', '.join(sorted(known))}.", f"filters.{name}")
    try:
        tempo = raw.get("tempo")
        if isinstance(tempo, list) and len(tempo) == 2 and all(isinstance(t, (int, float)) for t in tempo):
            tempo = parse_tempo(f"{tempo[0]}-{tempo[1]}")
        elif tempo is not None:
            tempo = parse_tempo(str(tempo))
        filters = Filters(tempo=tempo)
        if raw.get("key"):
            filters.key, filters.mode = parse_key(str(raw["key"]))
        for name in ("mode", "time_signature", "genre", "mood"):
            if raw.get(name) is not None:
                if not isinstance(raw[name], str):
                    raise ValueError(f"{name}: must be a string")
                setattr(filters, name, raw[name])
        instruments = raw.get("instruments") or []
        if isinstance(instruments, str):
            instruments = [instruments]
        if not isinstance(instruments, list) or not all(isinstance(i, str) for i in instruments):
            raise ValueError("instruments: must be a list of instrument names")
        filters.instruments = instruments
    except ValueError as err:
        raise bad(f"filters.{err}", "filters") from None
    return filters


class Admission:
    """At most `limit` POST requests under /v1/ in flight (streams count until they end); one
    more gets 503 with Retry-After at once, before its body is read. GET routes (/health,
    /v1/models) are never refused: a probe must see a busy server, not a dead one."""

    def __init__(self, app, limit: int):
        self.app, self.limit, self.in_flight = app, limit, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            busy = JSONResponse(error_body(f"The server is busy ({self.limit} requests in flight); retry in a moment.",
                                           type="server_error", code="server_busy"),
                                status_code=503, headers={"Retry-After": "1"})
            return await busy(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def _model_card(engine) -> dict:
    return {"id": engine.model_id, "object": "model", "created": 0, "owned_by": "musicllm"}


def _install_error_handlers(app: FastAPI) -> None:
    """Every failure answers with an OpenAI error body, FastAPI's own 404/405/422 included."""

    def reply(status: int, message: str, code: str | None, param: str | None = None,
              type: str = "invalid_request_error") -> JSONResponse:
        return JSONResponse(error_body(message, type=type, param=param, code=code), status_code=status)

    @app.exception_handler(APIError)
    async def api_error(request: Request, err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(AudioError)
    async def audio_error(request: Request, err: AudioError) -> JSONResponse:
        return reply(400, str(err), "invalid_audio", param=str(err).split(":", 1)[0])

    @app.exception_handler(EngineRequestError)
    async def engine_error(request: Request, err: EngineRequestError) -> JSONResponse:
        return reply(400, str(err), "invalid_request")

    @app.exception_handler(EngineUnavailable)
    async def engine_unavailable(request: Request, err: EngineUnavailable) -> JSONResponse:
        log.warning("engine unavailable: %s", err)
        return JSONResponse(error_body(f"The model is unavailable: {err}.", type="server_error",
                                       code="engine_unavailable"), status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        if err.status_code == 404:
            return reply(404, f"Unknown route: {request.method} {request.url.path}.", "not_found")
        if err.status_code == 405:
            return reply(405, f"Method {request.method} is not allowed on {request.url.path}.", "method_not_allowed")
        return reply(err.status_code, str(err.detail), None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        first = (err.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return reply(400, f"Invalid request: {where}: {first.get('msg', 'invalid value')}.", "invalid_value", where)

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception) -> JSONResponse:
        log.exception("request failed: %s %s", request.method, request.url.path)
        return reply(500, f"Internal server error ({type(err).__name__}); see the server log.", None,
                     type="server_error")


async def _read_json(request: Request, limit: int):
    """The body as JSON, refused with 413 as soon as it passes `limit` bytes (never read whole first)."""
    too_large = APIError(413, f"The request body is larger than the {limit / MiB:g} MiB allowed.",
                         code="request_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    try:  # parsing tens of MB takes a while: off the event loop
        return await anyio.to_thread.run_sync(json.loads, b"".join(chunks))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise APIError(400, f"The request body is not valid JSON: {err}.", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "The request body's JSON is nested too deeply to read.", code="invalid_json") from None


async def _complete_unless_disconnected(engine, generation, request: Request):
    """`engine.complete`, cancelled if the client goes away first (no one is left to read it)."""
    work = asyncio.ensure_future(engine.complete(generation))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()
    if not work.done() or work.cancelled():
        raise APIError(499, "Client closed the request.", code="client_closed")
    return work.result()


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _sse(payload) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _start_stream(engine, generation, options: StreamOptions) -> AsyncIterator[str]:
    """Start the engine stream and wait for its first piece, so that a request the engine refuses
    still gets a proper 400 (not an error inside a 200 stream); then the SSE events."""
    deltas = engine.stream(generation)
    try:
        first = await anext(deltas, None)
    except BaseException:
        await deltas.aclose()
        raise
    return _events(deltas, first, options)


async def _events(deltas, delta, options: StreamOptions) -> AsyncIterator[str]:
    """OpenAI chunks: the role, the text pieces, the finish reason, usage if asked, [DONE].

    Starlette cancels this generator when the client disconnects; `aclosing` then closes the
    engine stream, which stops the generation."""
    async with contextlib.aclosing(deltas):
        yield _sse(chunk_body(options, {"role": "assistant", "content": ""}))
        try:
            while delta is not None:
                if delta.text:
                    yield _sse(chunk_body(options, {"content": delta.text}))
                if delta.finish_reason is not None:
                    yield _sse(chunk_body(options, {}, delta.finish_reason))
                    if options.include_usage:
                        yield _sse(chunk_body(options, None, usage_=usage(delta.prompt_tokens,
                                                                          delta.completion_tokens)))
                    break
                delta = await anext(deltas, None)
        except (AudioError, EngineRequestError) as err:
            yield _sse(error_body(str(err)))
        except EngineUnavailable as err:
            yield _sse(error_body(f"The model is unavailable: {err}.", type="server_error", code="engine_unavailable"))
        except Exception as err:  # the status line is gone: the error travels in the stream
            log.exception("stream failed")
            yield _sse(error_body(f"Internal server error ({type(err).__name__}); see the server log.",
                                  type="server_error"))
        yield "data: [DONE]\n\n"


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> Iterator[str]:
    """Run `app` with uvicorn in a background thread; yields its base URL ("http://HOST:PORT",
    port 0 = a free one) once it accepts connections, and stops it on exit."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{host}:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server on {host}:{port} stopped while starting (port in use?)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"the server on {host}:{port} did not start within {timeout:.0f} s")
        time.sleep(0.05)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)


def parse_args(argv: list[str]) -> argparse.Namespace:
    defaults = Limits()
    parser = argparse.ArgumentParser(prog="musicllm serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="model checkpoint folder (default: the default model, `musicllm quickstart`)")
    parser.add_argument("--engine", default="auto", choices=KINDS,
                        help="auto: vLLM (the --vllm-url server, else one started here on 127.0.0.1 with a key only "
                             "this gateway knows) when vLLM is installed and can run the model, else transformers; "
                             "vllm: vLLM or an error (musicllm.engine_choice)")
    parser.add_argument("--vllm-url", default=None, help="a running vLLM OpenAI server for this checkpoint's "
                        "language_model/ (started with --enable-prompt-embeds), e.g. http://127.0.0.1:8001/v1")
    parser.add_argument("--vllm-api-key", default=os.environ.get("VLLM_API_KEY"),
                        help="the --vllm-url server's API key, if it has one (default: $VLLM_API_KEY)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads in this process (encoder, projector; the LLM too with transformers)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes the API to the network)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                        help=f"require 'Authorization: Bearer KEY' on /v1 routes (default: ${API_KEY_ENV}, else none)")
    parser.add_argument("--catalog", type=Path, default=None,
                        help="a catalog database (musicllm caption --out): serves POST /v1/recommend from it")
    parser.add_argument("--max-upload-mb", type=float, default=defaults.max_clip_bytes / MiB,
                        help="largest audio file per input_audio part, in MiB")
    parser.add_argument("--max-request-mb", type=float, default=defaults.max_request_bytes / MiB,
                        help="largest request body, in MiB (base64 audio is 4/3 of the file)")
    parser.add_argument("--max-audio-seconds", type=float, default=defaults.max_audio_seconds,
                        help="longest clip, in seconds (checked from the file header before decoding)")
    parser.add_argument("--max-clips", type=int, default=defaults.max_clips, help="most audio clips per request")
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens,
                        help="most tokens a request may generate (larger max_tokens get a 400)")
    parser.add_argument("--default-max-tokens", type=int, default=defaults.default_max_tokens,
                        help="tokens generated when a request sets no max_tokens")
    parser.add_argument("--max-text-chars", type=int, default=defaults.max_text_chars,
                        help="most characters of text in one conversation (counted before tokenising)")
    parser.add_argument("--max-concurrent", type=int, default=defaults.max_concurrent,
                        help="most requests in flight; more get 503 with Retry-After")
    args = parser.parse_args(argv)
    if args.engine == "transformers" and args.vllm_url:
        parser.error("--vllm-url needs --engine vllm or auto")
    return args


def limits_from_args(args: argparse.Namespace) -> Limits:
    try:
        return Limits(max_clip_bytes=int(args.max_upload_mb * MiB), max_request_bytes=int(args.max_request_mb * MiB),
                      max_audio_seconds=args.max_audio_seconds, max_clips=args.max_clips,
                      max_tokens=args.max_tokens, default_max_tokens=args.default_max_tokens,
                      max_text_chars=args.max_text_chars, max_concurrent=args.max_concurrent)
    except ValueError as err:
        raise SystemExit(f"musicllm serve: {err}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    limits = limits_from_args(args)
    import uvicorn

    from musicllm.engine_choice import open_engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or default_model()
    with contextlib.ExitStack() as stack:
        try:
            engine = open_engine(args.engine, checkpoint, stack, vllm_url=args.vllm_url, vllm_api_key=args.vllm_api_key)
        except EngineUnavailable as err:
            raise SystemExit(f"musicllm serve: {err}")
        app = create_app(engine, api_key=args.api_key, limits=limits, catalog=args.catalog)
        print(f"musicllm API ({engine.name} engine, model '{engine.model_id}') on http://{args.host}:{args.port}/v1"
              f"{'  (API key required)' if args.api_key else ''}", flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
