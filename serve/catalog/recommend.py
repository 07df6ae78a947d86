"""`musicllm recommend` and `POST /v1/recommend`: catalog tracks like a song and/or fitting a
description, each with a reason.

    Recommender(Searcher("music.db"), engine).recommend(clip, audio_embedding(...), k=5)   # -> [Pick]
    Recommender(Searcher("music.db"), engine).recommend(text="calm piano for studying")  # a description alone
    curl 127.0.0.1:8000/v1/recommend -d '{"input_audio": {"data": "<base64>", "format": "wav"}, "k": 5}'
    curl 127.0.0.1:8000/v1/recommend -d '{"query": "calm piano for studying", "k": 5}'

1. Candidates: nearest neighbours of the song's audio embedding among the catalog's tracks
   (serve.catalog.search.Searcher), restricted by attribute filters, fused with a text query over the
   stored captions and attributes ("more like this but with piano"), or that text search alone
   for a description without a song; the song itself (same file hash, or --track) is left out.
2. Reasons: the LLM hears the song (or, for a description alone, reads the description) and reads
   ONLY the pick's stored facts (summary caption, window captions, attributes); the prompt is built
   from them and nothing else. All picks go to the engine at once (it batches them).
3. Grounding check: titles, names and ids shown come from the catalog rows, never from the LLM.
   Its text is attached to one pick and kept only sentence by sentence: a sentence that quotes a
   name, names another track or holds a capitalised multi-word name is dropped, and so is one
   that states a tempo, key, mode or metre the pick's facts contradict, repeats itself or is
   broken (serve.catalog.grounding); what is left, or a reason written from the stored facts, is the
   pick's `reason`. So no track outside the catalog is ever named.

The command line (`musicllm recommend`) is serve.recommend_cli; the HTTP route, POST
/v1/recommend, is the gateway's (serve.gateway.api); the web page's side is serve.web.recommend_tab.

This module knows nothing about HTTP; the catalog and search are serve.catalog.store / serve.catalog.search,
generation is the engine's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from musicllm.vocabulary import attribute_phrases
from serve.catalog.filters import Filters
from serve.catalog.grounding import checked, sentences
from serve.catalog.search import Hit, Searcher

SYSTEM = ("You are a music assistant. You explain why a track from the user's catalog suits someone who likes "
          "the song they played. Use only the facts given about the track; never mention other songs or artists.")
DESCRIBED = ("You are a music assistant. You explain why a track from the user's catalog fits the music they "
             "described. Use only the facts given about the track; never mention other songs or artists.")
_QUOTED = re.compile(r"[\"“”‘’«»]|(?:^|\s)'[^']+'")
# Two or more capitalised words in a row: how invented titles and artist names look ("Blue Train").
# (Single letters do not count: "in A minor" is a key, not a name.)
_PROPER = re.compile(r"\b[A-Z][a-z']+(?:\s+(?:(?:of|the|and|in|on|a)\s+)?[A-Z][a-z']+)+")
MAX_K = 50
# A checked reason shorter than this says nothing of why ("It is sad.", a small build's whole
# answer, 2026-12-04): the reason is then written from the facts instead.
MIN_REASON_WORDS = 5
MAX_QUERY_CHARS = 2000  # a description or a track name; longer is refused before any search


@dataclass
class Pick(Hit):
    """One recommended catalog track: a search hit (read from the catalog) and its reason."""
    similarity: float | None = None  # audio cosine to the song (after the catalog's standardisation)
    reason: str = ""  # the LLM's grounded explanation, checked; or one written from the facts


def facts_text(hit: Hit, captions: list[str]) -> str:
    """The pick's stored facts as the prompt states them (the only thing the LLM is told)."""
    lines = [f"- {name}: {phrase}" for name, phrase in attribute_phrases(hit.attributes).items()]
    lines += [f"- description: {text}" for text in captions[:4]]
    return "\n".join(lines)


def explanation_messages(hit: Hit, captions: list[str], description: str | None = None) -> list[dict]:
    """The question about one pick: to the song's clip, or (`description`, no clip) to the user's words."""
    from musicllm.configuration import AUDIO_TOKEN

    if description is not None:
        return [{"role": "system", "content": DESCRIBED},
                {"role": "user", "content": f"I am looking for: {description}\nA track from my catalog has these "
                                            f"facts:\n{facts_text(hit, captions)}\n"
                                            "In one or two sentences, why does it fit what I am looking for?"}]
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{AUDIO_TOKEN}\nI like this song. A track from my catalog that sounds "
                                        f"similar has these facts:\n{facts_text(hit, captions)}\n"
                                        "In one or two sentences, why would I like it?"}]


