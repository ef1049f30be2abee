"""Reading and writing Hugging Face checkpoint directories (safetensors only, never pickle)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"


class CheckpointFormatError(ValueError):
    """The directory is not a readable Hugging Face safetensors checkpoint."""


def read_config(path: str) -> dict:
    config_path = os.path.join(path, CONFIG)
    if not os.path.isfile(config_path):
        raise CheckpointFormatError(f"{path}: no {CONFIG}")
    with open(config_path) as f:
        return json.load(f)


def weight_files(path: str) -> dict[str, str]:
    """Map tensor name -> safetensors file holding it (single file or a sharded index)."""
    single = os.path.join(path, WEIGHTS)
    index = os.path.join(path, WEIGHTS_INDEX)
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        return {name: os.path.join(path, file) for name, file in weight_map.items()}
    if os.path.isfile(single):
        with safe_open(single, framework="numpy") as f:
            return {name: single for name in f.keys()}
    found = sorted(os.listdir(path))
    pickles = [f for f in found if f.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    hint = " (pickle files are never loaded; convert them to safetensors)" if pickles else ""
    raise CheckpointFormatError(f"{path}: no {WEIGHTS} or {WEIGHTS_INDEX}{hint}; found {found}")


def read_tensors(path: str, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Read the named tensors (all when ``names`` is None), opening each shard file once."""
    files = weight_files(path)
    wanted = list(files) if names is None else list(names)
    missing = [n for n in wanted if n not in files]
    if missing:
        raise CheckpointFormatError(f"{path}: missing tensors {missing[:5]}")
    by_file: dict[str, list[str]] = {}
    for name in wanted:
        by_file.setdefault(files[name], []).append(name)
    tensors = {}
    for file, file_names in by_file.items():
        with safe_open(file, framework="numpy") as f:
            for name in file_names:
                tensors[name] = f.get_tensor(name)
    return tensors


def write_checkpoint(path: str, config: dict, tensors: dict[str, np.ndarray]) -> None:
    """Write ``config.json`` + ``model.safetensors`` atomically (temp files, then rename)."""
    os.makedirs(path, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    with tempfile.NamedTemporaryFile(dir=path, suffix=".tmp", delete=False) as tmp:
        tmp_weights = tmp.name
    save_file(tensors, tmp_weights, metadata={"format": "pt"})
    os.replace(tmp_weights, os.path.join(path, WEIGHTS))
    with tempfile.NamedTemporaryFile("w", dir=path, suffix=".tmp", delete=False) as tmp:
        json.dump(config, tmp, indent=2, sort_keys=True)
    os.replace(tmp.name, os.path.join(path, CONFIG))
