"""Public model functions: load, save, logits, reward."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from tqjax.api.checks import check_lengths, check_load, check_model, check_save, check_tokens
from tqjax.io import is_tqjax_checkpoint, load_checkpoint, load_hf, load_tokenizer, save_checkpoint
from tqjax.io.checkpoint import read_config
from tqjax.io.gguf import is_gguf, load_gguf
from tqjax.io.hf import check_folder
from tqjax.parallel import param_shardings, shard_model
from tqjax.models import Model
from tqjax.models.model import read_index


def load(path: str, dtype=None, shardings=None, mesh=None, reward_label=None) -> Model:
    """A `Model` from a local Hugging Face folder, a tqjax checkpoint or a llama.cpp ``.gguf`` file
    (never downloads).

    A ``*ForSequenceClassification`` folder loads as a reward model whose reward is one logit:
    ``reward_label`` (a name from its ``id2label``, e.g. ``"POSITIVE"``, or an int index) picks it,
    and is needed when the head has several labels (the error lists them). It is an error for a
    causal LM, a GGUF file and a tqjax checkpoint (whose reward head already has one score).

    ``dtype`` casts the weights (None keeps the stored dtype; a GGUF file is dequantised to
    float32). ``mesh`` places the params by the sharding rules (`tqjax.parallel.shard_model`: kv heads fewer than the ``model`` axis are
    replicated, and ``config.n_kv_heads`` then counts the copies); ``shardings``, a pytree of
    ``jax.sharding.Sharding`` shaped like the params, places them explicitly.
    """
    check_load(path, dtype, shardings, mesh, reward_label)
    path = os.path.abspath(os.fspath(path))
    gguf = is_gguf(path)
    if not gguf:
        check_folder(path)
    by_rules = mesh is not None and shardings is None
    tokenizer = None
    if is_tqjax_checkpoint(path):
        if reward_label is not None:
            raise ValueError(f"reward_label={reward_label!r} applies to a Hugging Face classifier folder; the tqjax "
                             f"checkpoint {path} already has a one-score reward head")
        if by_rules:
            shardings = param_shardings(read_config(path), mesh)
        config, params = load_checkpoint(path, dtype=dtype, shardings=shardings)
    else:
        if gguf:
            if reward_label is not None:
                raise ValueError(f"reward_label={reward_label!r} applies to a Hugging Face classifier folder; the GGUF "
                                 f"file {path} holds a causal LM")
            config, params, tokenizer = load_gguf(path, dtype=dtype)
        else:
            config, params = load_hf(path, dtype=dtype, reward_label=reward_label)
        if by_rules:
            shardings = param_shardings(config, mesh)
        if shardings is None:
            params = jax.tree.map(jnp.asarray, params)
        else:
            params = jax.tree.map(jax.device_put, params, shardings)
    model = Model(params=params, config=config, tokenizer=tokenizer if gguf else load_tokenizer(path))
    return shard_model(model, mesh) if by_rules else model


def save(model: Model, path: str, overwrite: bool = False) -> None:
    """Write ``model`` (params with orbax, config, tokenizer) so that `load` reads it back bit-exact."""
    check_save(model, path, overwrite)
    save_checkpoint(os.fspath(path), model.config, model.params, model.tokenizer, overwrite=overwrite)


@jax.jit
def _forward(model: Model, tokens_BT):
    return model.forward(tokens_BT)


def logits(model: Model, tokens_BT) -> jax.Array:
    """float32 next-token logits ``[B, T, V]`` of a language model (no padding / right padding)."""
    check_model("model", model, "lm")
    return _forward(model, jnp.asarray(check_tokens(model, tokens_BT)))


@jax.jit
def _reward(model: Model, tokens_BT, lengths_B):
    scores_BT = model.forward(tokens_BT)
    first_B = jnp.zeros(tokens_BT.shape[:1], jnp.int32)
    idx_BT = read_index(tokens_BT, first_B, model.config.pad_token_id)
    idx_B = jnp.take_along_axis(idx_BT, (lengths_B - 1)[:, None], axis=1)
    return jnp.take_along_axis(scores_BT, idx_B, axis=1)[:, 0]


def reward(model: Model, tokens_BT, lengths_B) -> jax.Array:
    """float32 scores ``[B]`` of right-padded sequences (row ``b`` is ``tokens_BT[b, :lengths_B[b]]``).

    Read where transformers' ``*ForSequenceClassification`` reads them: at the rightmost token of
    the row that is not the model's ``pad_token_id`` (the last token when it has none; the first
    token when every token is the pad id).
    """
    check_model("model", model, "reward")
    tokens = check_tokens(model, tokens_BT)
    lengths = check_lengths(lengths_B, tokens)
    return _reward(model, jnp.asarray(tokens), jnp.asarray(lengths))
