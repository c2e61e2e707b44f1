"""Service settings (pydantic-settings): command-line flags, then the environment, then defaults.

Every option has a flag and an environment variable (``FROSSL_SERVE_<NAME>``, except
``FROSSL_API_KEY`` and ``FROSSL_SERVE_MODEL``); the flag wins over the variable, the variable
over the default. A bad value raises ``ConfigError`` naming the flag or the variable it came from.
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import (Annotated, Any, Dict, List, Literal, NoReturn, Optional, Sequence, Set, Tuple,
                    Union)

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .workers import MAX_AUTO_WORKERS


__all__ = [
    "API_KEY_ENV",
    "ConfigError",
    "DEFAULT_MODEL",
    "ENV_PREFIX",
    "IndexSpec",
    "ModelSpec",
    "Settings",
    "build_parser",
    "describe",
    "env_name",
    "flag_name",
    "parse_auto_count",
    "parse_pixels",
    "parse_settings",
    "parse_size",
    "settings_from_env",
]

DEFAULT_MODEL = "frossl-resnet18-cifar10"  # catalog model served when none is named
ENV_PREFIX = "FROSSL_SERVE_"  # FROSSL_SERVE_PORT, FROSSL_SERVE_MAX_BATCH_SIZE, ...
API_KEY_ENV = "FROSSL_API_KEY"  # the key is read from here rather than a flag visible in `ps`
MODEL_ENV = ENV_PREFIX + "MODEL"
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


@dataclass(frozen=True)
class IndexSpec:
    """A search index to serve (``python -m frossl_hub index build``): its name and folder."""

    name: str
    folder: str

    @classmethod
    def parse(cls, text: str) -> "IndexSpec":
        """``NAME=FOLDER``, or just ``FOLDER`` (named after the folder)."""
        text = text.strip()
        alias, sep, rest = text.partition("=")
        if sep and _ALIAS.match(alias) and rest.strip():
            return cls(alias, rest.strip())
        if not text:
            raise ConfigError("empty index; pass --index FOLDER or --index NAME=FOLDER.")
        return cls(Path(text).expanduser().resolve().name, text)


def _parse_indexes(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)):
        items = [value] if isinstance(value, str) else list(value)
        if all(isinstance(v, str) for v in items):
            return tuple(IndexSpec.parse(v) for item in items for v in item.split(",")
                         if v.strip())
    return value


def _default_name(source: str) -> str:
    if source.startswith("hf-hub:"):
        return source[len("hf-hub:"):].split("@")[0].rstrip("/").rsplit("/", 1)[-1]
    path = Path(source).expanduser()
    if path.exists() or "/" in source or os.sep in source or source.endswith(".safetensors"):
        path = path.resolve()
        return path.parent.name if path.suffix == ".safetensors" else path.name
    from frossl_hub.catalog import clean_name  # lazy: keeps `--help` free of torch

    return clean_name(source)


def parse_size(text: str) -> int:
    """Bytes from ``1048576``, ``16MiB``, ``10MB``, ``512k``."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r} (use bytes, or a unit: 512KiB, 16MiB, 10MB)")
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[(unit or "").lower()])


