"""``from frossl_hub import X`` gives the documented object for every public name, whatever was
imported before it.

The bug this guards against: importing ``FroSSLLoss`` used to import the submodule
``frossl_hub.frossl_loss``, which Python binds as the package attribute ``frossl_loss``, so a
later ``from frossl_hub import frossl_loss`` got the module and ``frossl_loss([z1, z2])`` raised
``TypeError: 'module' object is not callable``. Each scenario runs in a fresh process: forked
from one interpreter that holds only third-party packages (torch, torchvision, ...; none of
ours), so no scenario sees another's imports and the suite pays for torch once.
"""
from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

import frossl_hub

ROOT = Path(__file__).resolve().parents[1]

FUNCTION, CLASS, MODULE_CLASS, EXCEPTION, MAPPING = (
    "function", "class", "torch.nn.Module subclass", "exception class", "mapping")

# every public name and the kind of object it is documented as
KINDS: Dict[str, str] = {
    "BarlowTwinsLoss": MODULE_CLASS,
    "CATALOG": MAPPING,
    "CatalogEntry": CLASS,
    "ChecksumError": EXCEPTION,
    "DATASET_SPECS": MAPPING,
    "FroSSLLoss": MODULE_CLASS,
    "ImageReadError": EXCEPTION,
    "ModelNotFoundError": EXCEPTION,
    "Projector": MODULE_CLASS,
    "ResolvedModel": CLASS,
    "SimCLRLoss": MODULE_CLASS,
    "VICRegLoss": MODULE_CLASS,
    "create_backbone": FUNCTION,
    "embed": FUNCTION,
    "export_onnx": FUNCTION,
    "frossl_loss": FUNCTION,
    "get_dataset_spec": FUNCTION,
    "get_entry": FUNCTION,
    "get_transform": FUNCTION,
    "list_models": FUNCTION,
    "load": FUNCTION,
    "model_config": FUNCTION,
    "push_to_hub": FUNCTION,
    "resolve": FUNCTION,
    "save_pretrained": FUNCTION,
    "verify": FUNCTION,
}

PUBLIC = sorted(frossl_hub.__all__)
ALL_NAMES = [f"from frossl_hub import {name}" for name in PUBLIC]
README_FAILURE = [  # the README's first example, as printed then
    "import torch",
    "from frossl_hub import FroSSLLoss, frossl_loss",
    "z1, z2 = torch.randn(8, 16), torch.randn(8, 16)",
    "loss = FroSSLLoss()([z1, z2]) + frossl_loss([z1, z2])",
]

# scenario name -> statements run in order in one fresh process; afterwards (but for the
# single names, kept cheap) every public name is imported again and checked, so a scenario
# also checks the names imported after its own
ONLY = {f"only {name}": [f"from frossl_hub import {name}"] for name in PUBLIC}
SCENARIOS: Dict[str, List[str]] = {
    **ONLY,
    "readme example": README_FAILURE,
    "class, then function": ["from frossl_hub import FroSSLLoss", "from frossl_hub import frossl_loss"],
    "sorted": ALL_NAMES,
    "reversed": ALL_NAMES[::-1],
    "one statement": [f"from frossl_hub import {', '.join(PUBLIC)}"],
    "attributes": ["import frossl_hub"] + [f"{name} = frossl_hub.{name}" for name in PUBLIC],
    "submodules first": ["import pkgutil, importlib, frossl_hub",
                         "for m in pkgutil.walk_packages(frossl_hub.__path__, 'frossl_hub.'): "
                         "importlib.import_module(m.name)"] + ALL_NAMES,
    "losses package first": ["import frossl_hub.losses", "import frossl_hub.losses.frossl"] + ALL_NAMES,
    "timm first": ["import timm"] + ALL_NAMES,
    "trainer first": ["import train.model"] + ALL_NAMES[::-1],
}

# Reads {"scenarios": {scenario: statements}, "public": names, "single": scenarios not rechecked}
# on stdin; prints {scenario: {"bound": {...}, "after": {...}}} or
# {scenario: {"error": traceback}}: the kind of each name the statements bound, and of every
# public name imported again afterwards.
_RUNNER = r'''
import json, os, sys, traceback
import torch, torchvision, huggingface_hub, safetensors, PIL.Image  # third-party only
import inspect
from collections.abc import Mapping

def kind(obj):
    if inspect.ismodule(obj):
        return "module " + obj.__name__
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return "exception class"
        return "torch.nn.Module subclass" if issubclass(obj, torch.nn.Module) else "class"
    if inspect.isfunction(obj):
        return "function"
    if isinstance(obj, Mapping):
        return "mapping"
    return type(obj).__name__

def scenario(statements, public, recheck):
    ns = {}
    for statement in statements:
        exec(statement, ns)
    bound = {name: kind(ns[name]) for name in public if name in ns}
    after = {}
    for name in public if recheck else ():
        fresh = {}
        exec(f"from frossl_hub import {name}", fresh)
        after[name] = kind(fresh[name])
    return {"bound": bound, "after": after}

request = json.load(sys.stdin)
results = {}
for name, statements in request["scenarios"].items():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh interpreter state for frossl_hub
        os.close(read)
        try:
            out = scenario(statements, request["public"], name not in request["single"])
        except BaseException:
            out = {"error": traceback.format_exc()}
        with os.fdopen(write, "w") as pipe:
            json.dump(out, pipe)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    results[name] = json.loads(text) if text else {"error": "the child died"}
print(json.dumps(results))
'''


@pytest.fixture(scope="module")
def outcomes() -> Dict[str, dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    request = json.dumps({"scenarios": SCENARIOS, "public": PUBLIC, "single": sorted(ONLY)})
    done = subprocess.run([sys.executable, "-c", _RUNNER], input=request, capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_every_public_name_has_a_documented_kind():
    assert sorted(KINDS) == PUBLIC


@pytest.mark.parametrize("package", ["frossl_hub", "frossl_hub.losses"])
def test_no_submodule_is_named_like_a_public_name(package):
    module = __import__(package, fromlist=["__all__"])
    submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
    assert submodules, f"found no submodules of {package}"
    assert not submodules & set(module.__all__)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_public_names_are_their_documented_kind(outcomes, scenario):
    outcome = outcomes[scenario]
    assert "error" not in outcome, outcome.get("error")
    assert outcome["bound"] == {name: KINDS[name] for name in outcome["bound"]}
    assert outcome["bound"], "the scenario imported no public name"
    rechecked = [] if scenario in ONLY else PUBLIC
    assert outcome["after"] == {name: KINDS[name] for name in rechecked}


def test_the_readme_example_calls_the_function(outcomes):
    assert outcomes["readme example"]["bound"] == {"FroSSLLoss": MODULE_CLASS, "frossl_loss": FUNCTION}
