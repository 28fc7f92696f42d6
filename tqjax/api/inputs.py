"""The inputs of a decode: the models and plan checked (`check_models`), the prompts tokenised
and checked (`check`), and the left-padded, bucketed batch arrays with each prompt's key
(`layout`).

A prompt's random key is ``fold_in(key(seed), index)`` with ``index`` its position in ``prompts``
(or ``indices[i]`` when given), so its output does not depend on the other prompts, the batch size,
the padding or the bucket. Batch and prompt length are rounded up to powers of two so that new
inputs reuse compiled programs; the swept numbers (α, β, temperatures, top_p) never recompile.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tqjax.api.checks import check_indices, check_instance, check_params, check_prompts
from tqjax.api.params import TQParams
from tqjax.decoding.config import DecodeConfig
from tqjax.decoding.decode_plan import DecodePlan, batch_bucket, plan_for, prompt_bucket
from tqjax.decoding.text_reader import check_reader_context
from tqjax.io.chat import has_chat_template, is_messages, render_chat


def check_models(params, config) -> tuple[dict, DecodePlan]:
    """The given models (checked again: a TQParams rebuilt by a tree function is not) and the
    plan."""
    check_instance("params", params, TQParams, "a tqjax.TQParams")
    check_params(params)
    plan = plan_for(params, config)
    models = {r: getattr(params, r) for r in plan.id_roles}     # the others read text
    vocabs = {role: int(model.vocab_size) for role, model in models.items()}
    if len(set(vocabs.values())) > 1:
        listing = ", ".join(f"{role}={size}" for role, size in vocabs.items())
        raise ValueError(f"the models' vocabularies differ ({listing}); the fused decoder needs "
                         f"one tokenizer shared by all models")
    outside = [i for i in config.stop_token_ids if i >= vocabs["sft"]]
    if outside:
        raise ValueError(f"stop_token_ids {outside} are outside the vocabulary (size {vocabs['sft']})")
    if plan.candidates and config.k > vocabs["sft"]:
        raise ValueError(f"k={config.k} is larger than the vocabulary ({vocabs['sft']})")
    return models, plan


def _tokenize(params, prompts) -> list[np.ndarray]:
    check_prompts(prompts)
    tokenizer = getattr(params.sft, "tokenizer", None)
    return [prompt_ids(tokenizer, prompt, i) for i, prompt in enumerate(prompts)]


def prompt_ids(tokenizer, prompt, i: int = 0) -> np.ndarray:
    """int64 token ids of prompt ``i``: a string (``tokenizer.encode``), a list of chat messages
    (`tqjax.io.chat.render_chat`, as transformers' ``apply_chat_template``) or token ids."""
    if isinstance(prompt, str):
        if tokenizer is None:
            raise ValueError(f"prompt {i} is a string but the SFT model has no tokenizer; "
                             f"pass token ids instead")
        ids = tokenizer.encode(prompt)
        ids = getattr(ids, "ids", ids)
    elif isinstance(prompt, dict):
        raise TypeError(f"prompt {i} is a single message (a dict); a chat prompt is a list of "
                        f"messages, e.g. [{{\"role\": \"user\", \"content\": \"...\"}}]")
    elif is_messages(prompt):
        ids = _chat_ids(tokenizer, prompt, i)
    else:
        ids = prompt
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"prompt {i} must be a 1-D sequence of token ids, got shape {ids.shape}")
    if ids.size == 0:
        raise ValueError(f"prompt {i} is empty")
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"prompt {i} must hold integer token ids, got dtype {ids.dtype}")
    return ids.astype(np.int64)


