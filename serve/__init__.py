"""frossl-hub's HTTP service: embeddings and linear-probe predictions behind a micro-batcher.

Run it with ``python -m serve --model NAME_OR_PATH``; build the app in code with
``serve.app.create_app(Settings(...))``.
"""
from .config import ConfigError, ModelSpec, Settings, parse_settings

__all__ = ["ConfigError", "ModelSpec", "Settings", "parse_settings"]
