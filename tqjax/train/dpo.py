"""Direct preference optimisation (Rafailov et al. 2023) from a reference (SFT) model.

Sequence log-probabilities sum over the response tokens only (the ``mask_NT`` of
`tqjax.train.data.pair_arrays`). The reference log-probabilities are computed once, before
training, and stored with the pairs (``chosen_ref_N``, ``rejected_ref_N``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tqjax.models import Model, ModelConfig
from tqjax.train import loop
from tqjax.train.sft import token_logprobs


def sequence_logprobs(config: ModelConfig, params: dict, tokens_BT: jax.Array, mask_BT: jax.Array) -> jax.Array:
    """float32 ``[B]``: ``sum_t mask_BT * log p(token_t | prefix)`` (the response's log-prob)."""
    return jnp.sum(token_logprobs(config, params, tokens_BT) * mask_BT, axis=1)


def _pair_logprobs(config, params, batch):
    B = batch["chosen_tokens_NT"].shape[0]
    tokens_2BT = jnp.concatenate([batch["chosen_tokens_NT"], batch["rejected_tokens_NT"]])
    mask_2BT = jnp.concatenate([batch["chosen_mask_NT"], batch["rejected_mask_NT"]])
    lp_2B = sequence_logprobs(config, params, tokens_2BT, mask_2BT)
    return lp_2B[:B], lp_2B[B:]


def _reference_metrics(config, params, batch):
    lp_chosen_B, lp_rejected_B = _pair_logprobs(config, params, batch)
    return {"chosen": lp_chosen_B, "rejected": lp_rejected_B}


def with_reference(reference: Model, arrays: dict, batch_size: int = 128) -> dict:
    """``arrays`` plus ``chosen_ref_N`` / ``rejected_ref_N``: response log-probs under ``reference``."""
    out = loop.evaluate(functools.partial(_reference_metrics, reference.config), reference.params,
                        arrays, batch_size)
    return {**arrays, "chosen_ref_N": out["chosen"].astype(np.float32),
            "rejected_ref_N": out["rejected"].astype(np.float32)}


def _margins(config, params, batch, beta):
    lp_chosen_B, lp_rejected_B = _pair_logprobs(config, params, batch)
    r_chosen_B = beta * (lp_chosen_B - batch["chosen_ref_N"])
    r_rejected_B = beta * (lp_rejected_B - batch["rejected_ref_N"])
    return r_chosen_B, r_rejected_B


def loss(config: ModelConfig, beta: float, params: dict, batch: dict, key: jax.Array | None = None):
    """DPO loss ``-log sigmoid(r_chosen - r_rejected)``, with implicit rewards ``β (log π - log π_ref)``.

    ``batch`` holds the pair arrays and the reference log-probs (`with_reference`).
    Returns ``(loss, {"margin": mean r_chosen - r_rejected, "accuracy": fraction with margin > 0})``.
    """
    lp_chosen_B, lp_rejected_B = _pair_logprobs(config, params, batch)
    return preference_loss(lp_chosen_B, lp_rejected_B, batch, beta)


def preference_loss(lp_chosen_B: jax.Array, lp_rejected_B: jax.Array, batch: dict, beta: float):
    """The DPO loss and metrics of `loss` from the policy's response log-probs ``[B]`` and the
    reference log-probs in ``batch`` (``chosen_ref_N``, ``rejected_ref_N``)."""
    margin_B = beta * ((lp_chosen_B - batch["chosen_ref_N"]) - (lp_rejected_B - batch["rejected_ref_N"]))
    return -jnp.mean(jax.nn.log_sigmoid(margin_B)), {"margin": jnp.mean(margin_B),
                                                     "accuracy": jnp.mean(margin_B > 0)}


def metrics(config: ModelConfig, beta: float, params: dict, batch: dict) -> dict:
    """Per pair ``[B]``: the implicit rewards of the chosen and rejected responses."""
    r_chosen_B, r_rejected_B = _margins(config, params, batch, beta)
    return {"chosen": r_chosen_B, "rejected": r_rejected_B}


def train(policy: Model, arrays: dict, beta: float, config: loop.TrainConfig,
          checkpoint_dir: str | None = None, **kw) -> loop.TrainResult:
    """Train ``policy`` (initialised from the reference) on pairs carrying reference log-probs."""
    if policy.kind != "lm":
        raise ValueError(f"DPO needs a language model, got a {policy.kind!r} model")
    if "chosen_ref_N" not in arrays:
        raise ValueError("DPO arrays need reference log-probs; build them with dpo.with_reference")
    return loop.train(functools.partial(loss, policy.config, beta), policy.params, arrays, config,
                      checkpoint_dir, **kw)


def validate(policy: Model, arrays: dict, beta: float, batch_size: int = 128) -> dict:
    """Held-out implicit reward ``margin`` (mean), ``accuracy`` (margin > 0) and DPO ``loss``."""
    out = loop.evaluate(functools.partial(metrics, policy.config, beta), policy.params, arrays, batch_size)
    diff = out["chosen"] - out["rejected"]
    return {"margin": float(np.mean(diff)), "accuracy": float(np.mean(diff > 0)),
            "loss": float(np.mean(np.logaddexp(0.0, -diff))), "chosen_reward": float(np.mean(out["chosen"])),
            "rejected_reward": float(np.mean(out["rejected"])), "pairs": int(diff.size)}
