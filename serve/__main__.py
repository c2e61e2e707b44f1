"""``python -m serve``: parse settings, check the models exist, run uvicorn.

Exit codes: 0 after a clean shutdown, 2 for bad arguments or a model that cannot be found.
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from .config import ConfigError, Settings, parse_settings

PROG = "python -m serve"
# seconds a worker may take to answer uvicorn's supervisor before it is killed and restarted;
# uvicorn's 5 s is too short for a worker importing torch or exporting ONNX on busy cores
WORKER_HEALTHCHECK_S = 120


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def check_models(settings: Settings) -> None:
    """Find (and checksum) every model's files and gallery before starting, so a typo or a
    corrupt file fails fast.

    Raises:
        ConfigError: naming the model and where it was looked for.
    """
    from frossl_hub import ChecksumError, ModelNotFoundError, resolve
    from frossl_hub.gallery import read_gallery

    for spec in settings.models:
        try:
            read_gallery(resolve(spec.source).folder)
        except (ModelNotFoundError, ChecksumError, ValueError, RuntimeError) as exc:
            # RuntimeError: frossl_hub.catalog.get_entry's "Unknown FroSSL model" for a bad name
            raise ConfigError(f"cannot serve model {spec.name!r}: {exc}") from None
    check_indexes(settings)


def check_indexes(settings: Settings) -> None:
    """Open (and checksum) every search index and find the served model with its weights.

    Raises:
        ConfigError: naming the index and what is wrong (corrupt, no such model served).
    """
    from frossl_hub.index import SearchIndexError

    from .indexes import match_models

    try:
        match_models(settings.indexes, settings.models)
    except SearchIndexError as exc:
        raise ConfigError(f"cannot serve the search index: {exc}") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        settings = parse_settings(argv)
        check_models(settings)
    except ConfigError as exc:
        return _fail(str(exc))
    import uvicorn

    from .app import configure_logging, create_app
    from .registry import inference_threads_for, workers_for

    # the workers see numbers, not "auto": every process agrees on the split of the cores
    settings = settings.model_copy(update={"workers": workers_for(settings),
                                           "threads": inference_threads_for(settings)})
    configure_logging(settings.log_level)
    common = dict(host=settings.host, port=settings.port, log_level=settings.log_level,
                  timeout_graceful_shutdown=10)
    if settings.workers > 1:
        _run_workers(settings, common)
    else:
        uvicorn.run(create_app(settings), **common)
    return 0


def _run_workers(settings: Settings, common: dict) -> None:
    """uvicorn worker processes that rebuild the settings from the environment and share one
    set of metrics and their readiness through a temporary folder (``serve.workers``)."""
    import uvicorn

    from .workers import state_folder

    os.environ.update(settings.to_env())
    with state_folder() as env:
        os.environ.update(env)
        uvicorn.run("serve.app:create_app_from_env", factory=True, workers=settings.workers,
                    timeout_worker_healthcheck=WORKER_HEALTHCHECK_S, **common)


if __name__ == "__main__":
    sys.exit(main())
