"""`musicllm recommend`: catalog tracks like a song and/or fitting a description, each with a reason.

    musicllm recommend --audio song.mp3 --catalog music.db --k 5
    musicllm recommend "calm piano for studying" --catalog music.db          # a description alone
    musicllm recommend "with piano" --audio song.mp3 --catalog music.db      # a song, steered by words
    musicllm recommend --track "jazz/blue.flac" --catalog music.db --mode minor --no-explain
    musicllm recommend --audio song.mp3 --url http://127.0.0.1:8000/v1    # ask a running gateway (fast)

What it does is serve.catalog.recommend's (candidates, reasons, the grounding check); this module only
loads what the chosen form needs (a description alone with --no-explain: no model at all). Where a cold `musicllm recommend --audio` spends its time (2
cores; eval/benchmarks/cli_latency.py, results/cli_latency.json): importing torch, transformers
and peft and loading the model, before the song is even decoded; then the LLM's reasons. With
--no-explain only the frozen encoder is loaded (musicllm.embeddings.AudioEncoder: no tokenizer,
no LLM, no peft); with --url the running gateway, whose model is already loaded, does it all and
this process imports neither torch nor transformers.
"""

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from musicllm.vocabulary import API_KEY_ENV
from serve.catalog.filters import add_filter_arguments, filters_from_args
from serve.catalog.recommend import MAX_K, Pick, Recommender
from serve.catalog.recommend import __doc__ as recommend_doc
from serve.catalog.search import Searcher
from serve.catalog.text_rank import TextEmbedderMissing


def print_picks(picks: list[Pick]) -> None:
    if not picks:
        print("no tracks in the catalog match")
    for rank, pick in enumerate(picks, 1):
        similarity = f"  (similarity {pick.similarity:.2f})" if pick.similarity is not None else ""
        print(f"{rank}. {pick.title}{similarity}\n   {pick.reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musicllm recommend", description=__doc__ + "\n" + recommend_doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("description", nargs="?", default=None,
                        help="what you want, in words (\"calm piano for studying\"): searched over the catalog's "
                             "captions and attributes; alone, or fused with --audio / --track")
    song = parser.add_mutually_exclusive_group()
    song.add_argument("--audio", help="the song you like (an audio file)")
    song.add_argument("--track", help="...or a catalog track, by its name")
    parser.add_argument("--catalog", help="the catalog database (musicllm caption --out); not with --url")
    parser.add_argument("--url", help="a running gateway with a catalog (musicllm serve --catalog, musicllm demo), "
                                      "e.g. http://127.0.0.1:8000/v1: it answers; nothing is loaded here")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                        help=f"the gateway's API key, with --url (default: ${API_KEY_ENV})")
    parser.add_argument("--k", type=int, default=5, help=f"how many tracks to recommend (1-{MAX_K})")
    parser.add_argument("--query", help="the same as DESCRIPTION (words to steer the picks, e.g. 'with piano')")
    parser.add_argument("--checkpoint", help="the model: its encoder embeds the song, its LLM explains "
                                             "(default: the default model)")
    parser.add_argument("--no-explain", action="store_true",
                        help="skip the LLM: reasons from the stored facts only (loads only the encoder: faster)")
    parser.add_argument("--max-tokens", type=int, default=96, help="longest LLM explanation per pick, in tokens")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the gateway, with --url")
    parser.add_argument("--json", action="store_true", help="one JSON object per pick instead of text")
    add_filter_arguments(parser)
    args = parser.parse_args(argv)
    if (args.url is None) == (args.catalog is None):
        parser.error("give --catalog (recommend here) or --url (ask a gateway that has a catalog), not both")
    if args.description is not None and args.query is not None:
        parser.error("give the description once: as DESCRIPTION or as --query, not both")
    args.query = args.query if args.query is not None else args.description
    if not (args.audio or args.track or (args.query or "").strip()):
        parser.error("give a song (--audio FILE or --track NAME) and/or a DESCRIPTION of what you want")
    try:
        picks = ask_gateway(args) if args.url else run(args)
    except (ValueError, LookupError, OSError, TextEmbedderMissing) as err:  # AudioError, CatalogError: ValueErrors
        print(f"musicllm recommend: {err}", file=sys.stderr)
        return 2
    if args.json:
        for pick in picks:
            print(json.dumps(asdict(pick), ensure_ascii=False))
    else:
        print_picks(picks)
    return 0


def run(args: argparse.Namespace) -> list[Pick]:
    """The picks computed in this process: the encoder alone with --no-explain, else the whole model."""
    from musicllm.paths import default_model_dir
    from serve.catalog.store import CatalogError, file_hash

    checkpoint = Path(args.checkpoint or default_model_dir()).expanduser()
    needs_model = bool(args.audio) or not args.no_explain  # words alone, unexplained: search only
    if needs_model and not (checkpoint / "config.json").is_file():
        raise CatalogError(f"--checkpoint {checkpoint}: no model there (musicllm quickstart builds the default)")
    filters = filters_from_args(args)
    searcher = Searcher(args.catalog)
    model = engine = None
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if args.no_explain:
            if args.audio:
                from musicllm.embeddings import AudioEncoder

                model = AudioEncoder.from_checkpoint(checkpoint)
        else:
            from musicllm.engines import TransformersEngine

            engine = TransformersEngine.from_checkpoint(checkpoint)
            model = engine.model
        processor = engine.processor if engine else model.processor if model else None
        clip = digest = audio = None
        if args.audio:
            from musicllm.embeddings import audio_embedding

            clip = processor.load_audio(args.audio, name=Path(args.audio).name)
            audio, digest = audio_embedding(model, processor, clip), file_hash(args.audio)
        elif engine is not None:  # the LLM hears the catalog track when its file is still there
            row = searcher.catalog.db.execute("SELECT path FROM tracks WHERE name = ?", (args.track,)).fetchone()
            if row and Path(row[0]).is_file():
                clip = processor.load_audio(row[0], name=Path(row[0]).name)
        return Recommender(searcher, engine).recommend(clip, audio, digest, args.track, args.k, filters, args.query,
                                                       explain=not args.no_explain)
    finally:
        if engine is not None:
            engine.close()
        searcher.close()


def ask_gateway(args: argparse.Namespace) -> list[Pick]:
    """The picks from POST {--url}/recommend: the gateway embeds, searches and explains."""
    import urllib.error
    import urllib.request

    from serve.gateway.openai_format import clip_part

    body = {"k": args.k, "explain": not args.no_explain, "max_tokens": args.max_tokens}
    if args.query:
        body["query"] = args.query
    raw = {"tempo": args.tempo, "key": args.key, "mode": args.mode, "time_signature": args.time_signature,
           "instruments": args.instrument or None, "genre": args.genre, "mood": args.mood}
    body["filters"] = {name: value for name, value in raw.items() if value}
    if args.audio:  # the gateway's formats as they are; anything else (AIFF, Opus...) re-encoded as FLAC
        body["input_audio"] = clip_part(args.audio)["input_audio"]
    elif args.track:
        body["track"] = args.track
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    request = urllib.request.Request(args.url.rstrip("/") + "/recommend", data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as reply:
            data = json.load(reply)["data"]
    except urllib.error.HTTPError as err:
        try:
            message = json.load(err)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = err.reason
        raise ValueError(f"the gateway at {args.url} answered {err.code}: {message}") from None
    except urllib.error.URLError as err:
        raise OSError(f"cannot reach the gateway at {args.url}: {err.reason}") from None
    return [Pick(**pick) for pick in data]


if __name__ == "__main__":
    sys.exit(main())
