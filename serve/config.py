"""Service settings: one frozen dataclass, filled from the command line, then the environment.

Every option has a command-line flag and an environment variable (``FROSSL_SERVE_<NAME>``,
except ``FROSSL_API_KEY``); the flag wins over the variable, the variable over the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NoReturn, Optional, Sequence, Tuple

__all__ = [
    "API_KEY_ENV",
    "ConfigError",
    "DEFAULT_MODEL",
    "ENV_PREFIX",
    "ModelSpec",
    "Settings",
    "build_parser",
    "describe",
    "parse_pixels",
    "parse_settings",
    "parse_size",
    "settings_from_env",
]

DEFAULT_MODEL = "frossl-resnet18-cifar10"  # catalog model served when none is named
ENV_PREFIX = "FROSSL_SERVE_"  # FROSSL_SERVE_PORT, FROSSL_SERVE_MAX_BATCH_SIZE, ...
API_KEY_ENV = "FROSSL_API_KEY"  # the key is read from here rather than a flag visible in `ps`
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # NAME in --model NAME=SOURCE
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024,
               "m": 1000 ** 2, "mb": 1000 ** 2, "mi": 1024 ** 2, "mib": 1024 ** 2,
               "g": 1000 ** 3, "gb": 1000 ** 3, "gi": 1024 ** 3, "gib": 1024 ** 3}


class ConfigError(ValueError):
    """A setting is invalid; the message names the flag or variable and what is allowed."""


@dataclass(frozen=True)
class ModelSpec:
    """A model to serve: the name requests use, and where frossl_hub.load finds it."""

    name: str
    source: str  # catalog name, published folder, .safetensors file or hf-hub:ORG/NAME

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """``NAME=SOURCE``, or just ``SOURCE`` (named after the catalog entry or folder)."""
        text = text.strip()
        if not text:
            raise ConfigError("empty model name; pass a catalog name, a folder or NAME=FOLDER.")
        alias, sep, rest = text.partition("=")
        if sep and _ALIAS.match(alias) and rest.strip():
            return cls(alias, rest.strip())
        return cls(_default_name(text), text)


def _default_name(source: str) -> str:
    if source.startswith("hf-hub:"):
        return source[len("hf-hub:"):].split("@")[0].rstrip("/").rsplit("/", 1)[-1]
    path = Path(source).expanduser()
    if path.exists() or "/" in source or os.sep in source or source.endswith(".safetensors"):
        path = path.resolve()
        return path.parent.name if path.suffix == ".safetensors" else path.name
    from frossl_hub.catalog import clean_name  # lazy: keeps `--help` free of torch

    return clean_name(source)


@dataclass(frozen=True)
class Settings:
    """Everything the service reads at start-up."""

    # models
    models: Tuple[ModelSpec, ...] = (ModelSpec(DEFAULT_MODEL, DEFAULT_MODEL),)  # first: default
    device: str = "auto"  # auto: cuda when available, else cpu
    # server
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # uvicorn worker processes, each with its own models and batchers
    log_level: str = "info"
    api_key: Optional[str] = field(default=None, repr=False)  # Bearer token; None: open
    # dynamic batching, named like Triton's dynamic batcher
    max_batch_size: int = 32  # images per forward pass
    max_wait_ms: float = 0.0  # how long a batch may wait to fill; 0 takes what is queued now
    max_queue: int = 1024  # images admitted but not yet in a forward pass; beyond it: 503
    torch_threads: Optional[int] = None  # intra-op threads; None: CPU cores / workers
    preprocess_threads: Optional[int] = None  # image decoding threads; None: cores / workers
    # request limits
    max_images: int = 64  # images per request
    max_bytes: int = 16 * 1024 * 1024  # request body size
    max_pixels: int = 4096 * 4096  # width * height of one image, checked before decoding

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("no model to serve; pass --model NAME_OR_PATH.")
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"two models share the name {duplicates[0]!r}; name them apart "
                              f"with --model NAME=PATH.")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {self.port}.")
        for name in ("workers", "max_batch_size", "max_queue", "max_images", "max_bytes",
                     "max_pixels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, "
                                  f"got {getattr(self, name)}.")
        for name in ("torch_threads", "preprocess_threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, "
                                  f"got {getattr(self, name)}.")
        if not 0 <= self.max_wait_ms <= 60_000:  # also rejects nan
            raise ConfigError(f"--max-wait-ms must be in 0..60000, got {self.max_wait_ms}.")
        if self.max_queue < self.max_images:
            raise ConfigError(f"--max-queue ({self.max_queue}) must hold at least one full "
                              f"request of --max-images ({self.max_images}) images.")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, "
                              f"got {self.log_level!r}.")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError(f"the API key is empty; unset {API_KEY_ENV} or give a key.")
        _check_device(self.device)

    @property
    def default_model(self) -> str:
        return self.models[0].name

    def to_env(self) -> Dict[str, str]:
        """Environment variables that rebuild these settings (for uvicorn worker processes)."""
        env: Dict[str, str] = {}
        for opt in _OPTIONS:
            value = getattr(self, opt.attr)
            if value is None:
                continue
            if opt.attr == "models":
                value = ",".join(f"{m.name}={m.source}" for m in value)
            env[opt.env] = str(value)
        return env


def _check_device(device: str) -> None:
    if device == "auto":
        return
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, "
                          f"auto): {exc}") from None


# ---------------------------------------------------------------------------------------------
# parsing


def parse_size(text: str) -> int:
    """Bytes from ``1048576``, ``16MiB``, ``10MB``, ``512k``."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r} (use bytes, or a unit: 512KiB, 16MiB, 10MB)")
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[(unit or "").lower()])


