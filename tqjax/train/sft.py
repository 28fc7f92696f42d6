"""Supervised fine-tuning: the masked next-token loss of a language model."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tqjax.models import Model, ModelConfig
from tqjax.train import loop


def token_logprobs(config: ModelConfig, params: dict, tokens_BT: jax.Array) -> jax.Array:
    """float32 ``[B, T]``: ``log p(tokens_BT[:, t] | tokens_BT[:, :t])``; column 0 is 0.

    ``tokens_BT`` is right-padded; entries at padding are meaningless and must be masked.
    """
    logits_BTV = Model(params=params, config=config).forward(tokens_BT)
    logp_BTV = jax.nn.log_softmax(logits_BTV[:, :-1].astype(jnp.float32), axis=-1)
    taken_BT = jnp.take_along_axis(logp_BTV, tokens_BT[:, 1:, None], axis=-1)[..., 0]
    return jnp.pad(taken_BT, ((0, 0), (1, 0)))


def loss(config: ModelConfig, params: dict, batch: dict, key: jax.Array | None = None):
    """Mean negative log-likelihood per target token of ``batch["tokens_NT"]`` under ``mask_NT``.

    ``batch`` holds ``tokens_NT`` ``[B, T]`` and ``mask_NT`` ``[B, T]`` (see `tqjax.train.data`).
    Returns ``(loss, {"nll": loss})``.
    """
    logp_BT = token_logprobs(config, params, batch["tokens_NT"])
    mask_BT = batch["mask_NT"]
    nll = -jnp.sum(logp_BT * mask_BT) / jnp.maximum(jnp.sum(mask_BT), 1.0)
    return nll, {"nll": nll}


def metrics(config: ModelConfig, params: dict, batch: dict) -> dict:
    """Per example ``[B]``: summed target NLL (``nll``) and number of targets (``tokens``)."""
    logp_BT = token_logprobs(config, params, batch["tokens_NT"])
    return {"nll": -jnp.sum(logp_BT * batch["mask_NT"], axis=1), "tokens": jnp.sum(batch["mask_NT"], axis=1)}


def train(model: Model, arrays: dict, config: loop.TrainConfig, checkpoint_dir: str | None = None,
          **kw) -> loop.TrainResult:
    """Train ``model`` (a language model) on ``arrays`` from `tqjax.train.data.text_arrays`."""
    if model.kind != "lm":
        raise ValueError(f"SFT needs a language model, got a {model.kind!r} model")
    return loop.train(functools.partial(loss, model.config), model.params, arrays, config,
                      checkpoint_dir, **kw)


def validate(model: Model, arrays: dict, batch_size: int = 128) -> dict:
    """Held-out ``nll`` per token and ``perplexity`` = exp(nll); ``uniform_perplexity`` = V."""
    out = loop.evaluate(functools.partial(metrics, model.config), model.params, arrays, batch_size)
    nll = float(np.sum(out["nll"]) / max(np.sum(out["tokens"]), 1.0))
    return {"nll": nll, "perplexity": float(np.exp(nll)), "uniform_perplexity": model.vocab_size,
            "tokens": int(np.sum(out["tokens"]))}