def parse_auto_count(value: Any) -> Union[str, int]:
    """``auto`` or a whole number >= 1 (``--workers``, ``--threads``)."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ValueError(f"must be 'auto' or a whole number >= 1, got {value!r}")
    return int(text)


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


def _parse_models(value: Any) -> Any:
    """``a=/x,b=/y`` (the variable), a list of such strings (repeated flags), or ModelSpecs."""
    if isinstance(value, (str, list, tuple)):
        items = [value] if isinstance(value, str) else list(value)
        if all(isinstance(v, str) for v in items):
            return tuple(ModelSpec.parse(v) for item in items for v in item.split(",")
                         if v.strip())
    return value


def _check_device(device: str) -> str:
    if device == "auto":
        return device
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{device!r} is not a torch device (cpu, cuda, cuda:1, auto): "
                         f"{exc}") from None
    return device


class Settings(BaseSettings):
    """Everything the service reads at start-up."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid",
                                      validate_by_name=True, validate_by_alias=True)

    # models
    models: Annotated[Tuple[ModelSpec, ...], NoDecode] = Field(
        (ModelSpec(DEFAULT_MODEL, DEFAULT_MODEL),), validation_alias=MODEL_ENV,
        description="catalog name, published folder, .safetensors file or hf-hub:ORG/NAME, "
        "optionally as NAME=SOURCE; repeat to serve several (the first is the default; the "
        "variable takes a comma-separated list)")
    indexes: Annotated[Tuple[IndexSpec, ...], NoDecode] = Field(
        (), description="a search index folder (`python -m frossl_hub index build`), "
        "optionally as NAME=FOLDER; repeat to serve several (its model must be served too)")
    backend: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto", description="what runs the forward pass: auto (ONNX Runtime on the CPU, "
        "PyTorch on CUDA), torch or onnxruntime")
    device: str = Field("auto", description="torch device for the models: auto, cpu, cuda, "
                        "cuda:N (auto: cuda when available)")
    # server
    host: str = Field("127.0.0.1", description="interface to listen on")
    port: int = Field(8000, ge=0, le=65535, description="TCP port")
    workers: Union[Literal["auto"], int] = Field(
        "auto", description="uvicorn worker processes, each loading its own models (/metrics "
        "adds them up; ready when all are); auto: one per CPU core, at most "
        f"{MAX_AUTO_WORKERS}")
    log_level: Literal[LOG_LEVELS] = Field(  # type: ignore[valid-type]
        "info", description="log level")
    api_key: Optional[SecretStr] = Field(
        None, validation_alias=API_KEY_ENV, description="require 'Authorization: Bearer KEY' "
        "on /v1/* and /metrics; the probes, the page and /docs hold no data and stay open "
        f"(prefer ${API_KEY_ENV}: flags show in `ps`)")
    # dynamic batching, named like Triton's dynamic batcher
    max_batch_size: int = Field(32, ge=1, description="most images in one forward pass")
    max_wait_ms: float = Field(0.0, ge=0, le=60_000, description="longest a batch waits to "
                               "fill (0: take what is queued now)")
    max_queue: int = Field(1024, ge=1, description="most images admitted (being decoded or "
                           "queued) but not yet in a forward pass; beyond it requests get 503")
    threads: Union[Literal["auto"], int] = Field(
        "auto", description="intra-op threads of each worker's forward pass, torch or ONNX "
        "Runtime; auto: CPU cores / workers, at least 1")
    preprocess_threads: Optional[int] = Field(
        None, ge=1, description="threads decoding and resizing images (default: CPU cores / "
        "workers, at least 2)")
    # request limits
    max_images: int = Field(64, ge=1, description="most images in one request (beyond it: 413)")
    max_bytes: int = Field(16 * 1024 * 1024, ge=1, description="largest request body, e.g. "
                           "16MiB (beyond it: 413)")
    max_pixels: int = Field(4096 * 4096, ge=1, description="largest width*height of one image, "
                            "e.g. 4096x4096, checked before decoding")

    _models = field_validator("models", mode="before")(_parse_models)
    _indexes = field_validator("indexes", mode="before")(_parse_indexes)
    _device = field_validator("device")(_check_device)

    @field_validator("workers", "threads", mode="before")
    @classmethod
    def _auto_or_count(cls, value: Any) -> Any:
        return parse_auto_count(value)

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("max_pixels", mode="before")
    @classmethod
    def _pixels(cls, value: Any) -> Any:
        return parse_pixels(value) if isinstance(value, str) else value

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: Optional[SecretStr]) -> Optional[SecretStr]:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError(f"the API key is empty; unset {API_KEY_ENV} or give a key")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if not self.models:
            raise ValueError("no model to serve; pass --model NAME_OR_PATH.")
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two models share the name {duplicates[0]!r}; name them apart "
                             "with --model NAME=PATH.")
        index_names = [i.name for i in self.indexes]
        if len(set(index_names)) < len(index_names):
            raise ValueError("two indexes share a name; name them apart with --index NAME=FOLDER.")
        if self.max_queue < self.max_images:
            raise ValueError(f"--max-queue ({self.max_queue}) must hold at least one full "
                             f"request of --max-images ({self.max_images}) images.")
        return self

    @property
    def default_model(self) -> str:
        return self.models[0].name

    def to_env(self) -> Dict[str, str]:
        """Environment variables that rebuild these settings (for uvicorn worker processes)."""
        env: Dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "models":
                value = ",".join(f"{m.name}={m.source}" for m in value)
            elif name == "indexes":
                value = ",".join(f"{i.name}={i.folder}" for i in value)
            elif isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[env_name(name)] = str(value)
        return env


