"""Serving: three subsystems, each in its folder, and the commands on top.

    catalog/   the SQLite catalog, search, batch captioning and recommendation   (the bottom)
    gateway/   the OpenAI-compatible API; POST /v1/recommend uses the catalog
    web/       the Gradio page, a client of the gateway
    chat.py, recommend_cli.py, demo.py   `musicllm chat`, `musicllm recommend`, `musicllm demo`

A folder imports only from itself and the folders above it in this list (tests/test_layers.py).
"""
