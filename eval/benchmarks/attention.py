"""Attention kernels on CPU: a training step of the language model with eager attention against sdpa.

    python -m eval.benchmarks.attention                       # default model if built, else a stand-in
    python -m eval.benchmarks.attention --shapes 16x110 4x450 --repeats 7

`musicllm.modeling.fit_attention` gives the language model eager attention on CPU; this
measures why. For each --shapes BATCHxTOKENS (the default: the quickstart's stage-2 and reading
batches), random token ids, right-padded as training pads them, go forward and backward through the checkpoint's language model
(mixed precision as training resolves it), alternating the two kernels --repeats times after
one untimed step each; the median seconds per step and the ratio sdpa / eager are reported.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from eval.benchmarks import benchmark_parser, choose_checkpoint, write_results

DEFAULT_OUT = "eval/benchmarks/results/attention.json"
KERNELS = ("eager", "sdpa")


def step_seconds(language_model, batch: dict, precision: str) -> float:
    import torch

    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = language_model(**batch).loss
    loss.backward()
    language_model.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def measure(language_model, batch: int, tokens: int, repeats: int, precision: str) -> dict:
    import torch

    ids = torch.randint(0, language_model.config.vocab_size, (batch, tokens),
                        generator=torch.Generator().manual_seed(0))
    # Right padding as in a training batch of similar lengths: row i is i * 2% shorter.
    mask = (torch.arange(tokens)[None, :] < (tokens - torch.arange(batch)[:, None] * tokens // 50)).long()
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    times = {kernel: [] for kernel in KERNELS}
    for kernel in KERNELS:  # one untimed step each: first-call allocations
        language_model.set_attn_implementation(kernel)
        step_seconds(language_model, inputs, precision)
    for _ in range(repeats):
        for kernel in KERNELS:  # alternating: a slower minute of the machine hits both
            language_model.set_attn_implementation(kernel)
            times[kernel].append(step_seconds(language_model, inputs, precision))
    medians = {kernel: statistics.median(t) for kernel, t in times.items()}
    return {"batch": batch, "tokens": tokens, "seconds_per_step": medians,
            "sdpa_over_eager": medians["sdpa"] / medians["eager"]}


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, DEFAULT_OUT)
    parser.add_argument("--shapes", nargs="+", default=["16x110", "4x450"], help="BATCHxTOKENS per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per kernel and shape (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    args = parser.parse_args(argv)

    import torch

    from musicllm.checkpoint import load_checkpoint
    from training.train import resolve_mixed_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, which = choose_checkpoint(args.checkpoint, Path(tmp))
        language_model = load_checkpoint(checkpoint)[0].language_model.train()
    precision = resolve_mixed_precision("auto")
    results = []
    for shape in args.shapes:
        batch, tokens = (int(n) for n in shape.lower().split("x"))
        results.append(measure(language_model, batch, tokens, args.repeats, precision))
        r = results[-1]
        print(f"{batch:3d} x {tokens:4d} tokens: eager {r['seconds_per_step']['eager']:.3f} s, "
              f"sdpa {r['seconds_per_step']['sdpa']:.3f} s per step: sdpa takes {r['sdpa_over_eager']:.2f}x as long")
    write_results({"benchmark": "attention", "checkpoint": which, "mixed_precision": precision,
                   "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
                   "torch": torch.__version__, "results": results}, args.out)


if __name__ == "__main__":
    main()
