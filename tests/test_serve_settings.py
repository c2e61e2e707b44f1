"""Service settings (serve/config.py, pydantic-settings) and the ``python -m serve`` command line."""
from __future__ import annotations

from typing import Dict, List

import pytest

import frossl_hub
from serve.config import ConfigError, ModelSpec, parse_settings
from serve_helpers import run_cli


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the variables a test sets reach the settings."""
    import os

    for name in list(os.environ):
        if name.startswith("FROSSL_SERVE_") or name == "FROSSL_API_KEY":
            monkeypatch.delenv(name)


def set_env(monkeypatch: pytest.MonkeyPatch, env: Dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)



def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {
        "FROSSL_SERVE_MODEL": "a=/x/a,b=/x/b", "FROSSL_SERVE_PORT": "9001",
        "FROSSL_SERVE_MAX_BYTES": "2MiB", "FROSSL_API_KEY": "k",
        "FROSSL_SERVE_MAX_PIXELS": "1024x1024", "FROSSL_SERVE_BACKEND": "torch"})
    settings = parse_settings([])
    assert [m.name for m in settings.models] == ["a", "b"] and settings.default_model == "a"
    assert settings.port == 9001 and settings.api_key.get_secret_value() == "k"
    assert settings.backend == "torch"
    assert settings.max_bytes == 2 * 1024 * 1024 and settings.max_pixels == 1024 * 1024


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {"FROSSL_SERVE_PORT": "9001", "FROSSL_SERVE_MODEL": "a=/x/a"})
    settings = parse_settings(["--port", "9002", "--model", "/x/c", "--model", "d=/x/e"])
    assert settings.port == 9002
    assert settings.models == (ModelSpec("c", "/x/c"), ModelSpec("d", "/x/e"))


def test_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = parse_settings(["--model", "a=/x/a", "--max-wait-ms", "2.5", "--workers", "3",
                               "--api-key", "k", "--backend", "onnxruntime"])
    set_env(monkeypatch, settings.to_env())
    assert parse_settings([]) == settings


def test_the_api_key_never_shows_in_the_settings_repr() -> None:
    settings = parse_settings(["--api-key", "very-secret"])
    assert "very-secret" not in repr(settings) and "very-secret" not in str(settings)


@pytest.mark.parametrize("argv, env, needle", [
    (["--port", "eighty"], {}, "--port: invalid value 'eighty'"),
    ([], {"FROSSL_SERVE_MAX_BATCH_SIZE": "lots"}, "$FROSSL_SERVE_MAX_BATCH_SIZE"),
    (["--max-batch-size", "0"], {}, "--max-batch-size must be >= 1"),
    (["--max-images", "100", "--max-queue", "10"], {}, "--max-queue (10) must hold"),
    (["--max-bytes", "lots"], {}, "--max-bytes"),
    (["--model", "a=/x", "--model", "a=/y"], {}, "two models share the name 'a'"),
    (["--no-such-flag"], {}, "unrecognized arguments"),
    ([], {"FROSSL_SERVE_WORKERS": "0"},
     "$FROSSL_SERVE_WORKERS: must be 'auto' or a whole number >= 1, got '0'"),
    (["--threads", "two"], {}, "--threads: must be 'auto' or a whole number >= 1, got 'two'"),
    (["--backend", "tensorrt"], {}, "--backend: invalid value 'tensorrt'"),
    ([], {"FROSSL_API_KEY": " "}, "$FROSSL_API_KEY: the API key is empty"),
])
def test_bad_settings_name_the_culprit(argv: List[str], env: Dict[str, str], needle: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, env)
    with pytest.raises(ConfigError) as info:
        parse_settings(argv)
    assert needle in str(info.value)


def test_cli_unknown_model_exits_2_with_a_clear_message() -> None:
    result = run_cli("--model", "frossl-resnet18-nonsense", "--port", "0")
    assert result.returncode == 2
    assert "Unknown FroSSL model 'frossl-resnet18-nonsense'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_default_model_not_bundled_exits_2() -> None:
    try:
        frossl_hub.resolve("frossl-resnet18-cifar10", check=False)
        pytest.skip("the default model is available now; `python -m serve` would start")
    except frossl_hub.ModelNotFoundError:
        pass
    result = run_cli(env={"FROSSL_SERVE_PORT": "0"})
    assert result.returncode == 2
    assert "Could not find weights for 'frossl-resnet18-cifar10'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_argument_exits_2() -> None:
    result = run_cli("--max-wait-ms", "-1")
    assert result.returncode == 2
    assert "--max-wait-ms must be in 0..60000" in result.stderr
