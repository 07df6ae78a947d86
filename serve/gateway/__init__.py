"""The OpenAI-compatible API gateway: `openai_format` (the wire format: request bodies in,
engine requests out, responses and errors back) and `api` (the FastAPI app and `musicllm serve`,
with POST /v1/recommend on a catalog). It uses the catalog below it, never the web page."""
