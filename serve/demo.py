"""The README's main job (`musicllm demo`, which `make demo` runs): the model, its API and the web chat.

    musicllm demo                              # then open http://127.0.0.1:7860 ; Ctrl-C stops it all
    musicllm demo --engine transformers        # without vLLM (what happens anyway when it is not installed)
    musicllm demo --size small                 # build a quick, weaker default model if there is none
    musicllm demo --api-port 8000 --web-port 7860 --api-key SECRET
    musicllm demo --catalog music.db           # recommend from your own catalog (musicllm caption --out)
    musicllm demo --no-catalog                 # no catalog: chat and captions only

What starts, in order, on 127.0.0.1 unless --host says otherwise:
  1. the default model, built first if it is missing (`musicllm quickstart`: minutes, with progress),
     or the folder given with --checkpoint;
  2. a vLLM OpenAI server on the checkpoint's language model (when vLLM is installed; its log and
     caches go to $MUSICLLM_HOME/demo/vllm), checked with a one-token request: if vLLM cannot run
     the model, the transformers engine answers instead (with --engine auto; an error with vllm);
  3. the catalog that "recommend something similar" answers from: with the default model, the
     default corpus's held-out clips (those quickstart synthesised, $MUSICLLM_HOME/default/corpus,
     but did not train on: 292 of 1440) captioned into
     $MUSICLLM_HOME/default/catalog.db by `musicllm caption`'s machinery with the engine just
     started (a progress bar; measured: the 72 --size small clips in 11 s with vLLM; 720 clips
     in 4 min 44 s with vLLM while a test suite shared the 2 cores, and about
     1 min more for the search indexes; interrupted, the next start resumes it; complete, it is
     reused), then its search indexes are updated; or --catalog PATH;
  4. the OpenAI-compatible API gateway (`musicllm serve`'s app, with POST /v1/recommend on the
     catalog) in this process;
  5. the Gradio web chat, which talks to the gateway like any other API client ("Recommend similar").
A port already in use falls back to a free one, with a message. Ctrl-C (SIGINT) or SIGTERM stops
everything this command started, and it exits 0.

This module only starts and stops things; what they do is serve.gateway.api, serve.web.app and the engines'.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path

from musicllm.vocabulary import API_KEY_ENV, MAX_AUDIO_SECONDS

STEPS = 5


def step(number: int, text: str) -> None:
    print(f"[{number}/{STEPS}] {text}", flush=True)


def port_or_free(host: str, port: int, what: str) -> int:
    """`port` if it can be bound on `host`, else a free one (saying so): a second demo, or a
    Jupyter on 8000, must not stop this one from starting."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
            return port
        except OSError:
            sock.bind((host, 0))
            free = sock.getsockname()[1]
    print(f"      port {port} is in use; the {what} takes port {free} instead", flush=True)
    return free


def start_engine(args, checkpoint: Path, stack: contextlib.ExitStack):
    """The engine `--engine` means (musicllm.engine_choice): with auto, a vLLM server started here
    when vLLM is installed and can run the model, else transformers. `stack` stops it."""
    from musicllm.engine_choice import open_engine
    from musicllm.paths import home

    if args.engine == "transformers":
        step(2, "vLLM skipped (--engine transformers)")
    else:
        step(2, "LLM engine: vLLM when it is installed and can run this model ...")
    # fixed: the log outlives a crash, the compile caches serve a restart
    return open_engine(args.engine, checkpoint, stack, workdir=home() / "demo" / "vllm", start_timeout=args.vllm_timeout,
                       say=lambda text: print(f"      {text}", flush=True))


def default_catalog_path() -> Path:
    from musicllm.paths import home

    return home() / "default" / "catalog.db"  # beside the model: `quickstart --force` removes both


def choose_catalog(args, checkpoint: Path, engine) -> Path | None:
    """The catalog the gateway recommends from: --catalog, else the default corpus's (built or
    completed here) when serving the default model, else none; each case said on the terminal."""
    from musicllm.paths import home

    if args.no_catalog:
        step(3, "catalog: none (--no-catalog); recommendations are off")
        return None
    if args.catalog is not None:
        path = args.catalog.expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--catalog {path}: no such catalog (build one with musicllm caption FOLDER --out {path})")
        step(3, f"catalog: {path}")
        return path
    manifest = home() / "default" / "corpus" / "manifest.jsonl"
    if args.checkpoint is not None or not manifest.is_file():
        why = "--checkpoint is not the default model" if args.checkpoint is not None else f"no {manifest}"
        step(3, f"catalog: none ({why}); --catalog PATH serves one, for recommendations")
        return None
    return ensure_corpus_catalog(engine, checkpoint, manifest, default_catalog_path())


