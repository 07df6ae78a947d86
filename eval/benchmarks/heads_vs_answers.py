"""Does the LLM choose what its own attribute heads heard? Multiple choice, heads against answers.

    python -m eval.benchmarks.heads_vs_answers --checkpoint ~/.cache/musicllm/default/model \
        --predictions ~/.cache/musicllm/default/eval/predictions/audio.jsonl
    python -m eval.benchmarks.heads_vs_answers --checkpoint CKPT --predictions P.jsonl --out /tmp/heads.json

The default model hears a clip through attribute tokens: its projector's heads pick words
(" key: B minor metre: 6/8 ...") that the LLM reads. A wrong multiple-choice answer is then either
the heads' error (they named the wrong key) or the LLM's (the heads named it and the LLM chose
another option). This benchmark tells the two apart on predictions that `musicllm eval predict`
(or `eval suite`) wrote with the audio: for every question about an attribute with a head (key,
mode, tempo, metre, genre, mood, instruments), the heads rank its options by their own
log-probabilities (a key: tonic + mode; instruments: each one's sigmoid; an option no head can
name ranks last), and the LLM's choice is its cloze choice (the option text's log-likelihood).
Per kind: questions, LLM right, heads right, both, heads only (the LLM did not follow a right
head) and LLM only. "heads right" is what the LLM would score by copying its heads exactly.
"""

from __future__ import annotations

import platform
import sys
from collections import Counter, defaultdict
from pathlib import Path

from eval.benchmarks import benchmark_parser, write_results

DEFAULT_OUT = "eval/benchmarks/results/heads_vs_answers.json"
HEADS = {"genre": "style", "mood": "mood", "instruments": "instruments"}  # question kind -> head, by class name


def question_kind(question: str, options: list[str], answer_index: int, heads: dict[str, dict[str, float]]) -> str | None:
    """key, mode, tempo, metre (musicllm.text_attributes reads them), else genre, mood or instruments when
    the right option is one of that head's class words; None otherwise."""
    from musicllm.text_attributes import question_type

    kind = question_type(question, options, answer_index)
    if kind:
        return kind
    answer = options[answer_index]
    return next((kind for kind, head in HEADS.items() if class_log_prob(heads.get(head, {}), answer) > float("-inf")), None)


def class_log_prob(head: dict[str, float], option: str) -> float:
    """The head's log-probability of the class an option names (-inf: none). Case and hyphens do
    not count: the multiple-choice writer spells the style "hip-hop" as "Hip hop"."""
    spelled = lambda word: word.strip().lower().replace("-", " ")  # noqa: E731
    return next((logp for word, logp in head.items() if spelled(word) == spelled(option)), float("-inf"))


def option_scores(kind: str, options: list[str], heads: dict[str, dict[str, float]]) -> list[float]:
    """The heads' log-probability of each option (-inf: no head names it)."""
    from musicllm.text_attributes import option_value

    def score(option: str) -> float:
        if kind in ("key", "mode", "tempo", "metre"):
            value = option_value(kind, option)
            if value is None:
                return float("-inf")
            if kind == "key":
                tonic, mode = value.split()
                return heads["tonic"].get(tonic, float("-inf")) + heads["mode"].get(mode, float("-inf"))
            return heads[kind].get(value, float("-inf"))
        return class_log_prob(heads[HEADS[kind]], option)

    return [score(option) for option in options]


def clip_heads(model, processor, path: str) -> dict[str, dict[str, float]]:
    """Each head's log-probability per class word for one clip (the mean of its windows' logits)."""
    import torch

    from eval.predict import encode_clips
    from musicllm.audio import load_audio

    projector = model.multi_modal_projector
    frames, frame_lens = encode_clips(model, processor, [load_audio(path, processor.sample_rate)])[0]
    with torch.no_grad():
        stats = projector.window_stats(frames.to(next(projector.parameters()).dtype), frame_lens)
        heads = {}
        for attribute, logits in zip(projector.attributes, projector.attribute_logits(stats)):
            logits = logits.float().mean(0)
            logp = torch.nn.functional.logsigmoid(logits) if attribute["multi_label"] else torch.log_softmax(logits, -1)
            heads[attribute["name"]] = dict(zip(attribute["classes"], logp.tolist()))
    return heads


def compare(rows: list[dict], heads_of) -> dict:
    """Per question kind and overall: counts of who chose the right option (see the module doc)."""
    counts = defaultdict(Counter)
    for row in rows:
        heads = heads_of(row["audio_shown"])
        kind = question_kind(row["question"], row["options"], row["answer_index"], heads)
        if kind is None:
            continue
        scores = option_scores(kind, row["options"], heads)
        answer = row["answer_index"]
        llm = max(range(len(scores)), key=lambda i: row["option_text_logprobs"][i]) == answer
        head = max(range(len(scores)), key=lambda i: scores[i]) == answer and scores[answer] > float("-inf")
        for key in (kind, "all"):
            counts[key].update(questions=1, llm_right=llm, heads_right=head, both=llm and head,
                               heads_only=head and not llm, llm_only=llm and not head)
    return {kind: dict(c) for kind, c in sorted(counts.items(), key=lambda item: item[0] == "all")}


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, DEFAULT_OUT)
    parser.add_argument("--predictions", type=Path, required=True,
                        help="eval predict's JSONL, run with the audio and option scoring (option_text_logprobs)")
    args = parser.parse_args(argv)
    from data_gen.formats import read_jsonl
    from musicllm.checkpoint import load_checkpoint

    if args.checkpoint is None:
        parser.error("--checkpoint is needed: the model whose predictions these are")
    rows = [r for r in read_jsonl(args.predictions) if r.get("audio_shown") and r.get("option_text_logprobs")]
    if not rows:
        print(f"error: {args.predictions}: no rows with audio and option_text_logprobs (run eval predict with "
              "--audio-mode audio)", file=sys.stderr)
        return 2
    model, processor = load_checkpoint(args.checkpoint)
    model.eval()
    if not model.config.audio_attributes:
        print(f"error: {args.checkpoint} has no attribute heads", file=sys.stderr)
        return 2
    cache = {}

    def heads_of(path: str) -> dict:  # a clip's questions share its heads' output
        if path not in cache:
            cache[path] = clip_heads(model, processor, path)
        return cache[path]

    results = compare(rows, heads_of)
    for kind, c in results.items():
        print(f"{kind:12s} questions {c['questions']:4d}  LLM right {c['llm_right']:4d}  heads right {c['heads_right']:4d}"
              f"  heads only {c['heads_only']:4d}  LLM only {c['llm_only']:4d}")
    write_results({"benchmark": "heads_vs_answers", "checkpoint": str(args.checkpoint),
                   "predictions": str(args.predictions), "machine": platform.machine(), "results": results}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
