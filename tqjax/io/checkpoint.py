"""tqjax's own checkpoint format: ``tqjax.json`` (config) + ``params/`` (orbax) + tokenizer files."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from tqjax.io.errors import CheckpointError
from tqjax.models.config import ModelConfig
from tqjax.models.transformer import param_shapes

CONFIG_FILE = "tqjax.json"
FORMAT_VERSION = 1


def is_tqjax_checkpoint(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def save_checkpoint(path: str, config: ModelConfig, params, tokenizer=None, overwrite: bool = False) -> None:
    """Write a checkpoint folder. Refuses to replace an existing one unless ``overwrite``."""
    path = os.path.abspath(path)
    if os.path.exists(os.path.join(path, "params")) and not overwrite:
        raise FileExistsError(f"{path} already holds a checkpoint; pass overwrite=True to replace it")
    os.makedirs(path, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(path, "params"), params, force=overwrite)
    checkpointer.wait_until_finished()
    dtype = str(jax.tree.leaves(params)[0].dtype)
    meta = {"format_version": FORMAT_VERSION, "dtype": dtype, "config": dataclasses.asdict(config)}
    with open(os.path.join(path, CONFIG_FILE), "w") as f:
        json.dump(meta, f, indent=2)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def _meta(path: str) -> dict:
    with open(os.path.join(path, CONFIG_FILE)) as f:
        return json.load(f)


def read_config(path: str) -> ModelConfig:
    meta = _meta(path)
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported tqjax checkpoint format {meta.get('format_version')!r}")
    fields = dict(meta["config"])
    fields["rope_scaling"] = tuple(fields.get("rope_scaling") or ())
    try:
        return ModelConfig(**fields)
    except TypeError as e:
        raise CheckpointError(f"{path}: {CONFIG_FILE} does not describe a model ({e})") from None


def load_checkpoint(path: str, dtype=None, shardings=None) -> tuple[ModelConfig, dict]:
    """Config and params of a tqjax checkpoint; ``shardings`` (a pytree like params) places them."""
    config = read_config(path)
    shapes = param_shapes(config)
    is_shape = lambda x: isinstance(x, tuple) and all(isinstance(d, int) for d in x)
    target_dtype = jnp.dtype(dtype or _meta(path)["dtype"])
    if shardings is None:
        shardings = jax.tree.map(lambda _: None, shapes, is_leaf=is_shape)
    target = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s, target_dtype, sharding=sh or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])),
                          shapes, shardings, is_leaf=is_shape)
    params = ocp.StandardCheckpointer().restore(os.path.join(path, "params"), target)
    return config, params
