"""Resolve, verify, load and publish FroSSL models as self-describing safetensors folders.

A published model is a folder, the same locally and on the Hugging Face Hub:
``model.safetensors`` (timm key names, linear-probe head as ``fc``), ``config.json`` in
timm's Hugging Face format, a ``README.md`` model card and ``SHA256SUMS``.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from ._io import SUMS_NAME, atomic_dir, hash_files, read_sums_file, sha256_file, write_sums_file
from .catalog import WEIGHTS_NAME, CatalogEntry, get_entry

__all__ = [
    "CONFIG_NAME",
    "GALLERY_NAME",
    "SUMS_NAME",
    "write_sums",
    "ModelNotFoundError",
    "ChecksumError",
    "ResolvedModel",
    "resolve",
    "load",
    "load_config",
    "model_config",
    "save_pretrained",
    "read_sums",
    "verify",
    "push_to_hub",
]

_logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"  # timm's Hugging Face config
GALLERY_NAME = "gallery.safetensors"  # optional test images for neighbours (frossl_hub.gallery)
CARD_NAME = "README.md"  # model card; a minimal one is written when none is given
HUB_DIR_ENV = "FROSSL_HUB_DIR"  # folder of published models, one sub-folder per name
HF_PREFIX = "hf-hub:"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelNotFoundError(FileNotFoundError):
    """No weights for a model in any of the places searched."""


class ChecksumError(RuntimeError):
    """A weights file does not match its expected sha256."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's files were found and what they describe."""

    folder: Path
    weights: Path
    config: Dict[str, Any]
    source: str  # path, env, bundled, hf-hub
    entry: Optional[CatalogEntry] = None


# ---------------------------------------------------------------------------------------------
# writing


def model_config(model: torch.nn.Module, **extra: Any) -> Dict[str, Any]:
    """timm Hugging Face config.json content describing a timm model and its head.

    ``extra`` adds top-level fields (``label_names``, ``frossl`` training metadata...).
    """
    from timm.models import get_pretrained_cfg  # noqa: F401  (ensures timm is importable)
    from timm.models._pretrained import filter_pretrained_cfg

    cfg = {k: v for k, v in dict(model.pretrained_cfg).items() if k != "state_dict"}
    pretrained_cfg = filter_pretrained_cfg(cfg, remove_source=True, remove_null=True)
    pretrained_cfg.pop("architecture", None)
    pretrained_cfg.pop("tag", None)
    pretrained_cfg["num_classes"] = model.num_classes
    config: Dict[str, Any] = {
        "architecture": cfg.get("architecture") or type(model).__name__.lower(),
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "global_pool": getattr(model, "global_pool", None) and "avg",
        "model_args": {"in_chans": model.in_chans},
        "pretrained_cfg": pretrained_cfg,
    }
    if pretrained_cfg.get("label_names"):
        config["label_names"] = list(pretrained_cfg["label_names"])
    config.update(extra)
    return json.loads(json.dumps(config))  # tuples -> lists, and proves it serialises


def _minimal_card(config: Dict[str, Any]) -> str:
    """A model card for folders published without one (like timm's push_to_hf_hub)."""
    cfg = config["pretrained_cfg"]
    return (f"---\nlibrary_name: timm\nlicense: {cfg.get('license', 'apache-2.0')}\n---\n\n"
            f"# {config['architecture']}\n\nA FroSSL ResNet18 (`{config['architecture']}`, "
            f"{config['num_classes']} classes, input {cfg.get('input_size')}). Load it with "
            "`frossl_hub.load(PATH)` or `timm.create_model(\"local-dir:PATH\", pretrained=True)`.\n")


