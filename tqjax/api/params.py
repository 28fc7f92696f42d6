"""`TQParams`, the models of one decoding job, and their placement on a mesh."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from tqjax.api.checks import check_params
from tqjax.decoding.decode_plan import ROLE_KINDS
from tqjax.parallel.multihost import put_global, spans_processes


@dataclasses.dataclass(frozen=True)
class TQParams:
    """The models of one decoding job; a pytree (model configs are static fields). ``sft`` is
    required; each model given must implement the decoding protocol and be of its role's kind
    (checked here, when a user builds one)."""

    sft: Any
    baseline: Any = None
    reward: Any = None
    baseline_reward: Any = None

    def __post_init__(self):
        check_params(self)


def _flatten(params: TQParams):
    return [getattr(params, role) for role in ROLE_KINDS], None


def _flatten_with_keys(params: TQParams):
    return [(jax.tree_util.GetAttrKey(role), getattr(params, role)) for role in ROLE_KINDS], None


def _unflatten(_, models) -> TQParams:
    """Rebuilt by JAX's tree functions, whose leaves may be tracers, shardings or placeholders:
    not checked again."""
    params = object.__new__(TQParams)
    for role, model in zip(ROLE_KINDS, models):
        object.__setattr__(params, role, model)
    return params


jax.tree_util.register_pytree_with_keys(TQParams, _flatten_with_keys, _unflatten, _flatten)


def place_params(params: TQParams, mesh) -> TQParams:
    """Every model placed by the sharding rules (models without a ``config``, such as the toy,
    stay as they are)."""
    from tqjax.parallel import shard_model

    put = lambda model: model if model is None or not hasattr(model, "config") else shard_model(model, mesh)
    return TQParams(*(put(getattr(params, f.name)) for f in dataclasses.fields(TQParams)))


def place_arrays(arrays: dict, mesh) -> dict:
    """Batch arrays split over the mesh's "data" axis (one mesh across hosts: every process
    holds the whole batch)."""
    from tqjax.parallel import batch_sharding

    if spans_processes(mesh):
        return {k: put_global(v, batch_sharding(mesh, v.ndim)) for k, v in arrays.items()}
    return {k: jax.device_put(v, batch_sharding(mesh, v.ndim)) for k, v in arrays.items()}
