"""Logical axes -> mesh axes: the one sharding rules table, applied to params and caches.

Parameter names carry their dimensions (``q_DNH``); each letter is a logical axis, and a leaf
under ``params["layers"]`` has a leading ``layers`` axis (the stacked layers), never sharded.
Model code never names a mesh axis; this table does.
"""

from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from tqjax.models.config import ModelConfig
from tqjax.models.transformer import param_shapes

LETTERS = {"D": "embed", "N": "heads", "K": "kv_heads", "H": "head_dim", "F": "mlp", "V": "vocab", "P": "positions"}

# logical axis -> mesh axis (None: replicated). Tensor parallel over "model", prompts over "data".
RULES = {
    "batch": "data",
    "candidates": None,
    "layers": None,
    "heads": "model",
    "kv_heads": "model",
    "mlp": "model",
    "embed": None,
    "head_dim": None,
    "vocab": None,
    "positions": None,
    "cache_positions": None,
}

# the config field behind each sharded logical axis, for error messages
FIELDS = {"heads": "n_heads", "kv_heads": "n_kv_heads", "mlp": "mlp_dim"}


def logical_axes(name: str, ndim: int) -> tuple:
    """Logical axes of a parameter from its name: ``q_DNH`` -> (embed, heads, head_dim); norms -> (embed,)."""
    suffix = name.rsplit("_", 1)[-1]
    if "_" in name and len(suffix) == ndim and all(c in LETTERS for c in suffix):
        return tuple(LETTERS[c] for c in suffix)
    if name in ("scale", "bias") and ndim == 1:
        return ("embed",)
    raise ValueError(f"no logical axes for parameter {name!r} with {ndim} dims")


def param_axes(path, ndim: int) -> tuple:
    """Logical axes of the parameter at key path ``path`` of a param tree (as
    ``jax.tree_util`` gives it): under ``params["layers"]`` a leading ``layers`` axis, then
    those of its name."""
    keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
    stacked = keys[0] == "layers" and isinstance(keys[1], str)     # not a format-1 per-layer list
    return ("layers",) * stacked + logical_axes(keys[-1], ndim - stacked)


def spec(axes: tuple, mesh: Mesh) -> P:
    return P(*(RULES.get(a) if RULES.get(a) in mesh.axis_names else None for a in axes))


def check_divisible(config: ModelConfig, mesh: Mesh) -> None:
    """Every dimension the rules shard must divide evenly over its mesh axis; say which does not."""
    sizes = dict(zip(mesh.axis_names, mesh.devices.shape))
    for logical, field in FIELDS.items():
        axis = RULES[logical]
        value = getattr(config, field)
        if axis in sizes and value % sizes[axis]:
            raise ValueError(f"{field}={value} is not divisible by the mesh's {axis!r} axis of size {sizes[axis]} "
                             f"(logical axis {logical!r} is sharded over {axis!r}); use a {axis} axis that divides it")


def param_shardings(config: ModelConfig, mesh: Mesh):
    """A pytree of `NamedSharding` shaped like the params of ``config``."""
    check_divisible(config, mesh)
    is_shape = lambda x: isinstance(x, tuple) and all(isinstance(d, int) for d in x)

    def one(path, shape):
        return NamedSharding(mesh, spec(param_axes(path, len(shape)), mesh))

    return jax.tree_util.tree_map_with_path(one, param_shapes(config), is_leaf=is_shape)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Arrays whose leading axis is the batch: split over "data", the rest replicated."""
    return NamedSharding(mesh, P(RULES["batch"], *([None] * (ndim - 1))))


def cache_spec(mesh: Mesh) -> P:
    """A stacked cache ``[L, B, K, S, H]``."""
    return spec(("layers", "batch", "kv_heads", "cache_positions", "head_dim"), mesh)


def shard_model(model, mesh: Mesh):
    """``model`` with its params placed by the rules table."""
    shardings = param_shardings(model.config, mesh)
    return model.replace(params=jax.tree.map(jax.device_put, model.params, shardings))
