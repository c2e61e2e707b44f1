"""The READMEs' code runs as printed: every ```python block runs, and every ``python -m``
command of a ```bash block names a module whose ``--help`` accepts each ``--flag`` it uses.

Each Python block runs in its own subprocess (with a timeout) in a fresh temporary folder
that holds what the README's examples name: two real CIFAR-10 test images, ``a.png`` and
``b.jpg``, and ``runs/c10/published``, a published model folder (the bundled CIFAR-10 one).
A block that cannot run here has ``<!-- readme-test: skip (REASON) -->`` on the line right
above its fence and is skipped with that reason.
"""
from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
READMES = ("README.md", "serve/README.md")
BLOCK_TIMEOUT_S = 300
HELP_TIMEOUT_S = 120
SKIP_MARK = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<reason>.+)\)\s*-->$")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
LONG_FLAG = re.compile(r"(?<![\w-])--[A-Za-z0-9][\w-]*")
SUBCOMMANDS = re.compile(r"\{([\w,-]+)\}")  # argparse's usage line: {list,info,embed,...}
SHELL_ENDS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1"}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a README."""

    readme: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: Optional[str]  # the reason of a skip mark right above the fence

    @property
    def id(self) -> str:
        return f"{self.readme}:{self.line}"


def parse_blocks(text: str, readme: str) -> List[Block]:
    """The fenced blocks of a Markdown text, with the skip mark above each (if any)."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{readme}:{i + 1}: a code fence that is never closed")
        mark = SKIP_MARK.match(lines[i - 1].strip()) if i > 0 else None
        blocks.append(Block(readme, i + 1, opening["lang"], "\n".join(lines[i + 1:end]) + "\n",
                            mark["reason"] if mark else None))
        i = end + 1
    return blocks


def readme_blocks(lang: str) -> List[Block]:
    return [b for name in READMES for b in parse_blocks((ROOT / name).read_text(encoding="utf-8"), name)
            if b.lang == lang]


def module_commands(script: str) -> List[Tuple[str, List[str]]]:
    """``(module, arguments)`` of each ``python -m`` / ``torchrun -m`` command of a shell script
    (continued lines joined, comments and what follows a pipe or ``&&`` dropped)."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"\w+=.*", words[0]):  # VAR=value prefixes
            words.pop(0)
        if not words or not re.fullmatch(r"(.*/)?(python[\d.]*|torchrun)", words[0]) or "-m" not in words:
            continue
        start = words.index("-m") + 1
        end = next((k for k in range(start, len(words)) if words[k] in SHELL_ENDS), len(words))
        commands.append((words[start], words[start + 1:end]))
    return commands


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("FROSSL_HUB_DIR", None)  # only what the README names: bundled models, the folder here
    return env


@functools.lru_cache(maxsize=None)
def help_text(module: str, subcommand: Tuple[str, ...] = ()) -> str:
    """``python -m MODULE [SUBCOMMAND] --help``, failing the test if it does not answer."""
    done = subprocess.run([sys.executable, "-m", module, *subcommand, "--help"], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
    assert done.returncode == 0, f"python -m {' '.join([module, *subcommand])} --help failed:\n{done.stderr[-2000:]}"
    return done.stdout


def accepted_flags(module: str, arguments: List[str]) -> Tuple[str, set]:
    """The command as checked (module and its subcommands, nested ones too, as in
    ``frossl_hub cache clear``) and the long flags its ``--help`` lists."""
    subcommand: Tuple[str, ...] = ()
    text = help_text(module)
    for argument in arguments:
        usage = text.split("\n\n", 1)[0]
        choices = {c for group in SUBCOMMANDS.findall(usage) for c in group.split(",")}
        if argument not in choices:
            break
        subcommand += (argument,)
        text = help_text(module, subcommand)
    return " ".join((module,) + subcommand), set(LONG_FLAG.findall(text))


@pytest.fixture
def readme_folder(tmp_path: Path) -> Path:
    """A fresh working folder with the files the README's examples name."""
    from frossl_hub.catalog import get_entry
    from frossl_hub.gallery import read_gallery

    bundled = get_entry("frossl-resnet18-cifar10").bundled_path
    images = read_gallery(bundled).images  # real CIFAR-10 test images, uint8 (N, 3, 32, 32)
    cwd = tmp_path / "cwd"
    (cwd / "runs" / "c10").mkdir(parents=True)
    Image.fromarray(images[0].permute(1, 2, 0).numpy()).save(cwd / "a.png")
    Image.fromarray(images[1].permute(1, 2, 0).numpy()).save(cwd / "b.jpg", quality=95)
    (cwd / "runs" / "c10" / "published").symlink_to(bundled, target_is_directory=True)
    return cwd


PYTHON_BLOCKS = readme_blocks("python")
BASH_BLOCKS = readme_blocks("bash")


def test_the_readme_has_python_blocks_that_run():
    assert [b for b in PYTHON_BLOCKS if b.readme == "README.md" and b.skip is None]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.id for b in PYTHON_BLOCKS])
def test_python_block_runs(block: Block, readme_folder: Path, tmp_path: Path):
    if block.skip:
        pytest.skip(block.skip)
    script = tmp_path / "block.py"
    script.write_text(block.code, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=readme_folder, env=_env(),
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    assert done.returncode == 0, f"{block.id} failed:\n{block.code}\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("block", BASH_BLOCKS, ids=[b.id for b in BASH_BLOCKS])
def test_module_commands_use_flags_their_help_lists(block: Block):
    if block.skip:
        pytest.skip(block.skip)
    unknown = {}
    for module, arguments in module_commands(block.code):
        command, flags = accepted_flags(module, arguments)
        used = {a.split("=", 1)[0] for a in arguments if a.startswith("--")}
        if used - flags:
            unknown[f"python -m {command}"] = sorted(used - flags)
    assert unknown == {}, f"{block.id}: flags its --help does not list"


def test_the_bash_blocks_show_module_commands():
    modules = {m for b in BASH_BLOCKS for m, _ in module_commands(b.code)}
    assert {"serve", "train", "frossl_hub"} <= modules


def test_parsing_finds_skip_marks_commands_and_subcommands():
    text = ("x\n<!-- readme-test: skip (needs a GPU) -->\n```python\nprint(1)\n```\n\n"
            "```bash\nFOO=1 .venv/bin/python -m frossl_hub embed DIR --model M \\\n  --out e.npy  # note --x\n"
            "torchrun --nproc-per-node 2 -m train --epochs 1 | tee log\ncurl -F a=b x\n```\n")
    python, bash = parse_blocks(text, "R.md")
    assert (python.lang, python.skip, python.code, python.line) == ("python", "needs a GPU", "print(1)\n", 3)
    assert bash.skip is None
    assert module_commands(bash.code) == [
        ("frossl_hub", ["embed", "DIR", "--model", "M", "--out", "e.npy"]),
        ("train", ["--epochs", "1"]),
    ]


def test_a_flag_a_module_does_not_have_is_caught():
    command, flags = accepted_flags("frossl_hub", ["embed", "DIR", "--model", "M"])
    assert command == "frossl_hub embed"
    assert "--model" in flags and "--no-such-flag" not in flags
