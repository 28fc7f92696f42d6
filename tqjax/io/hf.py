"""Load a local Hugging Face folder (config.json + safetensors) strictly and safely."""

from __future__ import annotations

import glob
import json
import os

import jax
import numpy as np

from tqjax.io.errors import CheckpointError
from tqjax.io.hf_config import config_from_hf, label_index
from tqjax.io.hf_weights import convert
from tqjax.io.safetensors_io import read_tensors
from tqjax.models.config import ModelConfig

PICKLED = ("pytorch_model.bin", "*.bin", "*.pt", "*.pth", "*.ckpt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def check_folder(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint path {path!r} does not exist (tqjax never downloads; give a local folder)")
    if not os.path.isdir(path):
        raise CheckpointError(f"checkpoint path {path!r} is not a folder")


def read_hf_config(path: str) -> dict:
    file = os.path.join(path, "config.json")
    if not os.path.isfile(file):
        raise CheckpointError(f"{path}: no config.json (expected a Hugging Face model folder or a tqjax checkpoint)")
    try:
        with open(file) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None


def read_stop_ids(path: str, config: ModelConfig) -> ModelConfig:
    """``config`` with the stop set that ``generate()`` uses: ``generation_config.json``'s
    ``eos_token_id`` (an int or a list) when the folder has one, else ``config.json``'s."""
    file = os.path.join(path, "generation_config.json")
    if not os.path.isfile(file):
        return config
    try:
        with open(file) as f:
            ids = json.load(f).get("eos_token_id")
    except (json.JSONDecodeError, AttributeError) as e:
        raise CheckpointError(f"{file}: not a JSON object ({e})") from None
    if ids is None:
        return config
    try:
        return config.replace(eos_token_id=ids)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{file}: {e}") from None


def weight_files(path: str) -> list[str]:
    """The safetensors files of a folder: one file or a sharded index, never leaving the folder."""
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            try:
                names = sorted(set(json.load(f)["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, AttributeError) as e:
                raise CheckpointError(f"{index}: corrupt sharded index ({e})") from None
        root = os.path.realpath(path)
        files = []
        for name in names:
            full = os.path.realpath(os.path.join(path, name))
            if os.path.dirname(full) != root:
                raise CheckpointError(f"{index}: shard file name {name!r} leaves the checkpoint folder; refused")
            if not os.path.isfile(full):
                raise CheckpointError(f"{index}: shard {name!r} is missing")
            files.append(full)
        return files
    if os.path.isfile(single):
        return [single]
    pickled = [f for pattern in PICKLED for f in glob.glob(os.path.join(path, pattern))]
    if pickled:
        raise CheckpointError(
            f"{path}: only pickled weights ({os.path.basename(pickled[0])}) found; tqjax refuses pickle files "
            "because loading them can run code. Convert them to safetensors first "
            "(e.g. model.save_pretrained(dir, safe_serialization=True) in transformers)")
    raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")


def read_all_tensors(path: str) -> dict:
    """Every tensor of a folder's safetensors files (one file or a sharded index), by name."""
    tensors = {}
    for file in weight_files(path):
        for name, value in read_tensors(file).items():
            if name in tensors:
                raise CheckpointError(f"{path}: tensor {name} appears in more than one shard")
            tensors[name] = value
    return tensors


def load_hf(path: str, dtype=None, reward_label=None) -> tuple[ModelConfig, dict]:
    """Config and numpy parameter tree of a Hugging Face folder (``dtype`` casts, None keeps stored).

    A ``*ForSequenceClassification`` loads as a reward model. Its head ``score.weight`` has one row
    per label ``[num_labels, D]``; the reward is one logit: ``reward_label`` (a name from
    ``id2label`` or an int index) picks its row, and may be left out only for a one-label head.
    The reward is read where transformers' classifier reads it, at the rightmost token that is not
    config.json's ``pad_token_id`` (a ``pad_token_id`` only ``generation_config.json`` has is not
    used, as transformers does not use it there either); the stop set is ``generation_config.json``'s
    ``eos_token_id`` (`read_stop_ids`).
    """
    check_folder(path)
    raw = read_hf_config(path)
    config = read_stop_ids(path, config_from_hf(raw))
    row = label_index(raw, reward_label)
    tensors = read_all_tensors(path)
    if config.kind == "reward":
        tensors["score.weight"] = _score_row(tensors, row)
    params = convert(config, tensors)
    if dtype is not None:
        params = _cast(params, dtype)
    return config, params


def _score_row(tensors: dict, row: int | None):
    """``score.weight`` cut to the chosen label's row, shape (1, D)."""
    score = tensors.get("score.weight")
    if score is None:
        raise CheckpointError("missing tensor(s): score.weight (the classifier head)")
    if score.ndim != 2 or (row is None and score.shape[0] != 1) or (row is not None and row >= score.shape[0]):
        raise CheckpointError(f"tensor score.weight has shape {tuple(score.shape)}, which does not fit the "
                              "labels of config.json's id2label / num_labels")
    return score if row is None else score[row:row + 1]


def _cast(tree, dtype):
    return jax.tree.map(lambda a: np.asarray(a).astype(dtype), tree)


def load_tokenizer(path: str):
    """The folder's tokenizer through transformers (offline, no remote code), or None."""
    if not any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES):
        return None
    import transformers

    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
