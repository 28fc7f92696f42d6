"""Memory planning: bytes per device of a decode, the largest batch that fits, a candidate chunk.

The estimate follows what the compiled program holds at its peak (docs/design.md, "Cost and memory"):

- **params** of every model, sharded by the rules table (tensor parallel over "model");
- **committed KV caches** of every active model: ``B × L × 2 × K × (T + max_new_tokens) × H``;
  the reward model of a plain decode of one batch, which reads each finished response once after
  the loop (`tqjax.decoding.loop.read_responses`), keeps the prompts' ``T`` slots only;
- **rollout state**: the private suffix caches of the k·M rollouts of every row for the rollout
  model (H tokens): ``B × c × M × L × 2 × K × H × head_dim`` with ``c`` the candidates evaluated
  at once (``k``, or ``DecodeConfig.candidate_chunk``);
- **activations**: the largest transient of one step (logits and log-softmax over V for the
  B·c·M rollout rows, attention scores over prefix + suffix, the MLP), of the block pass in which
  the reward model (and r_BL or π_sft) reads the B·c·M finished rollouts of H+1 tokens at once,
  or of the prefill (scores over T × T, the MLP over B·T tokens; for that after-loop read, the
  block of max_new_tokens tokens), whichever is larger.

The batch is split over "data", heads, kv heads and the MLP over "model"; the vocabulary and the
width are replicated (as in `tqjax.parallel.rules`). Buffers that XLA keeps twice (a loop's carry
in and out) are not modelled: `tests/parallel/test_plan.py` checks the total against the compiled
program's own memory analysis.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp

from tqjax.decoding.decode_plan import CANDIDATE_METHODS, ROLES, DecodePlan, batch_bucket, prompt_bucket
from tqjax.models.transformer import is_shape, param_shapes, runs_unrolled
from tqjax.parallel.rules import FIELDS, RULES, param_axes, with_kv_replicas

F32 = 4
STEP_ROW_F32 = dict(vocab=3, scores=2, mlp=2, width=4)      # live float32 copies per rollout row
PREFILL_TOKEN_F32 = dict(scores=2, mlp=2, width=4)          # ... per prompt token in the prefill
BLOCK_TOKEN_F32 = dict(vocab=2, scores=1, mlp=1, width=2)   # ... per token of a rollout read at once


class PlanError(ValueError):
    """A configuration that does not fit the memory budget."""


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Estimated bytes per device. ``kv_cache`` and ``params`` map roles to bytes."""

    batch: int                  # padded batch (all devices)
    prompt_len: int             # padded prompt bucket T
    candidates: int             # candidates evaluated at once (k, or the chunk); 0 without rollouts
    mesh: tuple                 # (data, model)
    params: dict
    kv_cache: dict
    rollout: int
    step_activations: int
    prefill_activations: int
    budget: int | None = None

    @property
    def activations(self) -> int:
        """The activations at the program's peak (a decoding step's, or the prefill's)."""
        return self.step_activations if self._step_peak else self.prefill_activations

    @property
    def _step_peak(self) -> bool:
        return self.rollout + self.step_activations >= self.prefill_activations

    @property
    def total(self) -> int:
        return (sum(self.params.values()) + sum(self.kv_cache.values())
                + max(self.rollout + self.step_activations, self.prefill_activations))

    @property
    def fits(self) -> bool:
        return self.budget is None or self.total <= self.budget

    def table(self) -> str:
        """The estimate as a text table (one line per item, bytes in MiB/GiB)."""
        rows = [(f"params {role}", n) for role, n in self.params.items()]
        rows += [(f"KV cache {role}", n) for role, n in self.kv_cache.items()]
        rows.append(("rollout state" + ("" if self._step_peak else " (not live at the peak)"),
                     self.rollout if self._step_peak else 0))
        rows.append((f"activations (peak: {'decode step' if self._step_peak else 'prefill'})",
                     self.activations))
        rows.append(("total", self.total))
        if self.budget is not None:
            rows.append(("budget", self.budget))
        width = max(len(name) for name, _ in rows)
        data, model = self.mesh
        head = (f"batch {self.batch}, prompt bucket {self.prompt_len}, candidates at once "
                f"{self.candidates}, mesh (data={data}, model={model}); bytes per device")
        lines = [head] + [f"  {name:<{width}}  {format_bytes(n):>11}" for name, n in rows]
        return "\n".join(lines)


