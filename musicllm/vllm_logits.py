"""vLLM's half of the engines' rule against repeats (`musicllm.engines.NoRepeat`: repeated token
runs, a list's item named twice): a logits processor that the vLLM server loads (`--logits-processors
musicllm.vllm_logits:NoRepeatLogits`, which `start_vllm_server` passes) and the offline engine
builds with. A request turns it on with `extra_args` (the OpenAI server's `vllm_xargs`)
{"no_repeat_ngram": n}; without it, or with 0, the request decodes as vLLM alone would.

This module imports vLLM: only the processes that run vLLM import it.
"""

from __future__ import annotations

from transformers import AutoTokenizer
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from musicllm.engines import NoRepeat, is_ngram_count
from musicllm.vllm_server import EXTRA_ARG


class NoRepeatLogits(AdapterLogitsProcessor):
    """Masks, for each request that asks for it, the tokens `NoRepeat.banned` names."""

    def __init__(self, vllm_config, device, is_pin_memory: bool):
        super().__init__(vllm_config, device, is_pin_memory)
        self.tokenizer = AutoTokenizer.from_pretrained(vllm_config.model_config.tokenizer)
        self.rules: dict[int, NoRepeat] = {}  # by n: each keeps its words' first tokens

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token greedy decoding picks

    def new_req_logits_processor(self, params):
        n = (params.extra_args or {}).get(EXTRA_ARG)
        if not is_ngram_count(n) or n == 0:
            return None  # off, or not a count (the gateway checks it; a bad value must not stop the engine)

        if n not in self.rules:
            self.rules[n] = NoRepeat(n, self.tokenizer)
        rule = self.rules[n]

        def mask(answer: list[int], logits):
            banned = rule.banned(answer)
            if banned:
                logits[banned] = -float("inf")
            return logits

        return mask
