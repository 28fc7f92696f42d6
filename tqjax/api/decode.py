"""`tqjax.decode`: validate, tokenise, left-pad and bucket the prompts, run the engine, unpack.

A prompt's random key is ``fold_in(key(seed), index)`` with ``index`` its position in ``prompts``
(or ``indices[i]`` when given), so its output does not depend on the other prompts, the batch size,
the padding or the bucket. Batch and prompt length are rounded up to powers of two so that new
inputs reuse compiled programs; the swept numbers (α, β, temperatures, top_p) never recompile.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tqjax.api.checks import check_decode, check_indices, check_instance, check_params, check_prompts
from tqjax.api.outputs import DecodeOutput, build, empty, pick, text_of
from tqjax.api.params import TQParams, place
from tqjax.decoding import engine
from tqjax.decoding.config import DecodeConfig
from tqjax.decoding.decode_plan import (ROLE_KINDS, DecodePlan, Knobs, batch_bucket, plan_for,
                                       prompt_bucket)
from tqjax.parallel.multihost import fetch
from tqjax.decoding.text_reader import ReaderContextError, check_reader_context
from tqjax.io.chat import has_chat_template, is_messages, render_chat


def _check_models(params, config) -> tuple[dict, DecodePlan]:
    """The given models (checked again: a TQParams rebuilt by a tree function is not) and the
    plan."""
    check_instance("params", params, TQParams, "a tqjax.TQParams")
    check_params(params)
    models = {role: getattr(params, role) for role in ROLE_KINDS if getattr(params, role) is not None}
    plan = plan_for(params, config)
    models = {r: m for r, m in models.items() if r not in plan.text_roles}   # they read text
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
    token_lists, models, plan = _check(params, prompts, config)
    return _layout(config, token_lists, models, plan, indices, batch_multiple), token_lists, plan


def _check(params, prompts, config):
    """Everything that depends on the models, before any work: ``(token_lists, models, plan)``."""
    check_instance("config", config, DecodeConfig, "a tqjax.DecodeConfig")
    models, plan = _check_models(params, config)
    token_lists = _tokenize(params, prompts)
    _check_tokens(token_lists, models, plan)
    if plan.text_readers:         # readers of text: their context, before any work
        check_reader_context(params, prompts, token_lists, plan)
    return token_lists, models, plan


def _layout(config, token_lists, models, plan, indices=None, batch_multiple=1) -> dict:
    """The left-padded, bucketed batch arrays and each row's key."""
    indices = list(range(len(token_lists))) if indices is None else [int(i) for i in indices]
    P = len(token_lists)
    B = batch_bucket(P, batch_multiple)
    longest = max(len(ids) for ids in token_lists)
    room = min(int(models[r].max_length) for r in plan.active if r in models)
    room -= plan.max_new_tokens + plan.horizon
    T = prompt_bucket(longest, room)
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


