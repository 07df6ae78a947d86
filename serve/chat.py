"""One answer about an audio file, streamed to the terminal (`musicllm chat`).

    musicllm chat --audio song.mp3 "What key is this in?"                 # default model, in this process
    musicllm chat --url http://127.0.0.1:8000/v1 --audio song.mp3 "What instruments are playing?"
    musicllm chat "Describe this"                                         # a synthesised test clip

With `--url` the question goes through a running gateway (`musicllm serve`) with the official
`openai` client, the audio as an `input_audio` part; without it, the default model (which
`musicllm quickstart` builds) or `--checkpoint` answers in this process with the transformers engine. The answer
goes to stdout; a file that cannot be used gives one line on stderr naming it, and exit code 1.

This module knows nothing about HTTP routes or how engines batch: it is a client of either.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
from pathlib import Path

from musicllm.audio import AudioError, audio_duration, test_clip, wav_bytes
from musicllm.paths import default_model
from musicllm.vocabulary import API_KEY_ENV

DEFAULT_QUESTION = "What instruments are playing, and what is the tempo?"


def audio_part(path: Path | None) -> dict:
    """An OpenAI `input_audio` content part for `path` (the test clip when None)."""
    from serve.gateway.openai_format import clip_part

    if path is None:
        data = base64.b64encode(wav_bytes(test_clip(), 16000)).decode("ascii")
        return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
    return clip_part(path)


def system_prompt(args: argparse.Namespace) -> list[dict]:
    return [{"role": "system", "content": args.system}] if args.system else []


def chat_via_gateway(args: argparse.Namespace) -> int:
    """Stream the answer from a running gateway with the official `openai` client."""
    import openai

    client = openai.OpenAI(base_url=args.url, api_key=args.api_key or "no-key", timeout=args.timeout, max_retries=0)
    messages = system_prompt(args) + [
        {"role": "user", "content": [audio_part(args.audio), {"type": "text", "text": args.question}]}]
    label = str(args.audio) if args.audio else "the test clip"
    try:
        model = args.model or client.models.list().data[0].id
        stream = client.chat.completions.create(model=model, messages=messages, stream=True,
                                                max_tokens=args.max_tokens, temperature=args.temperature,
                                                seed=args.seed)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="", flush=True)
    except openai.APIConnectionError as err:
        print(f"error: cannot reach the gateway at {args.url}: {err}", file=sys.stderr)
        return 1
    except openai.APIStatusError as err:
        error = (err.body or {}) if isinstance(err.body, dict) else {}
        message = error.get("message") or str(err)
        if error.get("code") == "invalid_audio":  # the server names the content part: name the file instead
            message = f"{label}: {message.split(': ', 1)[-1]}"
        print(f"error: the gateway answered {err.status_code}: {message}", file=sys.stderr)
        return 1
    except openai.APIError as err:  # an error reported inside the stream
        print(f"error: {err.message}", file=sys.stderr)
        return 1
    print()
    return 0


async def _stream_answer(engine, request) -> None:
    async for delta in engine.stream(request):
        print(delta.text, end="", flush=True)
    print()


def chat_in_process(args: argparse.Namespace) -> int:
    """Answer with the transformers engine on the checkpoint (the default model if none given)."""
    import torch

    from musicllm.configuration import AUDIO_TOKEN
    from musicllm.engines import EngineRequestError, GenerationRequest, TransformersEngine

    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or default_model()
    engine = TransformersEngine.from_checkpoint(checkpoint, max_batch_size=1)
    try:
        clip = engine.load_audio(args.audio) if args.audio else test_clip(sample_rate=engine.sample_rate)
        messages = system_prompt(args) + [{"role": "user", "content": f"{AUDIO_TOKEN}\n{args.question}"}]
        request = GenerationRequest(messages=messages, clips=[clip], max_tokens=args.max_tokens,
                                    temperature=args.temperature, seed=args.seed)
        asyncio.run(_stream_answer(engine, request))
    except (AudioError, EngineRequestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="musicllm chat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("question", nargs="?", default=DEFAULT_QUESTION, help="what to ask about the clip")
    parser.add_argument("--audio", type=Path, default=None,
                        help="audio file: WAV, MP3, OGG, FLAC or another format libsndfile reads "
                             "(default: a synthesised C-major arpeggio at 120 BPM)")
    parser.add_argument("--url", default=None, help="a running gateway's base URL, e.g. http://127.0.0.1:8000/v1 "
                                                    "(default: answer in this process)")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                        help=f"the gateway's API key (default: ${API_KEY_ENV})")
    parser.add_argument("--model", default=None, help="model name at the gateway (default: the first it lists)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the gateway")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="in-process: the checkpoint folder (default: the default model, `musicllm quickstart`)")
    parser.add_argument("--threads", type=int, default=2, help="in-process: torch CPU threads")
    parser.add_argument("--system", default=None, help="a system message before the question (default: none)")
    parser.add_argument("--max-tokens", type=int, default=128, help="answer length limit, in tokens")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0 = greedy)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed, for repeatable sampled answers")
    args = parser.parse_args(argv)
    if args.url and args.checkpoint:
        parser.error("--checkpoint is for in-process answers; with --url the gateway chooses the model")
    return args


def check_audio(path: Path, max_seconds: float | None = None) -> None:
    """Refuse a file that cannot be used before any model is loaded or built (seconds to
    minutes): its header first (cheap), then one decode at its own rate (NaNs, real length).
    `max_seconds` defaults to the gateway's per-clip limit."""
    import soundfile as sf

    from musicllm.audio import load_audio
    from serve.gateway.openai_format import Limits

    max_seconds = max_seconds or Limits.max_audio_seconds

    seconds = audio_duration(path)
    if seconds > max_seconds:
        raise AudioError(f"{path}: audio is {seconds:.1f} s long; the limit is {max_seconds:g} s")
    load_audio(path, sf.info(str(path)).samplerate, max_seconds=max_seconds)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.audio is not None:
        try:
            check_audio(args.audio)
        except AudioError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return chat_via_gateway(args) if args.url else chat_in_process(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