def save_pretrained(
    state_dict: Mapping[str, torch.Tensor],
    out_dir: Union[str, Path],
    config: Dict[str, Any],
    dtype: str = "float32",
    extra_files: Optional[Mapping[str, Union[str, bytes, Path]]] = None,
    overwrite: bool = False,
) -> Path:
    """Write a published-model folder atomically: weights, config, extras, SHA256SUMS.

    Args:
        state_dict: backbone + ``fc`` tensors with timm key names.
        out_dir: target folder; must be missing or empty unless ``overwrite``.
        config: timm HF config (``architecture``, ``num_classes``, ``pretrained_cfg``...).
        dtype: stored precision, one of float32, float16, bfloat16.
        extra_files: name -> text, bytes, or a file to copy (README.md, plots, metrics);
            without a README.md a minimal model card is written.
        overwrite: replace an existing folder.
    """
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    for key in ("architecture", "num_classes", "pretrained_cfg"):
        if key not in config:
            raise ValueError(f"config is missing {key!r}; got keys {sorted(config)}")
    tensors = {
        k: (v.detach().to("cpu", DTYPES[dtype]) if v.is_floating_point() else v.detach().cpu())
        .contiguous()
        for k, v in state_dict.items()
    }
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        # one metadata key: safetensors stores metadata as a hash map, so with several keys
        # their order (and the file's sha256) would change from one publish to the next
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        extra = {CARD_NAME: _minimal_card(config), **(extra_files or {})}
        for name, content in extra.items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                target.write_bytes(content.read_bytes())
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        write_sums(tmp)
    return Path(out_dir)


def write_sums(folder: Union[str, Path]) -> Path:
    """(Re)write ``folder``'s SHA256SUMS over every other file in it, atomically."""
    folder = Path(folder)
    return write_sums_file(folder / SUMS_NAME, hash_files(folder))


def push_to_hub(folder: Union[str, Path], repo_id: str, token: Optional[str] = None,
                private: bool = False, commit_message: str = "Add FroSSL model") -> str:
    """Upload a published folder to the Hugging Face Hub (creating the repo if needed)."""
    from huggingface_hub import create_repo, upload_folder

    folder = Path(folder)
    if not (folder / WEIGHTS_NAME).is_file() or not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{folder} is not a published model folder "
                                f"(needs {WEIGHTS_NAME} and {CONFIG_NAME}).")
    create_repo(repo_id, token=token, private=private, exist_ok=True)
    info = upload_folder(repo_id=repo_id, folder_path=str(folder), token=token,
                         commit_message=commit_message)
    return str(getattr(info, "commit_url", info))


# ---------------------------------------------------------------------------------------------
# reading


def read_sums(folder: Path) -> Dict[str, str]:
    """A folder's SHA256SUMS as {relative name: digest}; {} when absent."""
    return read_sums_file(Path(folder) / SUMS_NAME)


def _check_digest(weights: Path, expected: str, what: str) -> None:
    actual = sha256_file(weights)
    if actual != expected:
        raise ChecksumError(
            f"{weights} does not match {what}: expected sha256 {expected}, got {actual}. "
            "The file is corrupt or was replaced; delete it and fetch or publish it again."
        )


def verify(target: Union[str, Path, ResolvedModel]) -> Dict[str, str]:
    """Check every file a model's SHA256SUMS lists, and the weights against the catalog.

    Returns {file: digest} of what was checked. Raises ChecksumError on a mismatch.
    """
    resolved = target if isinstance(target, ResolvedModel) else resolve(target, check=False)
    checked: Dict[str, str] = {}
    for name, digest in read_sums(resolved.folder).items():
        file = resolved.folder / name
        if not file.is_file():
            raise ChecksumError(f"{file} is listed in {SUMS_NAME} but missing.")
        _check_digest(file, digest, f"{resolved.folder / SUMS_NAME}")
        checked[name] = digest
    entry = resolved.entry
    if entry is not None and entry.sha256 and resolved.source != "path":
        _check_digest(resolved.weights, entry.sha256, f"the catalog entry for {entry.name}")
        checked[resolved.weights.name] = entry.sha256
    if not checked:
        raise ChecksumError(f"nothing to verify {resolved.weights} against: no {SUMS_NAME} "
                            "and no catalog sha256.")
    return checked


def _folder_of(path: Path) -> Optional[Path]:
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        return path
    if path.is_file() and path.suffix == ".safetensors" and (path.parent / CONFIG_NAME).is_file():
        return path.parent
    return None


def _from_folder(folder: Path, source: str, entry: Optional[CatalogEntry],
                 weights: Optional[Path] = None) -> ResolvedModel:
    config = load_config(folder)
    weights = weights or folder / (entry.filename if entry else WEIGHTS_NAME)
    if not weights.is_file():
        raise ModelNotFoundError(f"{folder} has {CONFIG_NAME} but no weights file {weights.name}.")
    return ResolvedModel(folder, weights, config, source, entry)


