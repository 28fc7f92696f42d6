"""Scale: the device mesh, the logical-axis rules table, sharded params."""

from tqjax.parallel.mesh import make_mesh
from tqjax.parallel.rules import RULES, batch_sharding, check_divisible, param_shardings, shard_model

__all__ = ["RULES", "batch_sharding", "check_divisible", "make_mesh", "param_shardings", "shard_model"]