def decode(params: TQParams, prompts, config: DecodeConfig = DecodeConfig(), batch_size=None, *,
           indices=None, mesh=None, chunk=None, on_done=None, on_error=None,
           stats=None) -> DecodeOutput:
    """Decode every prompt with ``config.method`` (docs/design.md, "Algorithm").

    prompts: strings (tokenised with ``params.sft.tokenizer``) or token-id sequences.
    batch_size: None decodes all prompts as one batch, which runs until its longest row ends. An
    int ``B`` is continuous batching (`tqjax.decoding.continuous`): at most ``B`` prompts in
    flight (best-of-N: ``B·n`` rows), and as rows finish the next prompts are prefilled into their
    slots; each prompt's result is the same as decoding it alone. ``0``: the memory planner picks
    the largest ``B`` that fits this device. indices: optional ints folded into each prompt's key
    instead of its list position (a job split over batches or hosts passes global prompt numbers so
    that outputs do not depend on the split). mesh: a ``("data", "model")`` mesh
    (`tqjax.make_mesh`): params are placed by the sharding rules (tensor parallel over "model"),
    prompts split over "data" (the batch is padded to a multiple of it). The output does not
    depend on the mesh. With ``batch_size``: chunk, the most steps between two visits of the host
    (default ``max_new_tokens``; a chunk also ends when a row finishes while prompts wait);
    on_done(i, output) is called with prompt ``i``'s `DecodeOutput` of one prompt as soon as it
    is done; stats: a `tqjax.decoding.continuous.Stats` to fill. With a reader that has its own
    tokenizer, a prompt whose text outgrows the reader's context during decoding raises a
    `tqjax.ReaderContextError` naming it; with ``batch_size``, on_error(i, error) takes it instead
    and the other prompts are decoded as if it were not there (`tqjax.api.cross`,
    ``diagnostics["failed"]``). With such a reader the candidate methods refill slots too
    (`tqjax.decoding.cross_rows`: the host visits every step, so ``chunk`` does not apply); the
    plain methods and best-of-N sample under the fused engine's continuous batching and the reader
    reads each prompt's responses as they finish. on_done and on_error must take two positional
    arguments.

    Every argument is checked before any model is placed or program compiled
    (`tqjax.api.checks`): a TypeError or ValueError names the argument.
    """
    check_instance("params", params, TQParams, "a tqjax.TQParams")
    check_instance("config", config, DecodeConfig, "a tqjax.DecodeConfig")
    check_decode(prompts, batch_size, indices, mesh, chunk, on_done, on_error, stats)
    data = 1 if mesh is None else dict(zip(mesh.axis_names, mesh.devices.shape)).get("data", 1)
    token_lists, models, plan = _check(params, prompts, config)
    if batch_size is not None or (plan.text_readers and not plan.candidates):
        return _decode_continuous(params, prompts, config, batch_size, indices, mesh, data,
                                  chunk, on_done, on_error, stats, token_lists, models, plan)
    arrays = _layout(config, token_lists, models, plan, indices, batch_multiple=data)
    text = plan.text_readers
    if text:        # a reader with its own tokenizer: the text round trip (tqjax.api.cross)
        from tqjax.api.cross import decode_text
        return decode_text(params, prompts, config, arrays, token_lists, plan, text, mesh)
    if mesh is not None:
        params, arrays = place(params, arrays, mesh)
    out = engine.decode_arrays(params, arrays["tokens_BT"], arrays["start_B"], arrays["keys_B"],
                               arrays["live_B"], Knobs.from_config(config), plan=plan, mesh=mesh)
    out = fetch(out)
    P = len(token_lists)
    lengths = out["length_B"][:P]
    tokens = [out["tokens_BN"][i, :lengths[i]].tolist() for i in range(P)]
    tokenizer = getattr(params.sft, "tokenizer", None)
    texts = None if tokenizer is None else [text_of(tokenizer, ids) for ids in tokens]
    diagnostics = dict(steps=int(out["steps"]), nonfinite=out["bad_B"][:P],
                       fallbacks=out["fallback_B"][:P])
    if plan.method == "bon":
        diagnostics.update(sample_rewards=out["rewards_Bn"][:P], kept=out["rank_BN"][:P, 0])
    elif plan.diagnostics and plan.candidates:
        diagnostics.update(rank=[out["rank_BN"][i, :lengths[i]] for i in range(P)],
                           q=[out["q_BNC"][i, :lengths[i]] for i in range(P)])
    return DecodeOutput(tokens=tokens, texts=texts,
                        rewards=out["reward_B"][:P] if params.reward is not None else None,
                        logp_sft=out["logp_sft_B"][:P], kl=out["kl_B"][:P],
                        log_ratio=out["log_ratio_B"][:P], diagnostics=diagnostics)


