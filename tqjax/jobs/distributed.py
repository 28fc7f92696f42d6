"""Several processes, one job: `jax.distributed.initialize` and the few agreements a batch job needs.

On CPU the processes talk through gloo collectives, which must be chosen before JAX starts its
backends; on GPU and TPU that setting is unused.
"""

from __future__ import annotations

import hashlib

import jax
import numpy as np


def check_coordinator(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator must be HOST:PORT, got {address!r}")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False,
               timeout_s: int = 300) -> tuple[int, int]:
    """Join the job's processes; returns ``(process_id, num_processes)``.

    Give all three of ``coordinator`` (``HOST:PORT`` of process 0), ``num_processes`` and
    ``process_id``, or none of them: then ``auto=True`` lets JAX find them (its
    ``JAX_COORDINATOR_ADDRESS`` variable, SLURM, Open MPI, Kubernetes, Cloud TPU) and ``auto=False``
    runs as the only process. Must run before any JAX computation.
    """
    given = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    if any(v is not None for v in given.values()):
        missing = [flag for flag, v in given.items() if v is None]
        if missing:
            raise ValueError(f"{', '.join(missing)} missing: give --coordinator, --num-processes and "
                             f"--process-id together (or none, to use JAX's environment variables)")
        check_coordinator(coordinator)
        if num_processes < 1:
            raise ValueError(f"--num-processes must be >= 1, got {num_processes}")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process-id must be in [0, {num_processes}), got {process_id}")
    elif not auto:
        return 0, 1
    if num_processes == 1:
        return 0, 1
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id,
                               initialization_timeout=timeout_s)
    return jax.process_index(), jax.process_count()


def check_same(text: str, what: str) -> None:
    """Raise unless every process passed the same ``text`` (e.g. the job description)."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), np.uint32)
    every = np.asarray(multihost_utils.process_allgather(digest))
    differ = [i for i in range(every.shape[0]) if not np.array_equal(every[i], every[0])]
    if differ:
        raise ValueError(f"the processes disagree about {what}: processes {differ} differ from "
                         f"process 0; run the same command on every process")


def barrier(name: str) -> None:
    """Wait for every process (so that process 0, which hosts the coordinator, leaves last)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def shutdown() -> None:
    if jax.process_count() > 1:
        jax.distributed.shutdown()
