"""schemathesis, driven by the service's own /openapi.json, against a real ``python -m serve``:
no server error and no response that breaks the schema, with and without an API key.

Every check runs (``--checks all``) except those in ``schemathesis.toml`` next to this file,
each disabled there with the reason. The number of examples per operation is bounded, and so
is the time of each run.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List

import httpx
import pytest

from serve_helpers import API_KEY, serving

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 20  # per operation and phase
RUN_TIMEOUT_S = 400  # one schemathesis run, in case the machine is slow; usually a minute


def _schemathesis(url: str, extra: List[str], workdir: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; "
               "sys.exit(schemathesis())", "--config-file", str(CONFIG), "--no-color", "run",
               url + "/openapi.json", "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
               "--seed", "1", "--workers", "1", "--generation-database", "none",
               "--request-timeout", "60", *extra]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)


def _args(keyed: bool) -> List[str]:
    return ["--max-images", "4", "--max-bytes", "64KiB", "--max-queue", "64"] + (
        ["--api-key", API_KEY] if keyed else [])


@pytest.mark.parametrize("keyed", [False, True], ids=["no-key", "api-key"])
def test_schemathesis_finds_nothing(tiny_dir: Path, tmp_path: Path, keyed: bool) -> None:
    with serving(["--model", f"tiny={tiny_dir}", *_args(keyed)], tmp_path / "log") as url:
        spec = httpx.get(url + "/openapi.json").json()
        assert ("securitySchemes" in spec.get("components", {})) is keyed
        extra = ["--header", f"Authorization: Bearer {API_KEY}"] if keyed else []
        result = _schemathesis(url, extra, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    assert "No issues found" in output or "passed" in output, output[-4000:]