def ensure_corpus_catalog(engine, checkpoint: Path, manifest: Path, path: Path) -> Path:
    """`path` with every clip of `manifest` captioned by `engine`, as `musicllm caption MANIFEST
    --out PATH` would (its job: batched, resumable, failures recorded), reusing what is done."""
    from serve.catalog.caption import parse_args, pending_tracks, read_manifest, run_job
    from serve.catalog.store import Catalog

    # The corpus's labels are exact (it was synthesised from them): MIR estimates would add nothing.
    args = parse_args([str(manifest), "--out", str(path), "--checkpoint", str(checkpoint), "--no-analysis"])
    # Only the clips the model did not train on (splits valid and test; a manifest without splits:
    # all): captions and recommendations of music it never heard, and a first start of a minute
    # or two rather than ten (the default's 1440 clips; 720 took 4 min 44 s with vLLM here).
    specs = [spec for spec in read_manifest(manifest) if spec.metadata.get("split", "test") in ("valid", "test")]
    with Catalog(path) as catalog:
        _, pending = pending_tracks(catalog, specs)
        if not pending:
            step(3, f"catalog: {path} ({catalog.counts()['done']} tracks, complete: reused)")
            return index_catalog(path)
        step(3, f"catalog: captioning {len(pending)} of {len(specs)} clips of the default corpus (the held-out ones) "
                f"into {path} (once; an interrupted run resumes at the next start) ...")
        result = run_job(args, catalog, pending, engine=engine, kind="demo caption")
        failed = f", {result['failed']} failed (reasons in the catalog)" if result["failed"] else ""
        print(f"      catalog ready: {catalog.counts()['done']} tracks{failed}", flush=True)
    return index_catalog(path)


def index_catalog(path: Path) -> Path:
    """The search indexes brought up to date now (text embeddings of new captions: ~20 ms a
    track), so that the first recommendation does not wait for them."""
    from serve.catalog.search import Searcher
    from serve.catalog.text_rank import TextEmbedderMissing

    searcher = Searcher(path)
    try:
        started = time.monotonic()
        print("      search indexes: audio vectors, words, then text embeddings of new captions (~20 ms a track) ...",
              flush=True)
        searcher.audio_index()
        searcher.full_text()
        searcher.text_index(progress=True)
        print(f"      search indexes ready ({time.monotonic() - started:.0f} s)", flush=True)
    except TextEmbedderMissing as err:
        print(f"      text search will not work: {err}", flush=True)
    finally:
        searcher.close()
    return path


def default_model_built(size: str) -> Path:
    """The default model, built first by `musicllm quickstart` in a child process when it is missing:
    its progress shows here, and the memory that training took is free again before serving starts."""
    import subprocess

    from musicllm.paths import default_model, has_default_model

    if not has_default_model():
        # Its own session: a Ctrl-C reaches it once, from here, whether the user pressed it or SIGTERM came.
        build = subprocess.Popen([sys.executable, "-m", "musicllm.cli", "quickstart", "--size", size],
                                 start_new_session=True)
        try:
            code = build.wait()
        except KeyboardInterrupt:  # stopped where it is; the next start resumes from its last finished step
            build.send_signal(signal.SIGINT)
            try:
                build.wait(timeout=60)
            except subprocess.TimeoutExpired:
                build.kill()
                build.wait()
            raise
        if code != 0:
            raise RuntimeError(f"building the default model failed (musicllm quickstart exited {code}); "
                               "run `musicllm quickstart` to see or resume it")
    return default_model()


