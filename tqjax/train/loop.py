"""The shared optax training loop: seeded batches, one jitted step, orbax checkpoints, resume.

A run is described by a frozen `TrainConfig` and a loss function
``loss_fn(params, batch, key) -> (loss, metrics)`` where ``batch`` is a dict of arrays with a
leading batch axis ``B`` (a slice of the training arrays, see `tqjax.train.data`). The order of
examples is a pure function of ``(seed, epoch)``, so a run that is interrupted and resumed from
its last checkpoint sees the same batches and ends with the same parameters as one that was not.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from tqjax.train import data as data_lib

LossFn = Callable[[dict, dict, jax.Array], tuple[jax.Array, dict]]
MetricFn = Callable[[dict, dict], dict]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run (AdamW with linear warm-up and cosine decay, global-norm clip).

    ``checkpoint_every`` is in steps; the last step is always checkpointed.
    """

    steps: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    max_to_keep: int = 2

    def __post_init__(self):
        for name in ("steps", "batch_size", "checkpoint_every", "max_to_keep"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass
class TrainResult:
    """Final ``params``, the ``step`` reached, and the training loss of every step run in this call."""

    params: dict
    step: int
    losses: np.ndarray
    resumed_from: int


def optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW on a warm-up + cosine schedule, after clipping the global gradient norm."""
    warmup = min(config.warmup_steps, max(config.steps - 1, 0))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup, max(config.steps, warmup + 1), config.learning_rate * 0.1)
    return optax.chain(optax.clip_by_global_norm(config.clip_norm),
                       optax.adamw(schedule, b1=0.9, b2=0.98, weight_decay=config.weight_decay))


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> np.ndarray:
    """Example indices ``[B]`` of ``step``: consecutive slices of one permutation per epoch."""
    out = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = perm[offset:offset + batch_size - len(out)]
        out.extend(take.tolist())
        pos += len(take)
    return np.asarray(out, np.int64)


def take(arrays: dict, idx: np.ndarray, bucket: int = 16) -> dict:
    """The rows ``idx`` of every array, with the ``*_NT`` and ``*_NTD`` arrays cut to the batch's length.

    The batch's length is the longest ``*lengths_N`` entry among the rows, rounded up to a
    multiple of ``bucket`` (so that only a few shapes are compiled). Cutting right padding off
    changes nothing for a causal model.
    """
    out = {k: v[idx] for k, v in arrays.items()}
    lengths = [v for k, v in out.items() if k.endswith("lengths_N")]
    if lengths:
        longest = max(int(v.max()) for v in lengths)
        cut = -(-longest // bucket) * bucket
        out = {k: v[:, :cut] if k.endswith(("_NT", "_NTD")) else v for k, v in out.items()}
    return out


def _manager(directory: str, config: TrainConfig) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=config.max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def train(loss_fn: LossFn, params: dict, arrays: dict, config: TrainConfig,
          checkpoint_dir: str | None = None, stop_at: int | None = None,
          desc: str = "train", progress: bool = True, frozen: dict | None = None) -> TrainResult:
    """Run ``config.steps`` optimiser steps of ``loss_fn`` on ``arrays`` from ``params``.

    With ``checkpoint_dir``, params, optimiser state, step and rng are saved there every
    ``config.checkpoint_every`` steps and at the end, and a call that finds a checkpoint resumes
    from the latest one (the given ``params`` then only fix the tree structure). ``stop_at``
    ends the call after that step, as an interruption would (tests use it). ``frozen`` holds
    arrays that ``loss_fn`` reads but no step changes (e.g. tied embeddings under trained top
    layers): ``loss_fn`` gets ``{**params, **frozen}``, and only ``params`` are trained and saved.
    The progress bar shows the loss.
    """
    n = data_lib.size(arrays)
    tx = optimizer(config)
    params = jax.tree.map(jnp.array, params)  # a copy: the step donates its state
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32),
             "rng": jax.random.PRNGKey(config.seed)}
    manager = _manager(checkpoint_dir, config) if checkpoint_dir is not None else None
    start = 0
    if manager is not None and manager.latest_step() is not None:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(abstract))
        start = int(state["step"])

    frozen = {} if frozen is None else frozen

    @functools.partial(jax.jit, donate_argnums=(0,))
    def step_fn(state, batch, frozen):
        rng, key = jax.random.split(state["rng"])
        merged = lambda p: loss_fn({**p, **frozen}, batch, key)  # noqa: E731
        (loss, _), grads = jax.value_and_grad(merged, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "opt_state": opt_state, "step": state["step"] + 1, "rng": rng}, loss

    end = config.steps if stop_at is None else min(stop_at, config.steps)
    losses = []
    bar = tqdm(total=config.steps, initial=start, desc=desc, disable=not progress, leave=True,
               dynamic_ncols=True)
    for step in range(start, end):
        batch = take(arrays, batch_indices(step, n, config.batch_size, config.seed))
        state, loss = step_fn(state, batch, frozen)
        losses.append(loss)
        bar.update(1)
        if (step + 1) % 10 == 0 or step + 1 == end:
            bar.set_postfix(loss=f"{float(loss):.4f}")
        if manager is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            manager.save(step + 1, args=ocp.args.StandardSave(state))
    bar.close()
    if manager is not None:
        manager.wait_until_finished()
        manager.close()
    return TrainResult(params=state["params"], step=max(start, end),
                       losses=np.asarray(jax.device_get(losses), np.float32), resumed_from=start)


def evaluate(metric_fn: MetricFn, params: dict, arrays: dict, batch_size: int = 128) -> dict:
    """``metric_fn(params, batch) -> {name: [B] values}`` over every example, as ``{name: [N]}``.

    The last batch is padded by repeating row 0, and the padding is dropped from the result, so
    every batch has one shape (one compilation).
    """
    n = data_lib.size(arrays)
    fn = jax.jit(metric_fn)
    parts: dict[str, list] = {}
    for lo in range(0, n, batch_size):
        idx = np.arange(lo, lo + batch_size)
        idx = np.where(idx < n, idx, 0)
        out = jax.device_get(fn(params, take(arrays, idx)))
        for k, v in out.items():
            parts.setdefault(k, []).append(np.asarray(v)[:min(batch_size, n - lo)])
    return {k: np.concatenate(v) for k, v in parts.items()}
