"""Batch captioning throughput: the engines' batches against a naive one-clip-at-a-time loop.

    python -m eval.benchmarks.captioning                         # default model if built, else a stand-in
    python -m eval.benchmarks.captioning --checkpoint ~/.cache/musicllm/default/model --clips 64
    python -m eval.benchmarks.captioning --engines transformers --out /tmp/captioning.json

The same --clips clips (10 s excerpts of a synthetic groove, decoded beforehand), the same
caption question and the same --max-tokens, on the same checkpoint and --threads:
- naive: for each clip, the processor builds its inputs and `model.generate` captions it alone
  (what LLaVA-style scripts and LLark / MU-LLaMA captioning loops do);
- transformers: `TransformersEngine.complete_batch` with batches of --batch-size (what
  `musicllm caption --engine transformers` calls);
- vllm: `VLLMOfflineEngine.complete_batch` over all clips (`musicllm caption --engine vllm`).
Each path runs once untimed on a few clips first (first-call allocations), then --repeats times;
the median run is reported (other work on a shared machine moves single runs a lot): clips/s and
answer tokens/s per path, and the ratio of each engine's clips/s to the naive loop's.

Without --checkpoint and without a built default model, the stand-in of eval.benchmarks.serving
is used (the tiny preset's shape, random weights): its captions are noise that rarely ends
early, so every path decodes about --max-tokens tokens per clip; speed is what is measured.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

from eval.benchmarks import benchmark_parser, choose_checkpoint, write_results

DEFAULT_OUT = "eval/benchmarks/results/captioning.json"
PROMPT = "Write a caption for this track."
WARMUP_CLIPS = 2


def make_clips(count: int, sample_rate: int, seconds: float = 10.0) -> list:
    from eval.benchmarks.features_encoder import synth

    n = round(seconds * sample_rate)
    return [synth(i * n, n, sample_rate) for i in range(count)]


def naive_loop(model, processor, clips: list, max_tokens: int) -> dict:
    """One `generate` per clip, as a captioning script without batching does it (decoded with the
    engines' default penalty and block on repeated runs, so that all paths write the same captions)."""
    import torch

    from musicllm.engines import DEFAULT_FREQUENCY_PENALTY, DEFAULT_NO_REPEAT_NGRAM, penalties

    rules = penalties(DEFAULT_FREQUENCY_PENALTY, DEFAULT_NO_REPEAT_NGRAM, processor.tokenizer)
    messages = [{"role": "user", "content": f"<|audio|>\n{PROMPT}"}]
    pad_id = processor.tokenizer.pad_token_id or 0
    started, tokens = time.perf_counter(), 0
    with torch.no_grad():
        for clip in clips:
            batch = processor([messages], [[clip]], add_generation_prompt=True)
            out = model.generate(**batch, max_new_tokens=max_tokens, do_sample=False, pad_token_id=pad_id,
                                 logits_processor=rules)
            tokens += int(out.shape[1])
    return _rates(len(clips), tokens, time.perf_counter() - started)


def engine_batches(engine, clips: list, max_tokens: int, batch_size: int) -> dict:
    """`complete_batch` on --batch-size clips at a time (all at once when batch_size is 0)."""
    from musicllm.engines import GenerationRequest

    requests = [GenerationRequest([{"role": "user", "content": f"<|audio|>\n{PROMPT}"}], [clip], max_tokens=max_tokens)
                for clip in clips]
    step = batch_size or len(requests)
    started, tokens = time.perf_counter(), 0
    for start in range(0, len(requests), step):
        tokens += sum(c.completion_tokens for c in engine.complete_batch(requests[start:start + step]))
    return _rates(len(clips), tokens, time.perf_counter() - started)


def _rates(clips: int, tokens: int, seconds: float) -> dict:
    return dict(clips=clips, seconds=round(seconds, 3), clips_per_s=round(clips / seconds, 3),
                answer_tokens=tokens, answer_tokens_per_s=round(tokens / seconds, 1))


def measure(kind: str, checkpoint: Path, clips: list, args) -> dict:
    if kind == "vllm":
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine core in this process
        from musicllm.vllm_engine import VLLMOfflineEngine

        engine = VLLMOfflineEngine(checkpoint)
        batch_size = 0  # vLLM schedules the whole list itself
    else:
        from musicllm.engines import TransformersEngine

        engine = TransformersEngine.from_checkpoint(checkpoint, max_batch_size=args.batch_size)
        batch_size = args.batch_size
    def once(some_clips: list, max_tokens: int) -> dict:
        if kind == "naive":
            return naive_loop(engine.model, engine.processor, some_clips, max_tokens)
        return engine_batches(engine, some_clips, max_tokens, batch_size)

    try:
        once(clips[:WARMUP_CLIPS], 4)
        calls_before = getattr(engine, "batches_run", 0)
        runs = sorted((once(clips, args.max_tokens) for _ in range(args.repeats)), key=lambda r: r["seconds"])
        result = dict(runs[len(runs) // 2], repeats=args.repeats,  # the median run: others load this machine too
                      clips_per_s_all=[r["clips_per_s"] for r in runs])
        if kind == "transformers":
            result["generate_calls_per_run"] = (engine.batches_run - calls_before) // args.repeats
        return result
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, DEFAULT_OUT, ["transformers", "vllm"], "batched engines to compare with the naive loop")
    parser.add_argument("--clips", type=int, default=32, help="clips captioned by every path")
    parser.add_argument("--batch-size", type=int, default=16, help="clips per generate call (transformers engine)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path; the median is reported")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    from musicllm.checkpoint import load_checkpoint

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="musicllm-captioning-") as tmp:
        checkpoint, model = choose_checkpoint(args.checkpoint, Path(tmp))
        print(f"checkpoint: {checkpoint} ({model})", flush=True)
        clips = make_clips(args.clips, load_checkpoint(checkpoint)[1].sample_rate)
        results = {}
        for kind in ["naive", *args.engines]:
            results[kind] = measure(kind, checkpoint, clips, args)
            print(f"{kind:>12}: {results[kind]}", flush=True)
    ratios = {kind: round(results[kind]["clips_per_s"] / results["naive"]["clips_per_s"], 2) for kind in args.engines}
    for kind, ratio in ratios.items():
        print(f"{kind} batched / naive loop: {ratio:.2f}x clips/s")
    report = dict(benchmark="captioning", model=model, checkpoint=str(checkpoint), clips=args.clips,
                  clip_seconds=10.0, batch_size=args.batch_size, repeats=args.repeats, max_tokens=args.max_tokens, threads=args.threads,
                  prompt=PROMPT, cpu_count=os.cpu_count(), load_average=os.getloadavg(), torch=torch.__version__,
                  machine=platform.machine(), device="cuda" if torch.cuda.is_available() else "cpu",
                  results=results, ratios_over_naive=ratios)
    write_results(report, args.out)


if __name__ == "__main__":
    main()
