"""Logical axes -> mesh axes: the one sharding rules table, applied to params and caches.

Parameter names carry their dimensions (``q_DNH``); each letter is a logical axis, and a leaf
under ``params["layers"]`` has a leading ``layers`` axis (the stacked layers), never sharded.
Model code never names a mesh axis; this table does.

Kv heads fewer than the ``model`` axis (GQA on a wide axis, MQA on any) are replicated, as
serving stacks do: each kv head is repeated until the axis divides the count
(``lcm(n_kv_heads, model) / n_kv_heads`` copies), so that every model shard holds the kv heads
its query heads read and its share of the KV cache. Query head ``n`` still reads a copy of kv
head ``n // groups``: the model computes the same function.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from tqjax.models.config import ModelConfig
from tqjax.models.transformer import is_shape, param_shapes

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

# the config field behind each sharded logical axis that the mesh axis must divide (kv heads
# need not: they are replicated up to a count it divides), for error messages
FIELDS = {"heads": "n_heads", "mlp": "mlp_dim"}


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
    if len(keys) > 1 and keys[-2] in ("q_norm", "k_norm"):          # per-head norms: over head_dim
        return ("layers",) * stacked + ("head_dim",)
    return ("layers",) * stacked + logical_axes(keys[-1], ndim - stacked)


def _axis_size(mesh: Mesh, axis) -> int:
    return dict(zip(mesh.axis_names, mesh.devices.shape)).get(axis, 1)


def spec(axes: tuple, mesh: Mesh, shape: tuple | None = None) -> P:
    """The mesh axes of ``axes``; with ``shape``, a dimension its mesh axis does not divide is
    replicated (kv heads stored fewer than the axis, before `replicate_kv_heads`)."""
    out = []
    for i, a in enumerate(axes):
        axis = RULES.get(a) if RULES.get(a) in mesh.axis_names else None
        if axis is not None and shape is not None and shape[i] % _axis_size(mesh, axis):
            axis = None
        out.append(axis)
    return P(*out)


def working_sizes(config: ModelConfig) -> list[int]:
    """The ``model`` axis sizes that can split ``config``: the divisors of its head count and MLP width."""
    g = math.gcd(config.n_heads, config.mlp_dim)
    return [d for d in range(1, g + 1) if g % d == 0]


def check_divisible(config: ModelConfig, mesh: Mesh) -> None:
    """Every dimension the rules shard (but kv heads) must divide evenly over its mesh axis; say
    which does not, and which axis sizes would work."""
    for logical, field in FIELDS.items():
        axis = RULES[logical]
        value, size = getattr(config, field), _axis_size(mesh, axis)
        if axis in mesh.axis_names and value % size:
            ok = [str(d) for d in working_sizes(config)]
            sizes = ok[0] if len(ok) == 1 else ", ".join(ok[:-1]) + " or " + ok[-1]
            raise ValueError(f"{field}={value} is not divisible by the mesh's {axis!r} axis of size {size} "
                             f"(logical axis {logical!r} is sharded over {axis!r}); a {axis} axis of size "
                             f"{sizes} works for this model (n_heads={config.n_heads}, "
                             f"mlp_dim={config.mlp_dim}; kv heads are replicated as needed)")


def kv_replicas(config: ModelConfig, model_size: int) -> int:
    """Copies of each kv head a ``model`` axis of ``model_size`` needs: 1 when it divides
    ``n_kv_heads``, else ``lcm(n_kv_heads, model_size) / n_kv_heads``."""
    K = config.n_kv_heads
    return math.lcm(K, model_size) // K


def with_kv_replicas(config: ModelConfig, model_size: int) -> ModelConfig:
    """``config`` as a ``model`` axis of ``model_size`` runs it (``n_kv_heads`` times its copies)."""
    return config.replace(n_kv_heads=config.n_kv_heads * kv_replicas(config, model_size))


def replicate_kv_heads(params: dict, copies: int) -> dict:
    """``params`` with each kv head repeated ``copies`` times along every ``kv_heads`` axis
    (``k_DKH``, ``v_DKH``, their biases): head ``j`` becomes heads ``j·copies .. j·copies+copies-1``,
    so query head ``n`` of ``N = K·G`` reads copy ``n // (G / copies)`` of kv head ``n // G``."""
    return jax.tree_util.tree_map_with_path(lambda path, x: _repeat_kv(path, x, copies), params)