def format_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def parse_bytes(text: str) -> int:
    """``"16GB"``, ``"512MiB"``, ``"1.5 GiB"``, ``"1000000"`` -> bytes (GB = 1e9, GiB = 2**30)."""
    units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
             "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
             "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    s = str(text).strip().lower().replace(" ", "")
    number = s.rstrip("kmgtib")
    unit = s[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in units or not math.isfinite(value) or value <= 0:
        raise ValueError(f"cannot read the memory size {text!r}; write e.g. 16GB, 512MiB or 2.5GiB")
    return int(value * units[unit])


def device_memory() -> int:
    """Bytes of one device: the accelerator's ``bytes_limit``, else the host's physical memory."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:       # backends without memory stats (CPU) raise or return None
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _mesh_sizes(mesh) -> tuple[int, int]:
    if mesh is None:
        return 1, 1
    if isinstance(mesh, tuple):
        data, model = mesh
        return int(data), int(model)
    sizes = dict(zip(mesh.axis_names, mesh.devices.shape))
    return sizes.get("data", 1), sizes.get("model", 1)


def _models(params_or_configs) -> dict:
    """Role -> (ModelConfig, bytes per weight) from `TQParams`, a dict of models, or of configs."""
    if isinstance(params_or_configs, dict):
        items = params_or_configs.items()
    else:
        items = ((role, getattr(params_or_configs, role, None)) for role in ROLES)
    out = {}
    for role, value in items:
        if value is None:
            continue
        config = getattr(value, "config", value)
        params = getattr(value, "params", None)
        leaves = jax.tree.leaves(params) if params is not None else []
        out[role] = (config, jnp.dtype(leaves[0].dtype).itemsize if leaves else None)
    if "sft" not in out:
        raise ValueError("planning needs at least an sft model (config)")
    return out


def _local(value: int, logical: str, sizes: dict) -> int:
    """``value`` split over the mesh axis the rules table gives ``logical`` (rounded up)."""
    return -(-value // sizes.get(RULES.get(logical), 1))


def _check_divisible(config, sizes: dict, role: str) -> None:
    for logical, field in FIELDS.items():
        axis, value = RULES[logical], getattr(config, field)
        if axis in sizes and value % sizes[axis]:
            raise ValueError(f"{role}: {field}={value} is not divisible by the mesh's {axis!r} axis "
                             f"of size {sizes[axis]}")


def param_bytes(config, nbytes: int, sizes: dict, layer_copies: int = 1) -> int:
    """Bytes per device of one model's params, split by the rules table (kv heads replicated where
    the ``model`` axis is wider than their count, as `tqjax.parallel.shard_model` places them).
    ``layer_copies``: 2 counts the layer weights twice, for a program that splits them out of the
    stacked inputs (`Model.for_loops`) and holds both."""
    config = with_kv_replicas(config, sizes.get(RULES["kv_heads"], 1))
    copies = layer_copies
    total = 0
    for path, shape in jax.tree_util.tree_flatten_with_path(param_shapes(config), is_leaf=is_shape)[0]:
        axes = param_axes(path, len(shape))
        n = math.prod(_local(d, a, sizes) for d, a in zip(shape, axes))
        total += n * (copies if getattr(path[0], "key", None) == "layers" else 1)
    return total * nbytes


def plan(params_or_configs, config, batch: int, prompt_len: int, mesh=None, *, dtype=None,
         budget: int | None = None, continuous: bool = False) -> MemoryPlan:
    """Estimated memory per device of ``tqjax.decode(params, prompts, config, mesh=mesh)``.

    params_or_configs: `TQParams`, or a dict role -> `Model` or `ModelConfig` (configs are enough).
    batch: prompts decoded at once; prompt_len: longest prompt (both padded as `tqjax.decode` pads).
    mesh: a ``("data", "model")`` mesh or a ``(data, model)`` tuple (plan a pod from anywhere).
    dtype: weight and cache dtype for configs without params (default float32).
    continuous: continuous batching (``tqjax.decode(..., batch_size=batch)``): ``batch`` rows in
    flight, rounded up to a multiple of the data axis only, and the insert of freshly prefilled
    rows holds their caches beside the running batch's (up to a second set at the first fill).
    """
    if batch < 1 or prompt_len < 1:
        raise ValueError(f"batch and prompt_len must be >= 1, got {batch} and {prompt_len}")
    models = _models(params_or_configs)
    data, model = _mesh_sizes(mesh)
    sizes = {"data": data, "model": model}
    for role, (cfg, _) in models.items():
        _check_divisible(cfg, sizes, role)
    default = jnp.dtype(dtype or jnp.float32).itemsize
    nbytes = {role: b if dtype is None and b else default for role, (_, b) in models.items()}
    configs = {role: with_kv_replicas(cfg, model) for role, (cfg, _) in models.items()}   # as the mesh runs them

    B = -(-batch // data) * data if continuous else batch_bucket(batch, data)
    dplan = DecodePlan.build(config, [r for r, c in configs.items() if c is not None])
    rows = (B // data) * dplan.n      # per device
    T = prompt_bucket(prompt_len)
    S = T + config.max_new_tokens
    roles = dplan.active

    def cache(role, n_rows, slots):
        c = configs[role]
        kv_heads = with_kv_replicas(c, sizes.get(RULES["kv_heads"], 1)).n_kv_heads   # replicated
        return n_rows * c.n_layers * 2 * _local(kv_heads, "kv_heads", sizes) * slots * c.head_dim * nbytes[role]

    read_after = not dplan.candidates and not continuous and "reward" in roles   # `loop.generate`
    kv = {role: cache(role, rows, T if read_after and role == "reward" else S) for role in roles}
    # unrolled layers run from split-out weights, a second copy (`loop_models`)
    unrolled = {role: runs_unrolled(config.layers, c.n_layers, mesh is None) for role, c in configs.items()}
    params = {role: param_bytes(configs[role], nbytes[role], sizes, 1 + unrolled[role]) for role in configs}

    rollout, step, C = 0, 0, 0
    largest = max((configs[r] for r in roles), key=lambda c: (c.vocab_size, c.mlp_dim, c.n_heads))
    if dplan.candidates:
        C = min(dplan.candidate_chunk or dplan.k, dplan.k)
        H, M = dplan.horizon, dplan.rollouts
        n = rows * C * M
        # the rollout model's private suffix is the only cache a rollout keeps; the models that
        # read the finished rollout (reward, r_BL, π_sft) take it as one block of H + 1 tokens
        rollout = cache(dplan.rollout, n, H) if H > 0 else 0
        readers = dplan.readers
        step = n * F32 * _row(largest, sizes, S + H + 1, STEP_ROW_F32)
        blocks = []
        for role in readers:
            c = configs[role]
            block = _row(c, sizes, S + H + 1, dict(BLOCK_TOKEN_F32, vocab=0))
            if c.kind == "lm":   # the head's logits come after the scan over layers, not beside it
                block = max(block, BLOCK_TOKEN_F32["vocab"] * c.vocab_size)
            blocks.append(n * (H + 1) * F32 * block)
        # unrolled layers (`Model.for_loops`): XLA schedules the readers' passes side by side
        step = max([step, sum(blocks)] if all(unrolled[r] for r in roles) else [step] + blocks)
    step = max(step, rows * F32 * STEP_ROW_F32["vocab"] * largest.vocab_size * len(roles))
    prefill = rows * T * F32 * _row(largest, sizes, T, PREFILL_TOKEN_F32)
    if read_after:
        block = _row(configs["reward"], sizes, S, dict(BLOCK_TOKEN_F32, vocab=0))
        prefill = max(prefill, rows * config.max_new_tokens * F32 * block)
    if continuous:      # the inserted rows' fresh caches live beside the running ones
        prefill += sum(kv.values())
    return MemoryPlan(batch=B, prompt_len=T, candidates=C, mesh=(data, model), params=params,
                      kv_cache=kv, rollout=rollout, step_activations=step,
                      prefill_activations=prefill, budget=budget)


def _row(c, sizes, keys: int, copies: dict) -> int:
    """float32 numbers live per row (rollout row or prompt token) in one layer and the head."""
    heads = _local(c.n_heads, "heads", sizes)
    mlp = _local(c.mlp_dim, "mlp", sizes)
    return (copies.get("vocab", 0) * c.vocab_size + copies["scores"] * heads * keys
            + copies["mlp"] * mlp + copies["width"] * c.d_model)


def largest_batch(params_or_configs, config, prompt_len: int, budget_bytes: int, mesh=None, *,
                  dtype=None, max_batch: int = 1 << 20, continuous: bool = False) -> int:
    """The largest batch (as `tqjax.decode` pads it) whose plan fits ``budget_bytes``; 0 if none.
    ``continuous``: rows in flight under continuous batching (see `plan`)."""
    best, b = 0, 1
    while True:
        p = plan(params_or_configs, config, min(b, max_batch), prompt_len, mesh, dtype=dtype,
                 budget=budget_bytes, continuous=continuous)
        if not p.fits:
            return best
        best = min(p.batch, max_batch)
        if p.batch >= max_batch:
            return best
        b = p.batch + 1


def suggest_chunk(params_or_configs, config, batch: int, prompt_len: int, budget_bytes: int,
                  mesh=None, *, dtype=None, continuous: bool = False) -> int:
    """The largest ``candidate_chunk`` (0 = all k) whose plan fits at ``batch``; raises `PlanError`.
    ``continuous``: rows in flight under continuous batching (see `plan`)."""
    if config.method not in CANDIDATE_METHODS:
        chunks = [0]
    else:
        chunks = [0] + [c for c in range(config.k - 1, 0, -1)]
    for chunk in chunks:
        p = plan(params_or_configs, config.replace(candidate_chunk=chunk), batch, prompt_len, mesh,
                 dtype=dtype, budget=budget_bytes, continuous=continuous)
        if p.fits:
            return chunk
    raise PlanError(_refusal(p, config))


def pick_batch_size(params_or_configs, config, prompt_len: int, budget_bytes: int | None = None,
                    mesh=None, *, dtype=None, max_batch: int = 256, continuous: bool = False):
    """``(batch, config)`` for a job: the largest batch up to ``max_batch`` that fits with all k
    candidates at once; if not even batch 1 does, batch 1 with the largest candidate chunk that
    fits (``config.candidate_chunk`` set). Raises `PlanError` with the numbers when nothing fits.
    ``continuous``: rows in flight under continuous batching (see `plan`).
    """
    budget = device_memory() if budget_bytes is None else budget_bytes
    unchunked = config.replace(candidate_chunk=0)
    batch = largest_batch(params_or_configs, unchunked, prompt_len, budget, mesh, dtype=dtype,
                          max_batch=max_batch, continuous=continuous)
    if batch:
        return batch, unchunked
    chunk = suggest_chunk(params_or_configs, config, 1, prompt_len, budget, mesh, dtype=dtype,
                          continuous=continuous)
    return 1, config.replace(candidate_chunk=chunk)


def _refusal(p: MemoryPlan, config) -> str:
    chunk = " with candidates one at a time (candidate_chunk=1)" if p.candidates else ""
    parts = ", ".join(f"{name} {format_bytes(n)}" for name, n in (
        ("params", sum(p.params.values())), ("KV caches", sum(p.kv_cache.values())),
        ("rollout state", p.rollout), ("activations", p.activations)))
    return (f"this configuration does not fit in memory even at batch 1{chunk}: it needs about "
            f"{format_bytes(p.total)} per device ({parts}), but the budget is "
            f"{format_bytes(p.budget)} per device on a mesh (data={p.mesh[0]}, model={p.mesh[1]}); "
            f"shard the params over more devices (a larger 'model' axis), use 2-byte weights "
            f"(--dtype bfloat16), or lower max_new_tokens ({config.max_new_tokens}), horizon or rollouts")