_APPEND = {"models": "--model", "indexes": "--index"}  # repeatable flags
_METAVARS = {"models": "NAME_OR_PATH", "indexes": "FOLDER", "max_bytes": "SIZE", "max_pixels": "PIXELS",
             "api_key": "KEY"}


def flag_name(field: str) -> str:
    """The command-line flag of a settings field (``--model`` for ``models``)."""
    return _APPEND.get(field) or "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else ENV_PREFIX + field.upper()


_FIELD_OF = {**{f: f for f in Settings.model_fields}, MODEL_ENV: "models", API_KEY_ENV: "api_key"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m serve`` argument parser (all defaults None: resolved by Settings)."""
    parser = _Parser(
        prog="python -m serve",
        description="Serve FroSSL ResNet18 embeddings and linear-probe predictions over HTTP.",
        epilog="Each option can also come from the environment variable shown; flags win.",
    )
    for name, field in Settings.model_fields.items():
        default = DEFAULT_MODEL if name == "models" else field.default
        parser.add_argument(flag_name(name), dest=name, default=None, metavar=_METAVARS.get(name),
                            action="append" if name in _APPEND else "store",
                            help=f"{field.description} [env {env_name(name)}; default {default}]")
    return parser


def _bounds(field: str) -> Tuple[Any, Any]:
    metadata = Settings.model_fields[field].metadata
    low = next((m.ge for m in metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in metadata if hasattr(m, "le")), None)
    return low, high


def _config_error(exc: ValidationError, from_flags: Set[str]) -> ConfigError:
    """One ConfigError naming the flag or variable behind the first invalid value."""
    error = exc.errors(include_url=False)[0]
    message = str(error["msg"]).removeprefix("Value error, ")
    field = _FIELD_OF.get(str(error["loc"][0])) if error["loc"] else None
    if field is None:  # a check across fields: its message names the flags
        return ConfigError(message)
    origin = flag_name(field) if field in from_flags else "$" + env_name(field)
    if error["type"] in ("greater_than_equal", "less_than_equal"):
        low, high = _bounds(field)
        allowed = f"in {low:g}..{high:g}" if low is not None and high is not None else f">= {low}"
        return ConfigError(f"{origin} must be {allowed}, got {error['input']}.")
    if error["type"] == "value_error":
        return ConfigError(f"{origin}: {message}")
    return ConfigError(f"{origin}: invalid value {error['input']!r}: {message}")


def parse_settings(argv: Optional[Sequence[str]] = None) -> Settings:
    """Settings from command-line arguments, then ``FROSSL_SERVE_*`` variables, then defaults.

    Raises:
        ConfigError: an unknown flag or a bad value; the message names it.
    """
    args = vars(build_parser().parse_args(list(argv) if argv is not None else None))
    flags = {name: value for name, value in args.items() if value is not None}
    try:
        return Settings(**flags)
    except ValidationError as exc:
        raise _config_error(exc, set(flags)) from None


def settings_from_env() -> Settings:
    """Settings from environment variables only (what uvicorn worker processes see)."""
    return parse_settings([])


def describe(settings: Settings) -> List[str]:
    """One line per setting, for the start-up log (the API key is never shown)."""
    lines = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name == "api_key":
            value = "set" if value else "not set"
        elif name == "models":
            value = ", ".join(f"{m.name} ({m.source})" for m in value)
        elif name == "indexes":
            value = ", ".join(f"{i.name} ({i.folder})" for i in value) or "none"
        lines.append(f"{name}={value}")
    return lines