def start(args, stack: contextlib.ExitStack) -> tuple[str, str, object, Path | None]:
    """Everything, in order; each piece registers its own stop on `stack`. Returns (web URL,
    API URL, engine, catalog or None)."""
    import torch

    from serve.gateway.api import create_app, serve_in_thread
    from serve.gateway.openai_format import Limits
    from serve.web.app import build_app, launch

    torch.set_num_threads(args.threads)  # encoder + projector (and the transformers engine) run here
    if args.checkpoint is not None:
        checkpoint = args.checkpoint.expanduser()
        step(1, f"model: {checkpoint}")
    else:
        step(1, "default model (built first if it is missing: minutes, with progress) ...")
        checkpoint = default_model_built(args.size)
        print(f"      model: {checkpoint}", flush=True)
    engine = start_engine(args, checkpoint, stack)
    catalog = choose_catalog(args, checkpoint, engine)

    local = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host  # where this process reaches its own servers
    limits = Limits(max_audio_seconds=args.max_audio_seconds)
    app = create_app(engine, api_key=args.api_key, limits=limits, catalog=catalog)
    api_port = port_or_free(args.host, args.api_port, "API gateway")
    step(4, f"API gateway ({engine.name} engine{', catalog ' + str(catalog) if catalog else ''}) ...")
    api_url = stack.enter_context(serve_in_thread(app, args.host, api_port)) + "/v1"

    step(5, "web chat ...")
    web = build_app(f"http://{local}:{api_port}/v1", api_key=args.api_key, model=engine.model_id,
                    max_audio_seconds=args.max_audio_seconds)
    web_url = launch(web, args.host, port_or_free(args.host, args.web_port, "web chat"), args.max_upload,
                     api_key=args.api_key)
    stack.callback(web.close)
    return web_url, api_url, engine, catalog


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="musicllm demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["auto", "vllm", "transformers"], default="auto",
                        help="who runs the LLM: vLLM (auto: when installed) or transformers in this process")
    parser.add_argument("--size", choices=["default", "small"], default="default",
                        help="quickstart size if the default model must be built (small: minutes, weaker)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="serve this checkpoint folder instead of the default model")
    catalog = parser.add_mutually_exclusive_group()
    catalog.add_argument("--catalog", type=Path, default=None,
                         help="recommend from this catalog (musicllm caption --out) instead of the default corpus's "
                              "($MUSICLLM_HOME/default/catalog.db, built at the first start)")
    catalog.add_argument("--no-catalog", action="store_true", help="start without a catalog (no recommendations)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address for the API and the web chat; anything but 127.0.0.1 exposes them to the network")
    parser.add_argument("--api-port", type=int, default=8000, help="API gateway port (a free one if it is taken)")
    parser.add_argument("--web-port", type=int, default=7860, help="web chat port (a free one if it is taken)")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                        help=f"require 'Authorization: Bearer KEY' on the API (default: ${API_KEY_ENV}, else none)")
    parser.add_argument("--max-upload", default="50mb", help="largest file the web chat accepts, e.g. 50mb")
    parser.add_argument("--max-audio-seconds", type=float, default=MAX_AUDIO_SECONDS, help="longest clip, in seconds")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads in this process")
    parser.add_argument("--vllm-timeout", type=float, default=600.0, help="seconds to wait for vLLM to start")
    return parser.parse_args(argv)


def access_note(args, engine) -> str:
    """Who can reach what, in a line or two: the user decides with --host and --api-key."""
    where = "this machine only" if args.host in ("127.0.0.1", "localhost", "::1") else f"the network ({args.host})"
    guarded = "the web chat and the API need the key" if args.api_key else "no key: anyone who can connect may use them"
    vllm = "; vLLM listens on 127.0.0.1 with a key only this process knows" if engine.name == "vllm" else ""
    return f"  access    {where}; {guarded}{vllm}\n"


def main(argv: list[str]) -> int:
    from serve.web.app import stop_on_signals

    args = parse_args(argv)
    previous = stop_on_signals()
    status = 0
    with contextlib.ExitStack() as stack:
        try:
            web_url, api_url, engine, catalog = start(args, stack)
            catalog_note = (f"  catalog   {catalog}   (ask \"recommend something similar\" in the web chat, or "
                            f"POST {api_url}/recommend)\n" if catalog else "")
            print(f"\nmusicllm is running ({engine.name} engine, model '{engine.model_id}'):\n"
                  f"  web chat  {web_url}{'   (sign in with the API key as the password)' if args.api_key else ''}\n"
                  f"  API       {api_url}{'   (API key required)' if args.api_key else ''}   (OpenAI-compatible; "
                  f"e.g. musicllm chat --url {api_url} --audio song.mp3 \"What key is this in?\")\n{catalog_note}"
                  f"{access_note(args, engine)}"
                  "Press Ctrl-C to stop.", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstopping everything musicllm demo started ...", flush=True)
        except (RuntimeError, TimeoutError, OSError, ValueError) as err:  # ValueError: CatalogError too
            print(f"musicllm demo: error: {err}", file=sys.stderr, flush=True)
            status = 1
        finally:
            # A second Ctrl-C must not cut the shutdown short and leave a vLLM server behind.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    print("stopped.", flush=True)
    return status
