"""vLLM behind the engine interface: a vLLM OpenAI server (started by musicllm.vllm_server or
reached by URL), and in-process `vllm.LLM` for offline batches.

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

Nothing here imports vLLM at module level: the server is another process (musicllm.vllm_server),
and the offline engine imports it when built.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import weakref
from pathlib import Path
from typing import AsyncIterator

from musicllm.engines import (DEFAULT_MODEL_ID, Completion, Delta, EngineRequestError, EngineUnavailable,
                              GenerationRequest, LocalModelEngine)
from musicllm.vllm_server import EXTRA_ARG, checkpoint_dtype, language_model_dir


def encode_embeds(tensor) -> str:
    """base64(torch.save(tensor)): how vLLM's OpenAI server takes prompt embeddings."""
    import torch

    buffer = io.BytesIO()
    torch.save(tensor.detach().cpu().contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _status_and_message(err) -> tuple[int, str]:
    """An `openai.APIError`'s HTTP status and vLLM's own message. An error event inside a stream
    has no status: its body's `code` stands in (vLLM puts the status there)."""
    import openai

    if isinstance(err, openai.APIStatusError):
        status = err.status_code
    else:
        status = int(err.code) if (err.code or "").isdigit() else 500
    message = err.body.get("message") if isinstance(err.body, dict) else err.body  # vLLM's 401 body is a string
    return status, message if isinstance(message, str) and message else err.message


class VLLMServerEngine(LocalModelEngine):
    """The LLM in a vLLM OpenAI server (reached by `base_url`), everything before it here.

    Each request is rendered and embedded in this process (worker threads, so the event loop
    keeps serving) and sent with the `openai` client to `/v1/completions` as `prompt_embeds`;
    vLLM batches concurrent requests itself. The checkpoint is loaded whole, though only the
    audio tower, the projector and the LLM's input embeddings are used here."""

    name = "vllm"

    def __init__(self, checkpoint_dir, base_url: str, api_key: str | None = None, model_id: str = DEFAULT_MODEL_ID,
                 timeout: float = 600.0):
        from musicllm.checkpoint import load_checkpoint

        model, processor = load_checkpoint(Path(checkpoint_dir).expanduser())
        super().__init__(model, processor, model_id)
        self.base_url, self.api_key, self.timeout = base_url.rstrip("/"), api_key, timeout
        self.served_name: str | None = None  # the server's model, asked for once
        # A client (its connection pool) belongs to the event loop it was used in (tests and scripts may run several).
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _client(self):
        import openai

        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            # One retry (the client's own, after about half a second): a pooled keep-alive
            # connection that the server closed just as a request went out fails before any
            # answer, and a fresh connection mends it (64 users for 2 minutes met it once). A
            # refused connection or a 5xx is tried twice too. The client insists on a key: a
            # server started without one ignores "EMPTY" (None would send OPENAI_API_KEY to it).
            self._clients[loop] = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or "EMPTY",
                                                     timeout=self.timeout, max_retries=1)
        return self._clients[loop]

    @contextlib.asynccontextmanager
    async def _answering(self):
        """The client's errors as the engine's, each saying what went wrong: the server not
        reached, or refusing our key -> EngineUnavailable; refusing the request ->
        EngineRequestError (with vLLM's message); failing it -> RuntimeError."""
        import openai

        try:
            yield
        except openai.APITimeoutError as err:
            raise EngineUnavailable(f"the vLLM server at {self.base_url} did not answer within {self.timeout:g} s"
                                    ) from err
        except openai.APIConnectionError as err:  # refused, reset, or gone mid-answer
            raise EngineUnavailable(f"the vLLM server at {self.base_url} is not answering "
                                    f"({type(err.__cause__ or err).__name__}); it may be restarting, retry shortly"
                                    ) from err
        except openai.APIError as err:  # an error status, or an error event inside the stream
            status, message = _status_and_message(err)
            if status in (401, 403):  # our key, so nobody's request gets through
                raise EngineUnavailable(f"the vLLM server at {self.base_url} refused the API key "
                                        f"({status} {message}): give the key it was started with") from err
            if 400 <= status < 500:
                raise EngineRequestError(f"vLLM refused the request: {message}") from err
            raise RuntimeError(f"the vLLM server at {self.base_url} failed ({status}): {message}") from err

    async def problem(self) -> str | None:
        import openai

        try:  # /health sits beside /v1, not under it
            await self._client().get(self.base_url.removesuffix("/v1") + "/health", cast_to=str,
                                     options={"timeout": 2.0, "max_retries": 0})
        except openai.APIStatusError as err:
            return f"the vLLM server at {self.base_url} says {err.status_code} on /health"
        except openai.APIError as err:
            return f"the vLLM server at {self.base_url} is not answering ({type(err.__cause__ or err).__name__})"
        return None

    async def _server_model(self) -> str:
        """The served model's name and context length, from GET /models."""
        if self.served_name is None:
            async with self._answering():
                served = (await self._client().models.list()).data[0]
            self.context = int(getattr(served, "max_model_len", None) or self.context)  # a vLLM field
            self.served_name = served.id
        return self.served_name

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        import openai

        served = await self._server_model()
        ids = await asyncio.to_thread(self.prompt_ids, request)  # tokenising, like embedding, off the event loop
        embeds = await asyncio.to_thread(self.prompt_embeds, ids, request.clips)
        async with self._answering():
            chunks = await self._client().completions.create(
                model=served, prompt=openai.omit,  # the whole prompt is in prompt_embeds
                max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p,
                frequency_penalty=request.frequency_penalty,
                seed=openai.omit if request.seed is None else request.seed, stop=list(request.stop) or openai.omit,
                stream=True, stream_options={"include_usage": True},
                extra_body={"prompt_embeds": encode_embeds(embeds), "vllm_xargs": {EXTRA_ARG: request.no_repeat_ngram}})
        # Leaving early (the caller stopped listening) closes the connection, and vLLM aborts a
        # request whose client has gone.
        last = None
        async with self._answering(), chunks:
            async for chunk in chunks:
                for choice in chunk.choices or []:
                    if choice.finish_reason:  # held back until the usage chunk that follows
                        last = Delta(choice.text or "", choice.finish_reason)
                    elif choice.text:
                        yield Delta(choice.text)
                if chunk.usage and last is not None:
                    last.prompt_tokens = chunk.usage.prompt_tokens
                    last.completion_tokens = chunk.usage.completion_tokens
        if last is None:
            raise RuntimeError(f"the vLLM server at {self.base_url} ended the stream without a finish reason")
        yield last

    async def _leave_loop(self) -> None:
        with contextlib.suppress(RuntimeError):
            client = self._clients.pop(asyncio.get_running_loop(), None)
            if client is not None:
                await client.close()


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

        from musicllm.vllm_logits import NoRepeatLogits

        model_dir = language_model_dir(checkpoint_dir)
        settings = dict(enforce_eager=True, enable_prompt_embeds=True, max_model_len=self.context,
                        served_model_name=model_id, dtype=checkpoint_dtype(model_dir),
                        logits_processors=[NoRepeatLogits])
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
                                         extra_args={EXTRA_ARG: request.no_repeat_ngram},
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
