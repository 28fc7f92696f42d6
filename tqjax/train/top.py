"""Training only the top blocks of a model, from stored features of its frozen bottom.

A model's blocks ``[0, first)`` are frozen; `features` runs them (with the embedding) once over
every training sequence and keeps the residual stream ``x_NTD`` after block ``first``. Each
training step then runs only the blocks ``[first, L)``, the final norm and the head on those
features (`hidden`), which on a CPU makes fine-tuning the top of a 30-layer model cheap. `top`
takes the trained part of the parameters, `merge` puts it back into the whole model.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from tqjax.models import Model, ModelConfig
from tqjax.models.layers import norm
from tqjax.models.model import causal_blocks
from tqjax.models.transformer import embed
from tqjax.train import loop


def _layers(params: dict, lo: int, hi: int | None = None) -> dict:
    return jax.tree.map(lambda x: x[lo:hi], params["layers"])


def top(params: dict, first: int) -> dict:
    """The trained part of ``params``: blocks ``[first, L)``, the final norm and, for a reward
    model, its head (a language model's head is the tied embedding, kept frozen: see `frozen`)."""
    out = {"layers": _layers(params, first), "final_norm": params["final_norm"]}
    out.update({k: params[k] for k in ("score_D", "head_DV") if k in params})
    return out


def frozen(params: dict) -> dict:
    """What `hidden` and the head read that is not trained: the embedding (tied to an LM head)."""
    return {"embed_VD": params["embed_VD"]}


def merge(params: dict, trained: dict, first: int) -> dict:
    """``params`` with its blocks ``[first, L)``, final norm and head replaced by ``trained``."""
    layers = jax.tree.map(lambda a, b: jnp.concatenate([a[:first], b]), params["layers"], trained["layers"])
    return {**params, **trained, "layers": layers}


def hidden(config: ModelConfig, params: dict, x_BTD: jax.Array, first: int) -> jax.Array:
    """Final-normed hidden states ``[B, T, D]`` from the residual stream ``x_BTD`` after block
    ``first``: ``params["layers"]`` holds blocks ``[first, L)`` only (the tree of `top`)."""
    return norm(config, params["final_norm"], causal_blocks(config, params["layers"], x_BTD, first))


@functools.partial(jax.jit, static_argnums=0)
def _bottom(config, bottom, tokens_BT):
    pos_BT = jnp.broadcast_to(jnp.arange(tokens_BT.shape[1]), tokens_BT.shape)
    return causal_blocks(config, bottom["layers"], embed(config, bottom, tokens_BT, pos_BT))


def features(model: Model, tokens_NT: np.ndarray, lengths_N: np.ndarray, first: int, batch_size: int = 16,
             bucket: int = 8, desc: str = "features", progress: bool = True) -> np.ndarray:
    """float32 ``[N, T, D]``: the residual stream after the frozen blocks ``[0, first)`` of every
    right-padded row (zeros past its length, which a causal model never reads).

    Rows run in batches of similar length, each cut to its longest row rounded up to ``bucket``
    (the last batch padded by repeating a row), so that few shapes are compiled.
    """
    config = model.config
    bottom = {"embed_VD": model.params["embed_VD"], "layers": _layers(model.params, 0, first)}
    if "pos_PD" in model.params:
        bottom["pos_PD"] = model.params["pos_PD"]

    N, T = tokens_NT.shape
    out = np.zeros((N, T, config.d_model), np.float32)
    order = np.argsort(lengths_N, kind="stable")
    for lo in tqdm(range(0, N, batch_size), desc=desc, disable=not progress, dynamic_ncols=True):
        rows = order[lo:lo + batch_size]
        cut = min(T, -(-int(lengths_N[rows].max()) // bucket) * bucket)
        padded = np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])
        x = np.asarray(_bottom(config, bottom, jnp.asarray(tokens_NT[padded, :cut])))[:len(rows)]
        for j, r in enumerate(rows):
            out[r, :lengths_N[r]] = x[j, :lengths_N[r]]
    return out


@functools.lru_cache
def _last_hidden(config, first):
    """The metric of `last_hidden`, one function per (config, first): `loop.evaluate` jits it, and
    the same function object reuses that compilation on every later call."""
    def metric(params, batch):
        h_BTD = hidden(config, params, batch["x_NTD"], first)
        return {"h": jnp.take_along_axis(h_BTD, (batch["lengths_N"] - 1)[:, None, None], axis=1)[:, 0]}
    return metric


def last_hidden(config: ModelConfig, params: dict, arrays: dict, first: int, batch_size: int = 32) -> np.ndarray:
    """float32 ``[N, D]``: the final-normed hidden state at each row's last token (``lengths_N``)
    of the stored features ``arrays["x_NTD"]``, through the top blocks ``params`` (`top`'s tree)."""
    arrays = {k: arrays[k] for k in ("x_NTD", "lengths_N")}
    return loop.evaluate(_last_hidden(config, first), params, arrays, batch_size)["h"]
