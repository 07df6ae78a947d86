"""The `musicllm` command: one verb per job, each dispatched lazily to its package.

    musicllm --help
    musicllm VERB --help

Only the chosen verb's module is imported, so `musicllm info` starts fast and never pulls in
vLLM or Gradio. Each target is a `main(argv)` that parses its own arguments. `dispatch` also
serves the verb groups (`musicllm data ...`, `musicllm eval ...`).
"""

from __future__ import annotations

import importlib
import sys

# verb -> (module:function, one-line help)
COMMANDS = {
    "demo": ("serve.demo:main", "the main job: build the default model if missing, serve it, open the web chat"),
    "serve": ("serve.gateway.api:main", "the OpenAI-compatible API gateway (vLLM or transformers engine)"),
    "chat": ("serve.chat:main", "one answer about an audio file, from the terminal"),
    "caption": ("serve.catalog.caption:main", "caption a folder or manifest into a catalog database (batched, resumable, sharded)"),
    "search": ("serve.catalog.search:main", "search a catalog by words, by a song's sound, and by tempo/key/metre/instrument/style"),
    "recommend": ("serve.recommend_cli:main", "tracks from a catalog like a song you give, each with a reason"),
    "quickstart": ("training.quickstart:main", "build the embedded default model into the cache folder"),
    "data": ("data_gen.cli:main", "generate training data: synth, import, annotate, write, mc, card"),
    "analyze": ("musicllm.analysis:main", "MIR estimates for audio files: tempo, key, chords, loudness, timbre"),
    "train": ("training.train:main", "train one stage (pretrain, align, instruct) from a YAML config"),
    "eval": ("eval.cli:main", "evaluate: multiple choice (predict, baseline, score), captions, report"),
    "build": ("musicllm.commands:build", "build a model from backbones (hub ids or folders) or the tiny preset"),
    "inspect": ("musicllm.commands:inspect_audio", "decode audio files and show duration, windows and audio tokens"),
    "info": ("musicllm.commands:info", "versions, installed extras and where the default model lives"),
}


def usage(prog: str, commands: dict, doc: str = "") -> str:
    width = max(map(len, commands))
    lines = [f"usage: {prog} VERB [options]   ({prog} VERB --help for a verb's options)", ""]
    if doc:
        lines += [doc.strip(), ""]
    lines += ["verbs:"] + [f"  {verb.ljust(width)}  {text}" for verb, (_, text) in commands.items()]
    return "\n".join(lines)


def dispatch(prog: str, commands: dict, argv: list[str], doc: str = "") -> int:
    """Run `commands[argv[0]]` ("module:function", or "module" for its `main`) on the rest."""
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage(prog, commands, doc))
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in commands:
        print(f"{prog}: unknown verb {verb!r}\n\n{usage(prog, commands)}", file=sys.stderr)
        return 2
    module_name, _, function_name = commands[verb][0].partition(":")
    function = getattr(importlib.import_module(module_name), function_name or "main")
    return function(rest) or 0


def main(argv: list[str] | None = None) -> int:
    return dispatch("musicllm", COMMANDS, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
