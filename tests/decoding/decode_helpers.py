"""Helpers shared by the decoding tests: model builders and comparisons."""

from __future__ import annotations

import jax
import numpy as np

from tqjax.api.decode import TQParams
from tqjax.models import toy


def spread(model, key, std=0.35, score_std=1.0):
    """A random model whose logits and scores are far from flat (N(0, 0.02) init is nearly so)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(model.params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for (path, x), k in zip(leaves, keys):
        name = jax.tree_util.keystr(path)
        if "scale" in name:
            out.append(x)
        elif "score_D" in name:
            out.append(score_std * jax.random.normal(k, x.shape, x.dtype))
        else:
            out.append(std * jax.random.normal(k, x.shape, x.dtype))
    return model.replace(params=jax.tree.unflatten(treedef, out))


def with_eos(model, eos):
    return model.replace(config=model.config.replace(eos_token_id=eos))


def transformer_params(arch, seed=0, eos=2):
    """Random tiny sft, baseline, reward and a second reward model of ``arch`` (a `ModelConfig.tiny`
    arch, or a name of `tests.models.families.FAMILIES`)."""
    from tests.models.families import FAMILIES
    from tqjax.models import ModelConfig, init_model

    def config(kind="lm"):
        if arch in FAMILIES:
            return FAMILIES[arch].replace(kind=kind, eos_token_id=eos)
        return ModelConfig.tiny(arch=arch, kind=kind, eos_token_id=eos)

    ks = jax.random.split(jax.random.key(seed), 8)
    sft = spread(init_model(config(), ks[0]), ks[4])
    bl = spread(init_model(config(), ks[1]), ks[5])
    rm = spread(init_model(config("reward"), ks[2]), ks[6])
    rbl = spread(init_model(config("reward"), ks[3]), ks[7])
    return TQParams(sft, bl, rm), rbl


def toy_params(seed=0, eos=4, vocab=5):
    ks = jax.random.split(jax.random.key(seed), 4)
    sft = toy.random_toy(ks[0], vocab=vocab, eos_token_id=eos)
    bl = toy.random_toy(ks[1], vocab=vocab, eos_token_id=eos)
    rm = toy.random_toy(ks[2], kind="reward", vocab=vocab)
    rbl = toy.random_toy(ks[3], kind="reward", vocab=vocab)
    return TQParams(sft, bl, rm), rbl


PROMPTS = [[5, 17, 33, 8, 41, 12, 9], [23, 4], [60, 1, 7, 7, 30]]



def assert_same(engine_out, ref, atol=1e-4):
    """Engine `DecodeOutput` against reference dicts: identical tokens, close numbers."""
    for i, r in enumerate(ref):
        assert engine_out.tokens[i] == r["tokens"], f"prompt {i}"
        if r.get("reward") is not None:
            np.testing.assert_allclose(engine_out.rewards[i], r["reward"], atol=atol, rtol=1e-4)
        np.testing.assert_allclose(engine_out.logp_sft[i], r["logp_sft"], atol=atol, rtol=1e-4)
        np.testing.assert_allclose(engine_out.kl[i], r["kl"], atol=atol, rtol=1e-4)
        np.testing.assert_allclose(engine_out.log_ratio[i], r["log_ratio"], atol=atol, rtol=1e-4)