def parse_pixels(text: str) -> int:
    """Pixels from ``16777216`` or ``4096x4096``."""
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        values = [int(p.strip()) for p in parts]
    except ValueError:
        raise ValueError(f"not a pixel count: {text!r} (use 16777216 or 4096x4096)") from None
    if len(values) not in (1, 2):
        raise ValueError(f"not a pixel count: {text!r} (use 16777216 or 4096x4096)")
    return values[0] * (values[1] if len(values) == 2 else 1)


def _int(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ValueError("expected a whole number") from None


def _float(text: str) -> float:
    try:
        return float(str(text).strip())
    except ValueError:
        raise ValueError("expected a number") from None


def _parse_models(values: Sequence[str]) -> Tuple[ModelSpec, ...]:
    items = [v for value in values for v in str(value).split(",") if v.strip()]
    return tuple(ModelSpec.parse(v) for v in items)


@dataclass(frozen=True)
class _Option:
    attr: str  # Settings field
    flag: str
    env: str
    parse: Callable[[str], Any]
    help: str
    metavar: Optional[str] = None


def _opt(attr: str, parse: Callable[[str], Any], help: str, metavar: Optional[str] = None,
         flag: Optional[str] = None, env: Optional[str] = None) -> _Option:
    return _Option(attr, flag or "--" + attr.replace("_", "-"), env or ENV_PREFIX + attr.upper(),
                   parse, help, metavar)


_OPTIONS: Tuple[_Option, ...] = (
    _opt("models", str, "catalog name, published folder, .safetensors file or hf-hub:ORG/NAME, "
         "optionally as NAME=SOURCE; repeat to serve several (the first is the default; the "
         "variable takes a comma-separated list)", "NAME_OR_PATH", "--model", ENV_PREFIX + "MODEL"),
    _opt("host", str, "interface to listen on"),
    _opt("port", _int, "TCP port"),
    _opt("device", str, "torch device for the models: auto, cpu, cuda, cuda:N"),
    _opt("workers", _int, "uvicorn worker processes (each loads its own models)"),
    _opt("max_batch_size", _int, "most images in one forward pass"),
    _opt("max_wait_ms", _float, "longest a batch waits to fill (0: take what is queued now)"),
    _opt("max_queue", _int, "most images admitted (being decoded or queued) but not yet in a "
         "forward pass; beyond it requests get 503 at once"),
    _opt("torch_threads", _int, "torch intra-op threads (default: CPU cores / workers)"),
    _opt("preprocess_threads", _int, "threads decoding and preprocessing images (default: "
         "CPU cores / workers, at least 2)"),
    _opt("max_images", _int, "most images in one request (beyond it: 413)"),
    _opt("max_bytes", parse_size, "largest request body, e.g. 16MiB (beyond it: 413)", "SIZE"),
    _opt("max_pixels", parse_pixels, "largest width*height of one image, e.g. 4096x4096, "
         "checked before decoding", "PIXELS"),
    _opt("api_key", str, "require 'Authorization: Bearer KEY' on every route but /healthz "
         f"(prefer ${API_KEY_ENV}: flags show in `ps`)", "KEY", env=API_KEY_ENV),
    _opt("log_level", str, "log level: " + ", ".join(LOG_LEVELS)),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m serve`` argument parser (all defaults None: resolved later)."""
    defaults = Settings.__dataclass_fields__
    parser = _Parser(
        prog="python -m serve",
        description="Serve FroSSL ResNet18 embeddings and linear-probe predictions over HTTP.",
        epilog="Each option can also come from the environment variable shown; flags win.",
    )
    for opt in _OPTIONS:
        default = defaults[opt.attr].default
        if opt.attr == "models":
            default = DEFAULT_MODEL
        kwargs: Dict[str, Any] = dict(dest=opt.attr, default=None, metavar=opt.metavar,
                                      help=f"{opt.help} [env {opt.env}; default {default}]")
        if opt.attr == "models":
            kwargs["action"] = "append"
        parser.add_argument(opt.flag, **kwargs)
    return parser


def _convert(opt: _Option, raw: Any, origin: str) -> Any:
    try:
        if opt.attr == "models":
            return _parse_models(raw if isinstance(raw, list) else [raw])
        return opt.parse(raw)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{origin}: invalid value {raw!r}: {exc}") from None


def parse_settings(argv: Optional[Sequence[str]] = None,
                   environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Settings from command-line arguments, then environment variables, then defaults.

    Raises:
        ConfigError: an unknown flag or a bad value; the message names it.
    """
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    values: Dict[str, Any] = {}
    for opt in _OPTIONS:
        raw = getattr(args, opt.attr)
        if raw is not None:
            values[opt.attr] = _convert(opt, raw, opt.flag)
        elif environ.get(opt.env, "").strip():
            values[opt.attr] = _convert(opt, environ[opt.env].strip(), f"${opt.env}")
    return Settings(**values)


def settings_from_env(environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Settings from environment variables only (what uvicorn worker processes see)."""
    return parse_settings([], environ)


def describe(settings: Settings) -> List[str]:
    """One line per setting, for the start-up log (the API key is never shown)."""
    lines = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name == "api_key":
            value = "set" if value else "not set"
        elif f.name == "models":
            value = ", ".join(f"{m.name} ({m.source})" for m in value)
        lines.append(f"{f.name}={value}")
    return lines
