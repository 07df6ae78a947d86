"""The Gradio web page: `app` (the chat, uploads, analysis plots; `python -m serve.web.app
--gateway URL`), `plots` and `recommend_tab`. It is a client of the gateway over HTTP and uses
only the gateway's wire format, never the engines or the catalog directly."""
