"""The peers that benchmarks/serve_throughput.py serves the same model with, written the way
their users write them: LitServe (``litserve_server.py``) and a plain FastAPI endpoint
(``fastapi_server.py``), both PyTorch eager."""
