"""vLLM's half of the engines' rule against repeated token runs (`musicllm.engines.repeating_tokens`):
a logits processor that the vLLM server loads (`--logits-processors
musicllm.vllm_logits:NoRepeatNGramLogits`, which `start_vllm_server` passes) and the offline engine
builds with. A request turns it on with `extra_args` (the OpenAI server's `vllm_xargs`)
{"no_repeat_ngram": n}; without it, or with 0, the request decodes as vLLM alone would.

This module imports vLLM: only the processes that run vLLM import it.
"""

from __future__ import annotations

from transformers import AutoTokenizer
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from musicllm.engines import is_ngram_count, repeating_tokens, word_starts
from musicllm.vllm_server import EXTRA_ARG


class NoRepeatNGramLogits(AdapterLogitsProcessor):
    """Masks, for each request that asks for it, the tokens `repeating_tokens` names."""

    def __init__(self, vllm_config, device, is_pin_memory: bool):
        super().__init__(vllm_config, device, is_pin_memory)
        self.starts = word_starts(AutoTokenizer.from_pretrained(vllm_config.model_config.tokenizer))

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token greedy decoding picks

    def new_req_logits_processor(self, params):
        n = (params.extra_args or {}).get(EXTRA_ARG)
        if not is_ngram_count(n) or n == 0:
            return None  # off, or not a count (the gateway checks it; a bad value must not stop the engine)

        def mask(answer: list[int], logits):
            banned = repeating_tokens(answer, n, self.starts)
            if banned:
                logits[banned] = -float("inf")
            return logits

        return mask
