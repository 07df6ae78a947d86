"""The catalog: tracks, their captions and vectors in SQLite, and what is built on them.

From the bottom up: `schema` (the SQLite tables) and `store` (the Catalog class), `index` (the
vector index), `text_rank` (BM25 and text embeddings), `filters`, `search` (and `musicllm
search`), `grounding` (keeping only sentences the stored facts do not contradict), `captioner`
with `caption` (`musicllm caption`) and `caption_ray`, and `recommend`. Nothing here knows HTTP
or the web page.
"""