def _repeat_kv(path, x, copies: int, sharding=None):
    axes = param_axes(path, x.ndim)
    if copies == 1 or "kv_heads" not in axes:
        return x
    repeat = functools.partial(jnp.repeat, repeats=copies, axis=axes.index("kv_heads"))
    return repeat(x) if sharding is None else jax.jit(repeat, out_shardings=sharding)(x)


def param_shardings(config: ModelConfig, mesh: Mesh):
    """A pytree of `NamedSharding` shaped like the params of ``config``.

    Kv heads that the ``model`` axis does not divide are replicated over it here (their stored
    layout); `shard_model` repeats them so that they split.
    """
    check_divisible(config, mesh)

    def one(path, shape):
        return NamedSharding(mesh, spec(param_axes(path, len(shape)), mesh, shape))

    return jax.tree_util.tree_map_with_path(one, param_shapes(config), is_leaf=is_shape)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Arrays whose leading axis is the batch: split over "data", the rest replicated."""
    return NamedSharding(mesh, P(RULES["batch"], *([None] * (ndim - 1))))


CACHE_AXES = ("layers", "batch", "kv_heads", "cache_positions", "head_dim")


def cache_spec(mesh: Mesh) -> P:
    """A stacked cache ``[L, B, K, S, H]``."""
    return spec(CACHE_AXES, mesh)


def constrain(x, axes: tuple, mesh: Mesh | None):
    """``x`` laid out by its logical ``axes`` on ``mesh`` (inside jit; no-op without a mesh)."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec(axes, mesh, x.shape)))


def constrain_batch(x, mesh: Mesh | None):
    """An array whose leading axis is the batch (the rest replicated); scalars replicated."""
    return constrain(x, ("batch",) + (None,) * (x.ndim - 1) if x.ndim else (), mesh)


def constrain_cache(cache, mesh: Mesh | None):
    """A transformer's committed cache or rollout suffix laid out by the rules: ``[L, B, K, S, H]``
    (or per-layer ``[B, K, S, H]`` buffers) with the batch over "data" and the kv heads over
    "model". Other models' caches (the toy, the
    gold oracle) are left to propagation."""
    from tqjax.models.cache import KVCache, Suffix

    if mesh is None or not isinstance(cache, (KVCache, Suffix)):
        return cache
    batch = {name: constrain_batch(getattr(cache, name), mesh) for name in ("start_B", "read_B")
             if hasattr(cache, name)}

    def kv(x):      # stacked [L, B, K, S, H], or per-layer [B, K, S, H] buffers
        if isinstance(x, tuple):
            return tuple(constrain(a, CACHE_AXES[1:], mesh) for a in x)
        return constrain(x, CACHE_AXES, mesh)

    return cache.replace(k=kv(cache.k), v=kv(cache.v), **batch)


def shard_model(model, mesh: Mesh):
    """``model`` placed by the rules table, its kv heads replicated where the ``model`` axis is
    wider than their count (then ``model.config.n_kv_heads`` is the replicated count, and
    `tqjax.save` writes the model as it is). Idempotent."""
    params = jax.tree.map(jax.device_put, model.params, param_shardings(model.config, mesh))
    config = with_kv_replicas(model.config, _axis_size(mesh, RULES["kv_heads"]))
    copies = config.n_kv_heads // model.config.n_kv_heads
    if copies == 1:
        return model.replace(params=params)
    # only the kv leaves change; each is repeated straight into its final shards
    params = jax.tree_util.tree_map_with_path(lambda path, x, sh: _repeat_kv(path, x, copies, sh),
                                              params, param_shardings(config, mesh))
    return model.replace(params=params, config=config)