def _decode_continuous(params, prompts, config, batch_size, indices, mesh, data, chunk, on_done,
                       on_error, stats, token_lists, models, plan) -> DecodeOutput:
    """Continuous batching (``batch_size`` None: one slot per prompt). With a text reader the
    candidate methods refill slots on the text path (`tqjax.api.cross.decode_text`); the plain
    methods and best-of-N sample with the fused engine and the reader scores each prompt's
    responses as they finish (`tqjax.api.cross.TextScorer`)."""
    from tqjax.decoding import continuous

    scorer, has_reward = None, params.reward is not None
    if plan.text_readers:
        from tqjax.api.cross import TextScorer, decode_text
        batch_size = batch_size or len(token_lists)
        if plan.candidates:
            arrays = _layout(config, token_lists, models, plan, indices, batch_multiple=data)
            rows = -(-min(batch_size, len(token_lists)) // data) * data
            return decode_text(params, prompts, config, arrays, token_lists, plan,
                               plan.text_readers, mesh, rows=rows, on_done=on_done,
                               on_error=on_error, stats=stats)
        scorer = TextScorer(params, prompts, token_lists, config, plan, mesh)
    else:
        batch_size = _planned_batch_size(params, config, batch_size, token_lists, mesh, plan)
    arrays = _layout(config, token_lists, models, plan, indices, batch_multiple=data)
    T = arrays["tokens_BT"].shape[1]
    rows = -(-min(batch_size, len(token_lists)) // data) * data
    keys_P = arrays["keys_B"][:len(token_lists)]     # host-side: the engine places what it feeds
    run_params, run_plan = (params, plan) if scorer is None else (scorer.fused, scorer.plan)
    if mesh is not None:
        run_params, arrays = place(run_params, arrays, mesh)
    n = plan.n if plan.method == "bon" else 1
    if n > 1:     # sample j of a prompt: a plain row with key fold_in(prompt_key, j)
        items = [(ids, jax.random.fold_in(keys_P[i], j))
                 for i, ids in enumerate(token_lists) for j in range(n)]
    else:
        items = [(ids, keys_P[i]) for i, ids in enumerate(token_lists)]
    tokenizer = getattr(params.sft, "tokenizer", None)
    results, per_prompt, failed = {}, {}, []

    def done(item, row):
        i = item // n
        results[item] = row
        if not all(i * n + j in results for j in range(n)):
            return
        group = [results[i * n + j] for j in range(n)]
        if scorer is not None:
            try:
                scorer.score(i, group)
            except ReaderContextError as error:
                if on_error is None:
                    raise
                failed.append(i)
                on_error(i, error)
                return
        per_prompt[i] = pick(group, plan)
        if on_done is not None:
            on_done(i, build([per_prompt[i]], plan, tokenizer, has_reward, steps=0))

    stats = stats if stats is not None else continuous.Stats()
    continuous.decode_rows(run_params, items, rows * n, T, Knobs.from_config(config), run_plan,
                           chunk=chunk, mesh=mesh, multiple=data, on_done=done, stats=stats)
    kept = [per_prompt[i] for i in sorted(per_prompt)]
    out = build(kept, plan, tokenizer, has_reward, steps=stats.steps) if kept else empty()
    if scorer is not None:
        out.diagnostics.update(scorer.diagnostics())
        if on_error is not None:
            out.diagnostics["failed"] = sorted(failed)
    return out


def _planned_batch_size(params, config, batch_size: int, token_lists, mesh, dplan) -> int:
    """``batch_size`` checked against the memory planner (0: the largest that fits, at most the
    prompts). The planner knows transformers only: when a model the decode runs is another kind
    (the toy, the gold reward), nothing is planned (0: all prompts at once)."""
    from tqjax.models.config import ModelConfig
    from tqjax.decoding.memory import PlanError, device_memory, format_bytes, largest_batch, plan

    known = {role: getattr(params, role) for role in ROLE_KINDS
             if isinstance(getattr(getattr(params, role), "config", None), ModelConfig)}
    if not set(dplan.active) <= set(known):
        return batch_size or len(token_lists)
    longest = max(len(ids) for ids in token_lists)
    budget = device_memory()
    if batch_size == 0:
        batch_size = largest_batch(known, config, longest, budget, mesh,
                                   max_batch=len(token_lists), continuous=True)
        if batch_size == 0:
            raise PlanError(f"not even batch_size=1 fits this device's {format_bytes(budget)} with "
                            f"this configuration; lower max_new_tokens, horizon or rollouts, or "
                            f"set candidate_chunk")
        return batch_size
    fit = plan(known, config, batch_size, longest, mesh, budget=budget, continuous=True)
    if not fit.fits:
        raise PlanError(f"batch_size={batch_size} does not fit this device: the memory planner "
                        f"estimates {format_bytes(fit.total)} per device, the device has "
                        f"{format_bytes(budget)}; pass a smaller batch_size, or 0 to let the "
                        f"planner pick")
    return batch_size


