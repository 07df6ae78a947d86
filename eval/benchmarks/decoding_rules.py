"""The engines' rule against repeats (`musicllm.engines.NoRepeat`: repeated runs of n tokens, a
list's item named twice), per generated token, against one greedy decode step of the LLM.

    python -m eval.benchmarks.decoding_rules                  # the built default model (else a stand-in)
    python -m eval.benchmarks.decoding_rules --checkpoint M --lengths 64 256

For each answer length it takes a caption-like answer of that many tokens (a sentence of
instruments, tempo, key and metre, repeated as need be) and times `NoRepeat.banned` on it: what
each engine runs once per request per generated token. Beside it, in the same run and thread,
a decode step: the checkpoint's LLM, batch 1, one new token after a prompt of that length with
its key-value cache. Reported: microseconds a call and the rule's share of a step.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from eval.benchmarks import benchmark_parser, choose_checkpoint, write_results

DEFAULT_OUT = "eval/benchmarks/results/decoding_rules.json"
ANSWER = ("This folk tune is performed on recorder, acoustic guitar, fiddle and acoustic bass and keeps a "
          "fast pace (136 BPM). It sits in D# major and has four beats to the bar (4/4). ")


def per_call(function, repeats: int) -> float:
    """Seconds a call, the best of three rounds of `repeats` calls."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            function()
        best = min(best, (time.perf_counter() - started) / repeats)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, DEFAULT_OUT)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256], help="answer lengths in tokens")
    parser.add_argument("--n", type=int, default=4, help="the run length the rule blocks (the engines' default 4)")
    args = parser.parse_args(argv)
    from musicllm.checkpoint import load_checkpoint
    from musicllm.engines import NoRepeat

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder, which = choose_checkpoint(args.checkpoint, Path(tmp))
        model, processor = load_checkpoint(folder)
    llm, tokenizer = model.language_model.eval(), processor.tokenizer
    rule = NoRepeat(args.n, tokenizer)
    sentence = tokenizer.encode(ANSWER, add_special_tokens=False)
    rows = []
    for length in args.lengths:
        answer = (sentence * (length // len(sentence) + 1))[:length]
        rule_s = per_call(lambda: rule.banned(answer), 50)
        with torch.no_grad():
            cache = llm(torch.tensor([answer]), use_cache=True).past_key_values
            token = torch.tensor([[answer[-1]]])

            def step():
                llm(token, past_key_values=cache, use_cache=True)
                cache.crop(-1)  # the next call decodes the same position again

            step_s = per_call(step, 10)
        rows.append({"answer_tokens": length, "rule_us": round(rule_s * 1e6, 1), "decode_step_us": round(step_s * 1e6, 1),
                     "rule_share_of_step": round(rule_s / step_s, 4)})
        print(f"{length:5d} tokens  rule {rule_s * 1e6:9.1f} µs  decode step {step_s * 1e6:10.1f} µs  "
              f"share {rule_s / step_s:.2%}")
    write_results({"checkpoint": str(folder), "which": which, "n": args.n, "threads": 1, "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