def _chat_ids(tokenizer, messages, i: int) -> list[int]:
    if tokenizer is None:
        raise ValueError(f"prompt {i} is a list of chat messages but the SFT model has no "
                         f"tokenizer to render it with; pass a string or token ids instead")
    if not has_chat_template(tokenizer):
        raise ValueError(f"prompt {i} is a list of chat messages but the SFT model's tokenizer has "
                         f"no chat template; pass a string or token ids instead")
    try:
        return render_chat(tokenizer, messages)
    except ValueError as e:
        raise ValueError(f"prompt {i} (chat messages): {e}") from e


def _check_tokens(token_lists, models, plan):
    V = int(models["sft"].vocab_size)
    for i, ids in enumerate(token_lists):
        bad = ids[(ids < 0) | (ids >= V)]
        if bad.size:
            raise ValueError(f"prompt {i} has token ids outside the vocabulary [0, {V}): "
                             f"{bad[:5].tolist()}")
    longest = max(len(ids) for ids in token_lists)
    horizon = plan.horizon
    need = longest + plan.max_new_tokens + horizon
    for role, model in models.items():
        if need > int(model.max_length):
            raise ValueError(f"prompt ({longest} tokens) + max_new_tokens ({plan.max_new_tokens})"
                             f" + horizon ({horizon}) = {need} exceeds the {role} model's context "
                             f"of {int(model.max_length)} positions")
    return need


def prepare(params, prompts, config, indices=None, batch_multiple=1):
    """Validate and lay out a batch: ``(arrays, token_lists)`` (also used by tests/benchmarks)."""
    arrays, token_lists, _ = _prepare(params, prompts, config, indices, batch_multiple)
    return arrays, token_lists


def _prepare(params, prompts, config, indices=None, batch_multiple=1):
    check_prompts(prompts)
    check_indices(indices, len(prompts))
    token_lists, models, plan = check(params, prompts, config)
    return layout(config, token_lists, models, plan, indices, batch_multiple), token_lists, plan


def check(params, prompts, config):
    """Everything that depends on the models, before any work: ``(token_lists, models, plan)``."""
    check_instance("config", config, DecodeConfig, "a tqjax.DecodeConfig")
    models, plan = check_models(params, config)
    return tokenize(params, prompts, models, plan), models, plan


def tokenize(params, prompts, models, plan) -> list[np.ndarray]:
    """The prompts' token ids, checked against ``models`` (from `check_models`) and ``plan``:
    ids in the vocabulary, room in every context, and a text reader's context."""
    token_lists = _tokenize(params, prompts)
    _check_tokens(token_lists, models, plan)
    if plan.text_readers:         # readers of text: their context, before any work
        check_reader_context(params, prompts, token_lists, plan)
    return token_lists


def padded_length(token_lists, models, plan) -> int:
    """The slots the prompts are left-padded to (`prompt_bucket`, capped by the context left
    after the response and the rollout)."""
    room = min(int(models[r].max_length) for r in plan.active if r in plan.id_roles)
    return prompt_bucket(max(len(ids) for ids in token_lists),
                         room - plan.max_new_tokens - plan.horizon)


def layout(config, token_lists, models, plan, indices=None, batch_multiple=1) -> dict:
    """The left-padded, bucketed batch arrays and each row's key."""
    indices = list(range(len(token_lists))) if indices is None else [int(i) for i in indices]
    P = len(token_lists)
    B = batch_bucket(P, batch_multiple)
    T = padded_length(token_lists, models, plan)
    tokens_BT = np.zeros((B, T), np.int32)
    start_B = np.full((B,), T - 1, np.int32)
    for b, ids in enumerate(token_lists):
        tokens_BT[b, T - len(ids):] = ids
        start_B[b] = T - len(ids)
    live_B = np.arange(B) < P
    base = jax.random.key(config.seed)
    idx_B = np.asarray(indices + list(range(max(indices) + 1, max(indices) + 1 + B - P)), np.uint32)
    keys_B = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(idx_B))
    return dict(tokens_BT=jnp.asarray(tokens_BT), start_B=jnp.asarray(start_B), keys_B=keys_B,
                live_B=jnp.asarray(live_B))
