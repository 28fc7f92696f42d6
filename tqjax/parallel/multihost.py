"""Arrays on a mesh that spans several processes (one global mesh across hosts).

Every process holds the same host value (the same prompts, laid out the same way) and keeps only
its own devices' shards; results come back to every process whole.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


def spans_processes(mesh) -> bool:
    """Whether ``mesh`` has devices of other processes (a global mesh of a multi-host job)."""
    return any(d.process_index != jax.process_index() for d in np.asarray(mesh.devices).flat)


def put_global(x, sharding: NamedSharding):
    """``x`` (the same host value on every process) laid out by ``sharding`` over all processes."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = np.asarray(jax.random.key_data(x))
        spec = NamedSharding(sharding.mesh, P(*sharding.spec, *([None] * (data.ndim - len(sharding.spec)))))
        return jax.random.wrap_key_data(jax.device_put(data, spec), impl=jax.random.key_impl(x))
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.device_put(x, sharding)
    return jax.device_put(np.asarray(x), sharding)


def fetch(tree):
    """Host copies of a pytree of arrays, gathered from every process when they are global."""
    if all(x.is_fully_addressable for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)):
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)
