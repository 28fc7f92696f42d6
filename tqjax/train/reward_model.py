"""Reward models: the Bradley–Terry loss on preference pairs, the logistic loss on labelled texts.

The score of a sequence is the reward head's output at its last real token, which for
``prompt + response`` is the response's ``<eos>`` (as `tqjax.reward` reads it).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tqjax.models import Model, ModelConfig
from tqjax.train import loop


def scores(config: ModelConfig, params: dict, tokens_BT: jax.Array, lengths_B: jax.Array) -> jax.Array:
    """float32 ``[B]``: the reward head at the last real token of each right-padded row."""
    scores_BT = Model(params=params, config=config).forward(tokens_BT)
    return jnp.take_along_axis(scores_BT, (lengths_B - 1)[:, None], axis=1)[:, 0].astype(jnp.float32)


def _pair_scores(config, params, batch):
    B = batch["chosen_tokens_NT"].shape[0]
    tokens_2BT = jnp.concatenate([batch["chosen_tokens_NT"], batch["rejected_tokens_NT"]])
    lengths_2B = jnp.concatenate([batch["chosen_lengths_N"], batch["rejected_lengths_N"]])
    s_2B = scores(config, params, tokens_2BT, lengths_2B)
    return s_2B[:B], s_2B[B:]


def loss(config: ModelConfig, params: dict, batch: dict, key: jax.Array | None = None,
         center: float = 1e-3):
    """Bradley–Terry ``-log sigmoid(s_chosen - s_rejected)`` averaged over the pairs of ``batch``.

    ``batch`` holds ``chosen_*`` / ``rejected_*`` arrays (see `tqjax.train.data.pair_arrays`).
    A small ``center`` penalty on the mean squared score keeps scores near zero (the BT loss only
    fixes differences). Returns ``(loss, {"bt": bt loss, "accuracy": fraction ordered right})``.
    """
    s_chosen_B, s_rejected_B = _pair_scores(config, params, batch)
    bt = -jnp.mean(jax.nn.log_sigmoid(s_chosen_B - s_rejected_B))
    reg = center * jnp.mean(jnp.square(s_chosen_B) + jnp.square(s_rejected_B))
    return bt + reg, {"bt": bt, "accuracy": jnp.mean(s_chosen_B > s_rejected_B)}


def logistic_loss(scores_B: jax.Array, labels_B: jax.Array):
    """Logistic loss of scores ``[B]`` read as log-odds of ``labels_B`` (1 positive, 0 negative):
    ``(loss, {"accuracy": fraction with the sign of the score right})``."""
    signs_B = 2.0 * labels_B.astype(jnp.float32) - 1.0
    return -jnp.mean(jax.nn.log_sigmoid(signs_B * scores_B)), {"accuracy": jnp.mean(signs_B * scores_B > 0)}


def fit_head(h_ND, labels_N, l2: float, max_steps: int = 500) -> jax.Array:
    """A reward head ``score_D`` (no bias, as the model's head) fitted to hidden states ``[N, D]``
    by L2-regularised logistic regression on ``labels_N`` (1 positive, 0 negative), with BFGS: a
    linear probe to start fine-tuning from instead of a random head."""
    from jax.scipy.optimize import minimize

    h_ND = jnp.asarray(h_ND, jnp.float32)
    labels_N = jnp.asarray(labels_N)

    def objective(w_D):
        return logistic_loss(h_ND @ w_D, labels_N)[0] + l2 * jnp.sum(w_D * w_D)

    return minimize(objective, jnp.zeros(h_ND.shape[1]), method="BFGS",
                    options=dict(maxiter=max_steps)).x


def metrics(config: ModelConfig, params: dict, batch: dict) -> dict:
    """Per pair ``[B]``: the two scores."""
    s_chosen_B, s_rejected_B = _pair_scores(config, params, batch)
    return {"chosen": s_chosen_B, "rejected": s_rejected_B}


def from_lm(model: Model, key: jax.Array) -> Model:
    """A reward model that starts from a language model's body, with a fresh ``N(0, 0.02)`` head."""
    config = model.config.replace(kind="reward")
    params = {k: v for k, v in model.params.items() if k != "head_DV"}
    params["score_D"] = 0.02 * jax.random.normal(key, (config.d_model,), model.dtype)
    return Model(params=params, config=config, tokenizer=model.tokenizer)


def train(model: Model, arrays: dict, config: loop.TrainConfig, checkpoint_dir: str | None = None,
          **kw) -> loop.TrainResult:
    """Train ``model`` (a reward model) on pairs from `tqjax.train.data.pair_arrays`."""
    if model.kind != "reward":
        raise ValueError(f"Bradley–Terry training needs a reward model, got a {model.kind!r} model")
    return loop.train(functools.partial(loss, model.config), model.params, arrays, config,
                      checkpoint_dir, **kw)


def validate(model: Model, arrays: dict, batch_size: int = 128) -> dict:
    """Held-out pairwise ``accuracy`` against the gold labels, mean BT ``loss`` and score ``margin``."""
    out = loop.evaluate(functools.partial(metrics, model.config), model.params, arrays, batch_size)
    diff = out["chosen"] - out["rejected"]
    return {"accuracy": float(np.mean(diff > 0)), "loss": float(np.mean(np.logaddexp(0.0, -diff))),
            "margin": float(np.mean(diff)), "pairs": int(diff.size)}