def load_config(folder: Union[str, Path]) -> Dict[str, Any]:
    """Read and sanity-check a model folder's config.json."""
    path = Path(folder) / CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read model config {path}: {exc}") from None
    missing = [k for k in ("architecture", "num_classes", "pretrained_cfg") if k not in config]
    if missing:
        raise ValueError(f"{path} is not a timm model config: missing {missing}.")
    return config


def _hf_cache_dir() -> Optional[str]:
    """The HF cache the environment names now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def _hf_download(repo_id: str, filename: str, offline_only: bool = False) -> Optional[Path]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, _, revision = repo_id.partition("@")
    try:
        return Path(hf_hub_download(repo, filename, revision=revision or None,
                                    cache_dir=_hf_cache_dir(), local_files_only=offline_only))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        _logger.info("hf_hub_download(%s, %s) failed: %s", repo_id, filename, exc)
        return None


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _resolve_hf(repo_id: str, entry: Optional[CatalogEntry], tried: List[str]) -> Optional[ResolvedModel]:
    filename = entry.filename if entry else WEIGHTS_NAME
    offline = _hf_offline()
    tried.append(f"Hugging Face {'cache' if offline else 'Hub'}: {repo_id} "
                 f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}"
                 f"{', HF_HUB_OFFLINE=1' if offline else ''})")
    config = _hf_download(repo_id, CONFIG_NAME, offline)
    weights = _hf_download(repo_id, filename, offline) if config else None
    if config is None or weights is None:
        return None
    _hf_download(repo_id, SUMS_NAME, offline)  # optional: lets resolve() check the folder's sums
    _hf_download(repo_id, GALLERY_NAME, offline)  # optional: nearest-neighbour gallery
    return _from_folder(config.parent, "hf-hub", entry, weights)


def resolve(name_or_path: Union[str, Path], check: bool = True) -> ResolvedModel:
    """Find a model's folder: explicit path, $FROSSL_HUB_DIR, bundled, then the HF Hub.

    Args:
        name_or_path: catalog name, local folder or .safetensors file, or ``hf-hub:ORG/NAME``.
        check: verify the weights' sha256 (catalog digest, else the folder's SHA256SUMS).

    Raises:
        ModelNotFoundError: nowhere to be found; the message lists where it looked.
        ChecksumError: the weights do not match the expected digest.
    """
    text = str(name_or_path)
    tried: List[str] = []
    resolved: Optional[ResolvedModel] = None
    if text.startswith(HF_PREFIX):
        resolved = _resolve_hf(text[len(HF_PREFIX):], None, tried)
        hint = ("check the repo id" + (", or unset HF_HUB_OFFLINE to download it" if _hf_offline() else "")
                + "; or train and publish a model with `python -m train --dataset DATASET --data-dir DATA "
                  "--out RUN_DIR` and pass its folder RUN_DIR/published.")
    elif (folder := _folder_of(Path(text).expanduser())) is not None:
        weights = Path(text) if Path(text).is_file() else None
        resolved = _from_folder(folder, "path", None, weights)
    elif Path(text).expanduser().exists() or "/" in text or text.endswith(".safetensors"):
        raise ModelNotFoundError(
            f"{text} is not a published model: expected a folder with {CONFIG_NAME} and "
            f"{WEIGHTS_NAME} (made by `python -m train.publish RUN_DIR`).")
    else:
        try:
            entry = get_entry(text)
        except RuntimeError as exc:  # unknown name: not found, with the list of names
            raise ModelNotFoundError(str(exc)) from None
        candidates = []
        if os.environ.get(HUB_DIR_ENV):
            candidates.append((Path(os.environ[HUB_DIR_ENV]).expanduser() / entry.name, "env"))
        candidates.append((entry.bundled_path, "bundled"))
        for folder, source in candidates:
            tried.append(f"{folder} ({'$' + HUB_DIR_ENV if source == 'env' else source})")
            if (folder / CONFIG_NAME).is_file() and (folder / entry.filename).is_file():
                resolved = _from_folder(folder, source, entry)
                break
        if resolved is None and entry.has_weights:
            resolved = _resolve_hf(entry.hf_hub_id, entry, tried)
        hint = (f"train and publish it with `python -m train --dataset {entry.dataset} "
                f"--data-dir DATA --out runs/{entry.dataset}` (publishes to "
                f"runs/{entry.dataset}/published), then point ${HUB_DIR_ENV} at a folder holding "
                f"it as {entry.name}/, or pass that folder's path.")
        if entry.status != "published":
            hint = f"{entry.name} is not trained yet: " + hint
    if resolved is None:
        raise ModelNotFoundError(
            f"Could not find weights for {text!r}. Looked in:\n  - " + "\n  - ".join(tried)
            + f"\nTo get it: {hint}")
    if check:
        if resolved.entry is not None and resolved.entry.sha256:
            _check_digest(resolved.weights, resolved.entry.sha256,
                          f"the catalog entry for {resolved.entry.name}")
        expected = read_sums(resolved.folder).get(resolved.weights.name)
        if expected:
            _check_digest(resolved.weights, expected, str(resolved.folder / SUMS_NAME))
    return resolved


def load(
    name_or_path: Union[str, Path],
    pretrained: bool = True,
    num_classes: Optional[int] = None,
    device: Union[str, torch.device, None] = None,
    dtype: Optional[torch.dtype] = None,
    **timm_kwargs: Any,
) -> torch.nn.Module:
    """Load a FroSSL ResNet18 as a timm model in eval mode.

    Args:
        name_or_path: catalog name (``frossl-resnet18-cifar10``), a published folder,
            or ``hf-hub:ORG/NAME``.
        pretrained: load the weights (False: random init with the same config).
        num_classes: None keeps the linear-probe head; 0 gives the 512-d embedding
            model; any other number a fresh head of that size.
        device: where to put the model.
        dtype: parameter dtype (weights stored in float16 load as float32 by default).
        **timm_kwargs: passed on to ``timm.create_model``.

    Returns:
        The model; its ``pretrained_cfg`` describes the preprocessing.

    Raises:
        ModelNotFoundError, ChecksumError, RuntimeError (weights do not fit the config).

    Examples:
        >>> model = frossl_hub.load("frossl-resnet18-cifar10", num_classes=0)  # doctest: +SKIP
    """
    import timm
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from . import models as _models  # noqa: F401  (registers the architectures)

    resolved = resolve(name_or_path)
    config = resolved.config
    pretrained_cfg = dict(config["pretrained_cfg"])
    pretrained_cfg.update(num_classes=config["num_classes"],
                          file=str(resolved.weights), source=resolved.source)
    if config.get("label_names"):
        pretrained_cfg["label_names"] = list(config["label_names"])
    model_args = dict(config.get("model_args", {}))
    if "in_chans" in model_args:  # as timm's local-dir loader: a tuple, channels from model_args
        input_size = pretrained_cfg.get("input_size", (3, 224, 224))
        pretrained_cfg["input_size"] = (model_args["in_chans"], *input_size[1:])
    head = config["num_classes"] if num_classes is None else num_classes
    # as timm merges a folder's model_args: the caller's arguments win (timm's save_for_hf
    # records num_classes and global_pool there too)
    kwargs = {**model_args, **timm_kwargs, "num_classes": head}
    model = timm.create_model(config["architecture"], pretrained=False,
                              pretrained_cfg_overlay=pretrained_cfg, **kwargs)
    if pretrained:
        try:
            state = load_file(str(resolved.weights), device="cpu")
        except SafetensorError as exc:
            raise RuntimeError(f"cannot read {resolved.weights} as safetensors: {exc}") from None
        if head != config["num_classes"]:
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise RuntimeError(f"weights {resolved.weights} do not fit architecture "
                               f"{config['architecture']}: {exc}") from None
        missing = [k for k in missing if not (head != config["num_classes"] and k.startswith("fc."))]
        if missing or unexpected:
            raise RuntimeError(f"weights {resolved.weights} do not match {config['architecture']}: "
                               f"missing {missing[:5]}, unexpected {unexpected[:5]}.")
    model.eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model