def fallback_reason(hit: Hit) -> str:
    """A reason from the stored facts alone, for when the LLM's text does not survive the check."""
    parts = list(attribute_phrases(hit.attributes, instruments=3).values())
    # Ranked by sound, but a small catalog's nearest track may still be far: say the rank, not "close".
    closeness = f"it is among the catalog's nearest tracks to your song by sound (similarity " \
                f"{hit.matched['audio_cosine']:.2f})" if "audio_cosine" in hit.matched else \
        "its stored description and attributes match your request"
    return f"Recommended because {closeness}" + (f": {', '.join(parts)}." if parts else ".") + \
        (f" {hit.summary}" if hit.summary else "")


def grounded(text: str, own_names: set[str], other_names: set[str], attributes: dict | None = None) -> str:
    """`text` without the sentences that could name a track outside the pick, or that
    serve.catalog.grounding drops (broken, repeated, or, given the pick's `attributes`, contradicting them)."""
    own = {n.lower() for n in own_names if n}
    others = {n.lower() for n in other_names if n and n.lower() not in own}
    kept = []
    for sentence in sentences(checked(text, attributes)):
        lowered = sentence.lower()
        if any(name in lowered for name in others):
            continue
        stripped = sentence
        for name in own_names:  # the pick's own title may be quoted and capitalised
            if name:
                stripped = re.sub(re.escape(name), "it", stripped, flags=re.IGNORECASE)
        if _QUOTED.search(stripped) or _PROPER.search(stripped):
            continue
        kept.append(sentence)
    return " ".join(kept).strip()


class Recommender:
    """Candidates from a Searcher, reasons from an engine (None: reasons from the facts only)."""

    def __init__(self, searcher: Searcher, engine=None):
        self.searcher, self.engine = searcher, engine

    def candidates(self, audio=None, file_hash: str | None = None, track_name: str | None = None, k: int = 5,
                   filters: Filters | None = None, text: str | None = None) -> list[Hit]:
        """Up to `k` catalog tracks like the song (an audio embedding, or a catalog track's name)
        and/or matching the description `text`."""
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k: must be between 1 and {MAX_K}, got {k}")
        catalog, exclude = self.searcher.catalog, set()
        self.searcher.refresh()
        if track_name is not None:
            row = catalog.db.execute("SELECT id FROM tracks WHERE name = ?", (track_name,)).fetchone()
            if row is None:
                raise LookupError(f"track: no track named {track_name!r} in the catalog")
            exclude.add(row[0])
            index = self.searcher.audio_index()
            if row[0] not in set(index.ids.tolist()):
                raise LookupError(f"track: {track_name!r} has no audio embedding in the catalog")
            from musicllm.embeddings import EMBEDDING_KIND

            ids, vectors = catalog.embeddings(EMBEDDING_KIND)
            audio = vectors[list(ids).index(row[0])]
        if audio is None and not (text and text.strip()):
            raise ValueError("give a song (audio or a catalog track's name) or a description of what you want")
        exclude |= self.searcher.same_file(file_hash)  # the song itself may be in the catalog: never recommend it back
        return self.searcher.search(text, audio, filters, k=k, exclude=exclude)

    def requests(self, hits: list[Hit], clip, max_tokens: int = 96, text: str | None = None) -> list:
        """One explanation request per hit: about the song's `clip`, or without one about `text`."""
        from musicllm.engines import GenerationRequest

        description = text.strip() if clip is None else None
        return [GenerationRequest(explanation_messages(h, self._captions(h.track_id), description),
                                  [] if clip is None else [clip], max_tokens=max_tokens) for h in hits]

    def picks(self, hits: list[Hit], texts: list[str] | None) -> list[Pick]:
        """Picks with checked reasons (`texts`: the LLM's answers, one per hit, or None)."""
        names = {h.title for h in hits} | {h.name for h in hits}
        everyone = {r[0] for r in self.searcher.catalog.db.execute("SELECT name FROM tracks")} | names
        picks = []
        for n, hit in enumerate(hits):
            reason = grounded(texts[n], {hit.title, hit.name}, everyone, hit.attributes) if texts else ""
            if len(reason.split()) < MIN_REASON_WORDS:
                reason = ""
            picks.append(Pick(**vars(hit), similarity=hit.matched.get("audio_cosine"),
                              reason=reason or fallback_reason(hit)))
        return picks

    def recommend(self, clip=None, audio=None, file_hash=None, track_name=None, k: int = 5, filters=None,
                  text=None, explain: bool = True) -> list[Pick]:
        """The synchronous whole (the command line): candidates, then batched reasons."""
        hits = self.candidates(audio, file_hash, track_name, k, filters, text)
        texts = None
        if explain and self.engine is not None and hits and (clip is not None or text and text.strip()):
            texts = [c.text for c in self.engine.complete_batch(self.requests(hits, clip, text=text))]
        return self.picks(hits, texts)

    def _captions(self, track_id: int) -> list[str]:
        return [c.text for c in self.searcher.catalog.captions(track_id)]
