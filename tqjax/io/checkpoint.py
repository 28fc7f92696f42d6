"""tqjax's own checkpoint format: ``tqjax.json`` (config) + ``params/`` (orbax) + tokenizer files.

Format 2 stores the layers stacked (``params["layers"]``: one dict of ``[L, ...]`` arrays), as the
model runs them. Format 1 stored a list of per-layer dicts; it is still read, and stacked on load.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from tqjax.io.errors import CheckpointError
from tqjax.models.config import ModelConfig
from tqjax.models.transformer import is_shape, param_shapes, stack_layers

CONFIG_FILE = "tqjax.json"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)      # 1: per-layer list of layer dicts; 2: layers stacked [L, ...]


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
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: unsupported tqjax checkpoint format {meta.get('format_version')!r} "
                              f"(this version of tqjax reads formats {', '.join(map(str, READABLE_VERSIONS))})")
    fields = dict(meta["config"])
    fields["rope_scaling"] = tuple(fields.get("rope_scaling") or ())
    try:
        return ModelConfig(**fields)
    except TypeError as e:
        raise CheckpointError(f"{path}: {CONFIG_FILE} does not describe a model ({e})") from None


def load_checkpoint(path: str, dtype=None, shardings=None) -> tuple[ModelConfig, dict]:
    """Config and params of a tqjax checkpoint; ``shardings`` (a pytree like params) places them.

    A format-1 checkpoint (per-layer list) is restored layer by layer, each layer already placed
    as its slice of the stacked sharding, and then stacked into ``[L, ...]`` arrays.
    """
    config = read_config(path)
    shapes = param_shapes(config)
    target_dtype = jnp.dtype(dtype or _meta(path)["dtype"])
    default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    if shardings is None:
        shardings = jax.tree.map(lambda _: default, shapes, is_leaf=is_shape)
    if _meta(path)["format_version"] == 1:
        layer_shardings = jax.tree.map(_layer_sharding, shardings["layers"])
        stored = dict(shardings, layers=[layer_shardings] * config.n_layers)
        params = _restore(path, param_shapes(config, stacked=False), stored, target_dtype)
        stack = jax.jit(stack_layers, out_shardings=shardings["layers"])
        return config, dict(params, layers=stack(params["layers"]))
    return config, _restore(path, shapes, shardings, target_dtype)


def _restore(path: str, shapes, shardings, dtype):
    target = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s, dtype, sharding=sh), shapes, shardings,
                          is_leaf=is_shape)
    return ocp.StandardCheckpointer().restore(os.path.join(path, "params"), target)


def _layer_sharding(sharding):
    """The sharding of one layer's slice of a stacked ``[L, ...]`` array placed by ``sharding``."""
    if isinstance(sharding, jax.sharding.NamedSharding):
        return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*sharding.spec[1:]))
    return sharding
