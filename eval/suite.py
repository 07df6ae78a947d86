"""`musicllm eval suite`: every evaluation of a model on the held-out sets, with reports.

    musicllm eval suite --checkpoint ~/.cache/musicllm/default/model          # the default's own sets
    musicllm eval suite --checkpoint runs/instruct/model --home ~/.cache/musicllm/default --out runs/instruct/eval
    musicllm eval suite --checkpoint CKPT --questions 40 --follow-clips 4   # a quicker, noisier look

The held-out sets are the ones `musicllm quickstart` makes under --home (default: the default
model's folder, $MUSICLLM_HOME/default):
    test   clips of the procedural corpus's test split (corpus/manifest.jsonl), never trained on;
           their multiple-choice questions (data/mc_test.csv), MIR estimates
           (corpus/test_manifest.annotated.jsonl) and reference captions (data/captions.jsonl)
    ood    the out-of-distribution corpus (ood_corpus/manifest.jsonl: textures held out of
           training, another soundfont) and its questions (data/mc_ood.csv)
For each split:
  1. multiple choice on the first --questions questions with their audio and without (and on half
     as many with noise of the same length and loudness, and with another question's clip): the
     ablations that show whether the model listens. The model writes its answer, as a user asking
     the question would get it (eval.score's robust and MuChoMusic parsers read it), and its
     options are ranked by log-likelihood (with the letter, and the option text alone: loglik
     and cloze). On the test split, the MIR baseline answers the same questions.
  2. free-text answers to every kind of question on --follow-clips clips, in wordings training
     never used (eval.follow): does each answer respond to what was asked, is it right; (test)
     the same questions about as many held-out clips of silence and noise
     (not_music/manifest.jsonl): does the answer say the clip is not music.
  3. (test) captions of --captions clips, scored against the labels and the references.
Reports: OUT/REPORT.md and OUT/ood/REPORT.md (default OUT: HOME/eval). Every step resumes: a rerun
after an interruption answers only what is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from musicllm import paths

MODES = ("audio", "none", "noise", "other")


class SuiteError(RuntimeError):
    pass


def check(result, what: str) -> None:
    if result not in (None, 0):
        raise SuiteError(f"{what} failed (exit {result})")


def multiple_choice(model: Path, questions: Path, preds: Path, asked: int, extra=()) -> Path:
    """Predictions under each audio mode (the ablations on half as many questions), scored into one file."""
    from eval.predict import main as predict
    from eval.score import main as score

    files = []
    for mode in MODES:
        files.append(preds / f"{mode}.jsonl")
        limit = asked if mode in ("audio", "none") else max(2, asked // 2)
        check(predict(["--checkpoint", str(model), "--questions", str(questions), "--audio-mode", mode,
                       "--limit", str(limit), "--out", str(files[-1])]), f"predict ({mode})")
    for name, make in extra:
        files.append(preds / f"{name}.jsonl")
        check(make(files[-1]), name)
    scores = preds.parent / "scores.json"
    check(score([str(f) for f in files] + ["--out", str(scores)]), "score")
    return scores


def follow(model: Path, manifest: Path, split: str, clips: int, out: Path, not_music: Path | None = None) -> Path:
    """Free-text answers to every kind of question, asked in other wordings than training's; with
    `not_music`, also about that manifest's test clips of silence and noise (every kind but theory,
    which is asked without the audio)."""
    from eval.follow import KINDS, main as follow_main

    def ask(clips_of: Path, split_of: str, what: str, *kinds: str) -> None:  # appends to one answers file
        check(follow_main(["--checkpoint", str(model), "--manifest", str(clips_of), "--split", split_of,
                           "--limit-clips", str(clips), "--out", str(out / "answers.jsonl"), *kinds]), what)

    ask(manifest, split, "follow")
    if not_music:
        ask(not_music, "test", "follow (silence and noise)", "--kinds", *[kind for kind in KINDS if kind != "theory"])
    check(follow_main(["--score", str(out / "answers.jsonl"), "--out", str(out / "scores.json")]), "follow --score")
    return out / "scores.json"


def report(scores: list[Path], out: Path) -> None:
    from eval.report import main as report_main

    check(report_main([str(s) for s in scores] + ["--out", str(out)]), "report")


def held_out_sets(home: Path) -> dict[str, Path]:
    sets = {"test questions": home / "data" / "mc_test.csv", "test manifest": home / "corpus" / "manifest.jsonl",
            "MIR estimates": home / "corpus" / "test_manifest.annotated.jsonl",
            "reference captions": home / "data" / "captions.jsonl", "ood questions": home / "data" / "mc_ood.csv",
            "ood manifest": home / "ood_corpus" / "manifest.jsonl",
            "silence and noise manifest": home / "not_music" / "manifest.jsonl"}
    missing = [f"{name} ({path})" for name, path in sets.items() if not path.is_file()]
    if missing:
        raise SuiteError(f"{home}: no {', '.join(missing)}; `musicllm quickstart` makes the held-out sets there")
    return sets


def run(model: Path, home: Path, out: Path, questions: int = 120, follow_clips: int = 16, captions: int = 8) -> None:
    """The whole suite (module docstring); OOD report last, so it marks a finished run."""
    from eval.baseline import main as baseline
    from eval.captioning import main as caption

    sets = held_out_sets(home)
    mc = sets["test questions"]
    mir = ("mir_baseline", lambda to: baseline(["--questions", str(mc), "--manifest", str(sets["MIR estimates"]),
                                                "--out", str(to)]))
    scores = [multiple_choice(model, mc, out / "predictions", questions, extra=[mir]),
              follow(model, sets["test manifest"], "test", follow_clips, out / "follow", sets["silence and noise manifest"])]
    caps = out / "captions.scores.json"
    check(caption(["--checkpoint", str(model), "--manifest", str(sets["test manifest"]), "--references",
                   str(sets["reference captions"]), "--split", "test", "--limit", str(captions),
                   "--out", str(out / "captions.jsonl"), "--scores", str(caps)]), "captions")
    report(scores + [caps], out)
    ood = out / "ood"
    report([multiple_choice(model, sets["ood questions"], ood / "predictions", questions),
            follow(model, sets["ood manifest"], "all", follow_clips, ood / "follow")], ood)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musicllm eval suite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="model folder (default: HOME/model)")
    parser.add_argument("--home", type=Path, default=None,
                        help="the quickstart folder holding the held-out sets (default: $MUSICLLM_HOME/default)")
    parser.add_argument("--out", type=Path, default=None, help="where predictions and reports go (default: HOME/eval)")
    parser.add_argument("--questions", type=int, default=120, help="multiple-choice questions per split (default 120)")
    parser.add_argument("--follow-clips", type=int, default=16, help="clips asked every kind of question (default 16)")
    parser.add_argument("--captions", type=int, default=8, help="test clips captioned (default 8)")
    args = parser.parse_args(argv)
    home = args.home or paths.default_model_dir().parent
    model = args.checkpoint or home / "model"
    if not (model / "config.json").is_file():
        print(f"musicllm eval suite: {model}: no model there (`musicllm quickstart` builds the default)", file=sys.stderr)
        return 2
    try:
        run(model, home, args.out or home / "eval", args.questions, args.follow_clips, args.captions)
    except SuiteError as err:
        print(f"musicllm eval suite: {err}", file=sys.stderr)
        return 2
    print(f"reports: {(args.out or home / 'eval') / 'REPORT.md'}, {(args.out or home / 'eval') / 'ood' / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
