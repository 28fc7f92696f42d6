"""`DecodeConfig`: the frozen, hashable description of one decoding job (docs/design.md, "Roles").

The numbers a user sweeps (``alpha``, ``beta``, ``temperature``, ``rollout_temperature``,
``top_p``) reach the jitted program as traced scalars (`tqjax.decoding.decode_plan.Knobs`), so
changing them does not recompile. Everything that changes shapes or control flow (method, k,
horizon, rollouts, max_new_tokens, whether a temperature is zero, ...) is decided once in the
static `tqjax.decoding.decode_plan.DecodePlan`, the engine's jit key.

Released-code mode. The authors' code (docs/design.md, "The authors' released code") takes the
candidates and their prior from the baseline (DPO) model, continues them greedily, and weighs
indirect rewards as ``exp((r - r_BL)/β)·r``:
``DecodeConfig(proposal="baseline", rollout_temperature=0.0, weights="unnormalized", beta=2.0)``
(with ``ignore_eos=True`` for its fixed token budget). The paper's method, the default here, uses
the SFT model's top-k and prior and self-normalised weights; rollouts are greedy by default, as in
the authors' experiments (one sampled rollout per candidate is too noisy an estimate of Q).
"""

from __future__ import annotations

import dataclasses
import math

METHODS = ("tq", "cd", "args", "bon", "sft", "baseline")
TRANSFERS = ("direct", "indirect")
WEIGHTS = ("normalized", "unnormalized")
PROPOSALS = ("sft", "baseline")
SELECTS = ("greedy", "sample")
LAYERS = ("auto", "scan", "unroll")


def _check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value >= high:
        raise ValueError(f"{name} must be < {high}, got {value}")


def _check_float(name, value, low=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")


def _check_choice(name, value, choices):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {choices}, got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {choices}")


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    """One decoding job. Defaults follow the paper: TQ*, k=10, α=1, greedy, H=20, M=1.

    method: ``tq`` (Transfer Q*), ``cd`` (rollouts from π_sft), ``args`` (H=0, reward of [s,z]),
      ``bon`` (best of ``n`` samples), ``sft`` / ``baseline`` (plain decoding of one model).
    k: candidates per step (top-k of π_sft, or of ρ_BL with ``proposal="baseline"``).
    alpha: tilt; score(z) = log prior(z) + alpha·Q̂(z).
    horizon, rollouts: rollout length H and rollouts per candidate M.
    transfer: ``direct`` (Q̂ = mean reward) or ``indirect`` (importance weights
      exp((r - r_BL)/beta), self-normalised over the M rollouts of a candidate unless
      ``weights="unnormalized"``, which gives mean of exp((r - r_BL)/beta)·r).
    select: ``greedy`` argmax of the score, or ``sample`` from softmax(score).
    rollout_temperature: 0 = greedy rollouts, else sample ρ_BL at this temperature.
    temperature, top_k, top_p: plain decoding (``sft``, ``baseline``) and best-of-N samples;
      temperature 0 is greedy, top_k 0 and top_p 1 are off.
    n: samples for best-of-N. max_new_tokens: response budget. stop_token_ids: ids that also end
      rows and rollouts, besides the models' own stop sets (their ``eos_token_id``, from
      ``generation_config.json`` when the folder has one). ignore_eos: committed rows do not stop
      at a stop id (the benchmark convention; rollouts still end there, as in the released code's
      ``generate``). seed: base of the per-prompt keys.
    diagnostics: also return per-step arrays (chosen rank, Q̂ of each candidate).
    candidate_chunk: evaluate the k candidates this many at a time (0: all at once); the result
      is the same, peak memory scales with the chunk (`tqjax.decoding.memory` picks it).
    layers: how the loops run a transformer's layers: ``scan`` (one `lax.scan` over the stacked
      weights: program size and compile time do not grow with depth), ``unroll`` (each layer's
      weights split out once, the layers written out in the program: no per-step weight copies on
      XLA:CPU, compile time grows with depth) or ``auto``: on one device, ``unroll`` for models of
      at most `tqjax.models.transformer.UNROLL_LAYERS` layers and ``scan`` otherwise; on a mesh,
      ``scan``. The tokens are the same either way (docs/design.md, "Layer layout").
    """

    method: str = "tq"
    k: int = 10
    alpha: float = 1.0
    horizon: int = 20
    rollouts: int = 1
    transfer: str = "direct"
    beta: float = 1.0
    weights: str = "normalized"
    proposal: str = "sft"
    select: str = "greedy"
    rollout_temperature: float = 0.0
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    n: int = 4
    max_new_tokens: int = 128
    stop_token_ids: tuple = ()
    ignore_eos: bool = False
    seed: int = 0
    diagnostics: bool = False
    candidate_chunk: int = 0
    layers: str = "auto"

    def __post_init__(self):
        _check_choice("method", self.method, METHODS)
        _check_choice("transfer", self.transfer, TRANSFERS)
        _check_choice("weights", self.weights, WEIGHTS)
        _check_choice("proposal", self.proposal, PROPOSALS)
        _check_choice("select", self.select, SELECTS)
        _check_choice("layers", self.layers, LAYERS)
        _check_int("k", self.k, 1)
        _check_int("horizon", self.horizon, 0)
        _check_int("rollouts", self.rollouts, 1)
        _check_int("top_k", self.top_k, 0)
        _check_int("n", self.n, 1)
        _check_int("max_new_tokens", self.max_new_tokens, 1)
        _check_int("seed", self.seed, 0, 2 ** 32)     # jax.random.key folds larger seeds together
        _check_int("candidate_chunk", self.candidate_chunk, 0)
        _check_float("alpha", self.alpha)
        _check_float("beta", self.beta, 0.0, low_open=True)
        _check_float("rollout_temperature", self.rollout_temperature, 0.0)
        _check_float("temperature", self.temperature, 0.0)
        _check_float("top_p", self.top_p, 0.0, low_open=True)
        if self.top_p > 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        ids = self.stop_token_ids
        if not isinstance(ids, (tuple, list)) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise TypeError(f"stop_token_ids must be a tuple of non-negative int token ids, got {ids!r}")
        if any(i < 0 for i in ids):
            raise ValueError(f"stop_token_ids must be non-negative token ids, got {ids!r}")
        object.__setattr__(self, "stop_token_ids", tuple(sorted(set(ids))))
        for name in ("ignore_eos", "diagnostics"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.transfer == "indirect" and self.method != "tq":
            raise ValueError(f"transfer='indirect' needs method='tq' (rollouts from the baseline), "
                             f"got method={self.method!r}")

    def replace(self, **changes) -> "DecodeConfig":
        return dataclasses.replace(self, **changes)
