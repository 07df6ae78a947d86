"""Serving speed: the vLLM engine and the transformers engine side by side.

    python -m eval.benchmarks.serving                                  # default model if built, else a stand-in
    python -m eval.benchmarks.serving --checkpoint ~/.cache/musicllm/default/model --max-tokens 64
    python -m eval.benchmarks.serving --engines transformers --out /tmp/serving.json

For each engine: time to first token and decode tokens/s for one user (median of --repeats
streamed requests), then requests/s and answer tokens/s with --users concurrent users (each
asks about a different 10 s excerpt). Ratios are vLLM / transformers. Both engines run their LLM
on --threads threads (vLLM: OMP_NUM_THREADS of its server; transformers: torch threads), and the
encoder + projector run in this process for both, so the ratio compares the LLM serving paths.

Without --checkpoint and without a built default model, a stand-in is built: the tiny preset's
architecture (the default model's shape) with random weights. Its answers are noise, but they
rarely end early, so every request decodes about --max-tokens tokens; speed is what is measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from eval.benchmarks import benchmark_parser, choose_checkpoint, write_results

DEFAULT_OUT = "eval/benchmarks/results/serving.json"
QUESTIONS = ["What instruments are playing?", "What key is this in?", "Describe the mood of this piece.",
             "How fast is the tempo?"]


def requests_for(users: int, max_tokens: int, sample_rate: int, seconds: float = 10.0) -> list:
    from eval.benchmarks.features_encoder import synth
    from musicllm.engines import GenerationRequest

    n = round(seconds * sample_rate)
    return [GenerationRequest([{"role": "user", "content": f"<|audio|>\n{QUESTIONS[i % len(QUESTIONS)]}"}],
                              [synth(i * n, n, sample_rate)], max_tokens=max_tokens) for i in range(users)]


async def one_user(engine, request) -> dict:
    started = time.perf_counter()
    first = last = None
    async for delta in engine.stream(request):
        now = time.perf_counter()
        if first is None and delta.text:
            first = now
        last = delta
    ended = time.perf_counter()
    first = first or ended
    decode = max(last.completion_tokens - 1, 1) / max(ended - first, 1e-9)  # tokens after the first
    return dict(ttft_s=first - started, decode_tokens_per_s=decode, seconds=ended - started,
                completion_tokens=last.completion_tokens, prompt_tokens=last.prompt_tokens)


async def many_users(engine, requests) -> dict:
    started = time.perf_counter()
    completions = await asyncio.gather(*(engine.complete(r) for r in requests))
    wall = time.perf_counter() - started
    tokens = sum(c.completion_tokens for c in completions)
    return dict(users=len(requests), seconds=wall, requests_per_s=len(requests) / wall, answer_tokens=tokens,
                answer_tokens_per_s=tokens / wall)


async def measure(engine, args) -> dict:
    rate = engine.sample_rate
    await engine.complete(requests_for(1, 4, rate)[0])  # warm-up: first-call allocations, vLLM's first batch
    singles = [await one_user(engine, r) for r in requests_for(args.repeats, args.max_tokens, rate)]
    crowd = await many_users(engine, requests_for(args.users, args.max_tokens, rate))
    single = {key: statistics.median(s[key] for s in singles) for key in singles[0]}
    return dict(one_user={k: round(v, 4) for k, v in single.items()}, concurrent={k: round(v, 4) for k, v in crowd.items()})


def run_engine(kind: str, checkpoint: Path, args, workdir: Path) -> dict:
    import contextlib

    from musicllm.engines import TransformersEngine
    from musicllm.vllm_engine import VLLMServerEngine
    from musicllm.vllm_server import new_api_key, start_vllm_server

    with contextlib.ExitStack() as stack:
        if kind == "vllm":
            started = time.perf_counter()
            key = new_api_key()  # as the gateway starts it
            url = stack.enter_context(start_vllm_server(checkpoint, workdir / "vllm", threads=args.threads,
                                                        start_timeout=args.start_timeout, api_key=key))
            print(f"vllm: server ready in {time.perf_counter() - started:.0f} s", flush=True)
            engine = VLLMServerEngine(checkpoint, url, api_key=key)
        else:
            engine = TransformersEngine.from_checkpoint(checkpoint, max_batch_size=args.users)
        try:
            result = asyncio.run(measure(engine, args))
        finally:
            engine.close()
    if kind == "transformers":
        result["generate_batches"] = engine.batches_run
    return result


def print_table(results: dict, ratios: dict) -> None:
    rows = [("time to first token (s)", "one_user", "ttft_s"), ("decode tokens/s, one user", "one_user", "decode_tokens_per_s"),
            (f"requests/s, {next(iter(results.values()))['concurrent']['users']} users", "concurrent", "requests_per_s"),
            ("answer tokens/s, concurrent", "concurrent", "answer_tokens_per_s")]
    names = list(results)
    print(f"{'':32}" + "".join(f"{n:>14}" for n in names) + ("  vllm/transformers" if ratios else ""))
    for title, group, key in rows:
        cells = "".join(f"{results[n][group][key]:>14.3f}" for n in names)
        print(f"{title:32}{cells}" + (f"{ratios[key]:>19.2f}" if ratios else ""))


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, DEFAULT_OUT, ["vllm", "transformers"])
    parser.add_argument("--users", type=int, default=16, help="concurrent users in the throughput test")
    parser.add_argument("--repeats", type=int, default=3, help="single-user requests (the median is reported)")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for the vLLM server")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="musicllm-serving-") as tmp:
        workdir = Path(tmp)
        checkpoint, model = choose_checkpoint(args.checkpoint, workdir)
        print(f"checkpoint: {checkpoint} ({model})", flush=True)
        results = {}
        for kind in args.engines:
            results[kind] = run_engine(kind, checkpoint, args, workdir)
            print(f"{kind}: {json.dumps(results[kind])}", flush=True)
    ratios = {}
    if set(results) == {"vllm", "transformers"}:
        ratios = {key: round(results["vllm"][group][key] / results["transformers"][group][key], 3)
                  for group, key in [("one_user", "ttft_s"), ("one_user", "decode_tokens_per_s"),
                                     ("concurrent", "requests_per_s"), ("concurrent", "answer_tokens_per_s")]}
    print_table(results, ratios)
    report = dict(benchmark="serving", model=model, checkpoint=str(checkpoint), max_tokens=args.max_tokens,
                  users=args.users, threads=args.threads, cpu_count=os.cpu_count(), load_average=os.getloadavg(),
                  torch=torch.__version__, machine=platform.machine(),
                  device="cuda" if torch.cuda.is_available() else "cpu", results=results, ratios_vllm_over_transformers=ratios)
    write_results(report, args.out)


if __name__ == "__main__":
    main()
