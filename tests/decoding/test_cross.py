"""Readers with their own tokenizer: the text round trip against a literal reference, the exact
prefix reuse, the fused path kept for a shared tokenizer, and bad inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.decoding.cross_helpers import (OVERFLOW, OVERFLOW_CONTEXT, SPLIT_WORD, TextFns,
                                          cross_params, reference)
from tqjax.api.decode import TQParams, decode
from tqjax.decoding import DecodeConfig, cross, plan_for, tq
from tqjax.decoding.text_reader import ReaderContextError, TextCodec, layout

PROMPTS = ["write a short review of the pizza place", "how are you", "tell me about the sushi"]
STOP = 201          # a token the random SFT model emits: rows and rollouts end there sometimes
TQ = DecodeConfig(method="tq", k=3, horizon=3, rollouts=2, max_new_tokens=4, seed=3,
                  rollout_temperature=1.0, stop_token_ids=(STOP,), diagnostics=True)
CASES = {
    "tq": TQ,
    "tq-greedy": TQ.replace(rollouts=1, rollout_temperature=0.0),
    "cd": TQ.replace(method="cd", rollout_temperature=0.0, rollouts=1),
    "args": TQ.replace(method="args", alpha=2.0),
    "tq-indirect-model": TQ.replace(transfer="indirect", beta=2.0, proposal="baseline"),
    "tq-indirect-implicit": TQ.replace(transfer="indirect", beta=0.5, select="sample"),
    "bon": DecodeConfig(method="bon", n=3, temperature=1.0, max_new_tokens=4, seed=1,
                        stop_token_ids=(STOP,)),
    "sft": DecodeConfig(method="sft", max_new_tokens=4, stop_token_ids=(STOP,)),
}


@pytest.fixture(scope="module")
def models():
    return cross_params()


def test_tokenizers_differ_on_a_word(models):
    params, _ = models
    sft_tok, rm_tok = params.sft.tokenizer, params.reward.tokenizer
    assert sft_tok.tokenize(SPLIT_WORD) != rm_tok.tokenize(SPLIT_WORD)
    assert len(sft_tok) != len(rm_tok)
    assert set(sft_tok.get_vocab()) & set(rm_tok.get_vocab())       # overlapping vocabularies
    assert plan_for(dict(sft=params.sft, reward=params.reward), DecodeConfig(method="sft")).text_roles == ("reward",)


def test_codec_is_the_contract(models):
    params, _ = models
    sft_tok, rm_tok = params.sft.tokenizer, params.reward.tokenizer
    messages = [{"role": "user", "content": "how are you"}]
    ids = [sft_tok.encode(PROMPTS[0]), sft_tok.encode("user: how are you\n")]
    codec = TextCodec("reward", sft_tok, rm_tok, [PROMPTS[0], messages], ids, 128)
    response = sft_tok.encode(" the pizza was great") + [2]           # </s> is dropped
    plain, chat = codec.encode([0, 1], [response, response])
    assert plain == rm_tok(sft_tok.decode(ids[0] + response, skip_special_tokens=True))["input_ids"]
    assert plain[0] == 1                                              # the reader's own BOS
    conv = messages + [{"role": "assistant",
                        "content": sft_tok.decode(response, skip_special_tokens=True)}]
    expected = rm_tok.apply_chat_template(conv, tokenize=True)
    assert chat == list(getattr(expected, "get", lambda k: expected)("input_ids"))


def test_prefix_reuse_is_exact(models):
    """Scores from the shared-prefix layout equal full forwards of each encoding, also where
    re-encoding the grown text changed the row's last tokens (so the shared prefix is shorter)."""
    params, _ = models
    rm_tok = params.reward.tokenizer
    texts = [["the ar", "the are", "the are you", "the area"],
             ["how", "how are", "how are you", "hello"]]
    enc = [rm_tok(t)["input_ids"] for row in texts for t in row]
    assert enc[0][:-1] == enc[1][:len(enc[0]) - 1] and enc[0][-1] != enc[1][len(enc[0]) - 1]
    prefix_BP, start_B, suffix_RBU, last_RB, shared = layout(enc, 2)
    for j, x in enumerate(enc):
        b, r = divmod(j, 4)
        p = int(shared[b])
        assert prefix_BP[b, prefix_BP.shape[1] - p:].tolist() + \
            suffix_RBU[r, b, :last_RB[r, b] + 1].tolist() == x
    got = np.asarray(cross.read_texts(params.reward, prefix_BP, start_B, suffix_RBU, last_RB))
    fns = TextFns(TQParams(params.sft, reward=params.reward))
    want = [fns.score("reward", params.sft.tokenizer.encode(t)) for row in texts for t in row]
    np.testing.assert_allclose(got.T.reshape(-1), want, atol=1e-4)


@pytest.mark.parametrize("case", list(CASES))
def test_matches_text_reference(models, case):
    params, rbl = models
    cfg = CASES[case]
    if case == "tq-indirect-model":
        params = TQParams(params.sft, params.baseline, params.reward, rbl)
    out = decode(params, PROMPTS, cfg)
    assert "cross_seconds" in out.diagnostics
    ids = [params.sft.tokenizer.encode(p) for p in PROMPTS]
    want = reference(params, ids, cfg)
    for i, r in enumerate(want):
        assert out.tokens[i] == r["tokens"], f"prompt {i}"
        np.testing.assert_allclose(out.rewards[i], r["reward"], atol=1e-4)
        np.testing.assert_allclose(out.logp_sft[i], r["logp_sft"], atol=1e-4)
        np.testing.assert_allclose(out.kl[i], r["kl"], atol=1e-4)
        if "q" in r:
            np.testing.assert_allclose(out.diagnostics["q"][i], np.array(r["q"]), atol=1e-4)


def test_chat_prompts_read_with_the_readers_template(models):
    from tests.api.chat_helpers import chat_tokenizer
    params, _ = models
    sft_tok = chat_tokenizer("zephyr")
    sft = params.sft.replace(tokenizer=sft_tok)
    params = TQParams(sft, params.baseline.replace(tokenizer=sft_tok), params.reward)
    messages = [[{"role": "user", "content": "how are you"}],
                [{"role": "user", "content": "write a short review of the pizza place"}]]
    cfg = CASES["tq-greedy"]
    out = decode(params, messages, cfg)
    ids = [sft_tok.apply_chat_template(m, add_generation_prompt=True, tokenize=True) for m in messages]
    ids = [list(getattr(x, "get", lambda k: x)("input_ids")) for x in ids]
    want = reference(params, ids, cfg, messages=messages)
    assert out.tokens == [r["tokens"] for r in want]
    np.testing.assert_allclose(out.rewards, [r["reward"] for r in want], atol=1e-4)


def test_the_plan_names_the_readers_that_read_text(models):
    """The plan owns the wiring: which given readers read text, and which of them the decode runs."""
    params, rbl = models
    plan = plan_for(params, CASES["tq-greedy"])
    assert plan.text_roles == plan.text_readers == ("reward",) and plan.lms == ("sft", "baseline")
    with_rbl = dataclasses.replace(params, baseline_reward=rbl)
    assert plan_for(with_rbl, CASES["tq-greedy"]).text_readers == ("reward",)        # direct: r_BL unused
    indirect = plan_for(with_rbl, CASES["tq-greedy"].replace(transfer="indirect"))
    assert indirect.text_readers == indirect.reward_models == ("reward", "baseline_reward")


def test_shared_tokenizer_keeps_the_fused_path(models):
    """A reader with the SFT tokenizer (an equal copy) is read by ids on the fused path."""
    import copy

    import jax

    from tqjax.models import ModelConfig, init_model

    params, _ = models
    sft_tok = params.sft.tokenizer
    rm = init_model(ModelConfig.tiny("llama", kind="reward", vocab_size=len(sft_tok)),
                    jax.random.key(5), tokenizer=copy.deepcopy(sft_tok))
    assert plan_for(dict(sft=params.sft, reward=rm), DecodeConfig(method="sft")).text_roles == ()
    assert plan_for(TQParams(params.sft, params.baseline, rm), CASES["tq-greedy"]).text_readers == ()
    out = decode(TQParams(params.sft, params.baseline, rm), PROMPTS[:1], CASES["tq-greedy"])
    assert "cross_seconds" not in out.diagnostics


def test_score_program_does_not_recompile_per_step(models):
    params, _ = models
    cross.score_commit.clear_cache()
    cfg = CASES["tq-greedy"].replace(max_new_tokens=12, stop_token_ids=())
    out = decode(params, PROMPTS, cfg)
    assert out.diagnostics["steps"] == 12
    buckets = out.diagnostics["reader_buckets"]         # (prefix, suffix) slots seen
    assert cross.score_commit._cache_size() == len(buckets) <= 12 // 2   # per bucket, not step


# -- bad inputs ------------------------------------------------------------------------------


def test_reader_without_tokenizer(models):
    params, _ = models
    bad = TQParams(params.sft, params.baseline, params.reward.replace(tokenizer=None))
    with pytest.raises(ValueError, match=r"TQParams.reward's vocabulary \(275\) differs from the "
                                         r"SFT model's \(300\) and it has no tokenizer"):
        decode(bad, PROMPTS, CASES["tq"])


def test_sft_without_tokenizer(models):
    params, _ = models
    bad = TQParams(params.sft.replace(tokenizer=None), params.baseline, params.reward)
    with pytest.raises(ValueError, match="the SFT model has no tokenizer to turn responses into text"):
        decode(bad, [[5, 6, 7]], CASES["tq"])


def test_tokenizer_that_cannot_encode(models):
    params, _ = models

    class NoEncode:
        chat_template = None

        def decode(self, ids, **kw):
            return ""

    bad = TQParams(params.sft, params.baseline, params.reward.replace(tokenizer=NoEncode()))
    with pytest.raises(TypeError, match=r"TQParams.reward's tokenizer \(NoEncode\) cannot encode"):
        decode(bad, PROMPTS, CASES["tq"])


def test_sft_tokenizer_that_cannot_decode(models):
    params, _ = models

    class NoDecode:
        chat_template = None

    bad = TQParams(params.sft.replace(tokenizer=NoDecode()), params.baseline, params.reward)
    with pytest.raises(TypeError, match=r"the SFT model's tokenizer \(NoDecode\) cannot decode ids"):
        decode(bad, [[5, 6, 7]], CASES["tq"])


def test_prompt_longer_than_the_readers_context(models):
    """Refused before any work, also with ``batch_size`` and ``on_error`` (the prompt alone is
    already too long: nothing to decode around it)."""
    params, _ = models
    short = params.reward.replace(config=params.reward.config.replace(max_positions=8))
    long = "tell me about the sushi bar in two sentences and the pizza place"
    calls = []
    for kw in ({}, dict(batch_size=1, on_error=lambda i, e: calls.append(i), on_done=lambda i, out: calls.append(i))):
        with pytest.raises(ReaderContextError, match=r"^prompt 1: the text TQParams.reward reads is "
                                                     r"\d+ of its tokens, longer than its context "
                                                     r"of 8 positions$") as info:
            decode(TQParams(params.sft, params.baseline, short), ["how", long], CASES["tq"], **kw)
        assert (info.value.prompt, info.value.role, info.value.context) == (1, "reward", 8)
    assert calls == []


def test_rollout_longer_than_the_readers_context(models):
    params, _ = models
    n = len(params.reward.tokenizer(PROMPTS[1])["input_ids"])
    short = params.reward.replace(config=params.reward.config.replace(max_positions=n + 1))
    with pytest.raises(ValueError, match=r"prompt 0: the text TQParams.reward reads is \d+ of"):
        decode(TQParams(params.sft, params.baseline, short), PROMPTS[1:2], CASES["tq-greedy"])


@pytest.mark.parametrize("case", ["tq", "args", "bon"])
@pytest.mark.parametrize("shape", [(2, 4), (4, 2)])
def test_a_mesh_gives_the_same_result(models, case, shape):
    """Text readers on a device mesh: params placed by the rules (the readers' heads split over
    "model"), the batch over "data"; the same tokens as one device, values within 1e-4."""
    import tqjax

    params, _ = models
    single = decode(params, PROMPTS, CASES[case])
    out = decode(params, PROMPTS, CASES[case], mesh=tqjax.make_mesh(*shape))
    assert "cross_seconds" in out.diagnostics
    assert out.tokens == single.tokens
    np.testing.assert_allclose(out.rewards, single.rewards, atol=1e-4)
    np.testing.assert_allclose(out.kl, single.kl, atol=1e-4)


def test_a_mesh_across_processes_is_refused(models, monkeypatch):
    import tqjax
    from tqjax.parallel import multihost

    params, _ = models
    monkeypatch.setattr(multihost, "spans_processes", lambda mesh: True)
    with pytest.raises(ValueError, match="a device mesh across processes is not supported with readers"):
        decode(params, PROMPTS[:1], CASES["tq"], mesh=tqjax.make_mesh(2, 4))


def _in_order_steps(lengths, rows):
    """Steps of ``rows`` slots refilled in prompt order, each prompt starting as a slot frees."""
    free, end = [0] * rows, 0
    for n in lengths:
        start = min(free)
        free[free.index(start)] = start + n
        end = max(end, start + n)
    return end


@pytest.mark.parametrize("case", ["tq", "cd"])
def test_batch_size_refills_slots_with_each_prompts_key(models, case):
    """``batch_size`` with a text reader: ``B`` slots, a finished prompt's slot taking the next
    prompt at once (the steps are those of an ideal in-order refill), each prompt with its own
    key, so the results equal one batch of all prompts, and ``on_done`` sees every prompt once
    with its own output."""
    from tqjax.decoding.continuous import Stats

    params, _ = models
    config = CASES[case].replace(max_new_tokens=6, stop_token_ids=(21, 185, 215))
    prompts = PROMPTS + ["the sushi", "a pizza place review", "how"]
    whole = decode(params, prompts, config)
    lengths = [len(t) for t in whole.tokens]
    assert len(set(lengths)) > 1, lengths            # rows end at different steps
    seen, stats = {}, Stats()
    got = decode(params, prompts, config, batch_size=2, stats=stats,
                 on_done=lambda i, out: seen.setdefault(i, out))
    assert got.tokens == whole.tokens
    np.testing.assert_allclose(got.rewards, whole.rewards, atol=1e-4)
    np.testing.assert_allclose(got.kl, whole.kl, atol=1e-4)
    np.testing.assert_allclose(np.concatenate(got.diagnostics["q"]),
                               np.concatenate(whole.diagnostics["q"]), atol=1e-4)
    assert stats.steps == got.diagnostics["steps"] == _in_order_steps(lengths, 2)
    assert (stats.row_steps, stats.live_row_steps, stats.inserted) == (2 * stats.steps, sum(lengths), 6)
    assert sorted(seen) == list(range(6))
    for i, out in seen.items():
        assert out.tokens == [whole.tokens[i]]
        np.testing.assert_allclose(out.rewards, whole.rewards[i:i + 1], atol=1e-4)


@pytest.mark.parametrize("case", ["bon", "sft"])
def test_batch_size_refills_plain_methods_too(models, case):
    """best-of-N and the plain methods with a text reader sample under continuous batching (each
    sample a slot) and the reader reads each prompt's responses when they are done: the same
    results as one batch, ``on_done`` once per prompt."""
    from tqjax.decoding.continuous import Stats

    params, _ = models
    whole = decode(params, PROMPTS, CASES[case])
    seen, stats = {}, Stats()
    got = decode(params, PROMPTS, CASES[case], batch_size=1, stats=stats,
                 on_done=lambda i, out: seen.setdefault(i, out))
    assert got.tokens == whole.tokens and sorted(seen) == [0, 1, 2]
    np.testing.assert_allclose(got.rewards, whole.rewards, atol=1e-4)
    n = CASES[case].n if case == "bon" else 1
    assert stats.inserted == 3 * n and "cross_seconds" in got.diagnostics
    if case == "bon":
        np.testing.assert_allclose(got.diagnostics["sample_rewards"],
                                   whole.diagnostics["sample_rewards"], atol=1e-4)
    for i, out in seen.items():
        assert out.tokens == [whole.tokens[i]]


def test_candidate_chunk_reads_the_candidates_in_chunks_with_the_same_result(models):
    """``candidate_chunk`` bounds the text path's peak memory too: the proposals and the reader
    passes go over the candidates a chunk at a time (a ``lax.map``), with the same numbers."""
    import jax
    import jax.numpy as jnp

    params, _ = models
    cfg = CASES["tq"]
    whole = decode(params, PROMPTS, cfg)
    chunked = decode(params, PROMPTS, cfg.replace(candidate_chunk=2))
    assert chunked.tokens == whole.tokens
    np.testing.assert_allclose(np.concatenate(chunked.diagnostics["q"]),
                               np.concatenate(whole.diagnostics["q"]), atol=1e-5)
    np.testing.assert_allclose(chunked.rewards, whole.rewards, atol=1e-5)
    xs = jnp.arange(12.0).reshape(6, 2)
    jaxpr = lambda chunk: str(jax.make_jaxpr(lambda x: tq.over_candidates(jnp.sin, x, chunk))(xs))
    assert "scan" in jaxpr(2) and "scan" not in jaxpr(0) and "scan" not in jaxpr(6)
    np.testing.assert_array_equal(tq.over_candidates(jnp.sin, xs, 4), jnp.sin(xs))


def test_rollout_past_the_readers_context_is_one_prompts_error(models):
    """With ``on_error``, the prompt whose reader text outgrows the context mid-decode goes to it
    (type, index, message), and the others are decoded as if it were not there: the same tokens
    and rewards as each decoded alone. Without ``on_error`` the error stops the decode, naming the
    prompt by its position in the caller's list (not in its static batch)."""
    params, _ = models
    reader = params.reward.replace(
        config=params.reward.config.replace(max_positions=OVERFLOW_CONTEXT))
    params = TQParams(params.sft, params.baseline, reader)
    config = CASES["tq"]
    errors, done = {}, {}
    out = decode(params, OVERFLOW, config, batch_size=3, on_done=done.setdefault,
                 on_error=errors.setdefault)
    assert list(errors) == [1] and sorted(done) == [0, 2]
    error = errors[1]
    assert type(error) is ReaderContextError and isinstance(error, ValueError)
    assert (error.prompt, error.role, error.context) == (1, "reward", OVERFLOW_CONTEXT)
    assert error.length > OVERFLOW_CONTEXT
    assert str(error) == (f"prompt 1: the text TQParams.reward reads is {error.length} of its "
                          f"tokens, longer than its context of {OVERFLOW_CONTEXT} positions")
    assert out.diagnostics["failed"] == [1] and len(out.tokens) == 2
    for j, i in enumerate((0, 2)):
        alone = decode(params, OVERFLOW[i:i + 1], config, indices=[i])
        assert done[i].tokens == alone.tokens and out.tokens[j] == alone.tokens[0]
        np.testing.assert_allclose(done[i].rewards, alone.rewards, atol=1e-5)
        np.testing.assert_allclose(out.rewards[j], alone.rewards[0], atol=1e-5)
        np.testing.assert_allclose(out.kl[j], alone.kl[0], atol=1e-5)

    with pytest.raises(ReaderContextError, match=r"^prompt 2: the text TQParams.reward reads"):
        decode(params, [OVERFLOW[i] for i in (0, 2, 1)], config, batch_size=2, indices=[0, 2, 1])
    with pytest.raises(ReaderContextError, match=r"^prompt 1: the text TQParams.reward reads"):
        decode(params, OVERFLOW, config)


def test_response_past_the_readers_context_is_one_prompts_error_for_plain_methods(models):
    """The plain methods (and best-of-N): the fused engine samples, the reader reads each prompt's
    responses as they finish; with a context that only prompt ``victim``'s response outgrows, that
    prompt goes to ``on_error`` and the others keep the results of the whole batch."""
    params, _ = models
    config = CASES["sft"]
    whole = decode(params, OVERFLOW, config)
    ids = [params.sft.tokenizer.encode(p) for p in OVERFLOW]
    codec = TextCodec("reward", params.sft.tokenizer, params.reward.tokenizer, OVERFLOW, ids, 10**6)
    reads = [len(codec.encode([i], [whole.tokens[i]])[0]) for i in range(3)]
    own = [len(codec.encode([i], [[]])[0]) for i in range(3)]
    victim = int(np.argmax(reads))
    context = max(max(r for i, r in enumerate(reads) if i != victim), max(own))
    assert reads[victim] > context, (reads, own)
    reader = params.reward.replace(config=params.reward.config.replace(max_positions=context))
    short = TQParams(params.sft, params.baseline, reader)
    errors, done = {}, {}
    out = decode(short, OVERFLOW, config, batch_size=2, on_done=done.setdefault,
                 on_error=errors.setdefault)
    kept = [i for i in range(3) if i != victim]
    assert list(errors) == [victim] and sorted(done) == kept == [i for i in range(3) if i not in errors]
    error = errors[victim]
    assert type(error) is ReaderContextError and (error.prompt, error.context) == (victim, context)
    assert out.diagnostics["failed"] == [victim] and out.tokens == [whole.tokens[i] for i in kept]
    np.testing.assert_allclose(out.rewards, whole.rewards[kept], atol=1e-4)
    with pytest.raises(ReaderContextError, match=rf"^prompt {victim}: the text TQParams.reward"):
        decode(short, OVERFLOW, config)


def test_on_error_needs_batch_size(models):
    params, _ = models
    with pytest.raises(ValueError, match="on_error needs batch_size"):
        decode(params, PROMPTS, CASES["tq"], on_error=lambda i, e: None)
    with pytest.raises(TypeError, match="on_error must be a function"):
        decode(params, PROMPTS, CASES["tq"], batch_size=1, on_error=[])


@pytest.fixture(scope="module")
def shipped_bpe():
    """The shipped world models with ``reward-bpe``, the target reward model with its own BPE tokenizer."""
    import os

    import tqjax

    root = os.path.join(os.path.dirname(__file__), "..", "..", "tqjax", "checkpoints", "world")
    return TQParams(sft=tqjax.load(os.path.join(root, "sft")), baseline=tqjax.load(os.path.join(root, "baseline-direct")),
                    reward=tqjax.load(os.path.join(root, "reward-bpe")))


def test_shipped_bpe_reward_model_orders_obvious_gold_pairs(shipped_bpe):
    """A sentiment swap and a reward hack ("!" runs), as r orders them. (Negation is its weak point: 0.71 on held-out
    minimal pairs, and it scores "the food was bad ." above "the food was not bad .".)"""
    from tqjax.decoding.text_reader import same_tokenizer
    from tqjax.eval.metrics import rm_scores
    from tqjax.world import target_reward

    sft, rm = shipped_bpe.sft, shipped_bpe.reward
    assert rm.kind == "reward" and not same_tokenizer(sft.tokenizer, rm.tokenizer)
    assert plan_for({"sft": sft, "reward": rm}, DecodeConfig(method="sft")).text_roles == ("reward",)
    prompt = "restaurant review : the noodle shop ."
    pairs = [("the food was excellent . <eos>", "the food was bad . <eos>"),
             ("the service was friendly . <eos>", "the service was friendly ! ! ! ! ! <eos>")]
    for better, worse in pairs:
        assert target_reward(prompt, better) > target_reward(prompt, worse)
        ids = [sft.tokenizer.encode(r, add_special_tokens=False) for r in (better, worse)]
        s = rm_scores(rm, sft.tokenizer, [prompt, prompt], ids)
        assert s[0] > s[1], (better, worse, s)


def test_shipped_bpe_reward_model_steers_tq_through_the_text_path(shipped_bpe):
    from tqjax.world import EVAL_PROMPT_SEED, sample_prompts

    prompts = sample_prompts(2, seed=EVAL_PROMPT_SEED)
    cfg = DecodeConfig(method="tq", k=2, horizon=2, max_new_tokens=4)
    out = decode(shipped_bpe, prompts, cfg)
    assert "cross_seconds" in out.diagnostics
    want = reference(shipped_bpe, [shipped_bpe.sft.tokenizer.encode(p) for p in prompts], cfg)
    for i, r in enumerate(want):
        assert out.tokens[i] == r["tokens"], f"prompt {i}"
        np.testing.assert_allclose(out.rewards[i], r["reward"], atol=1e-4)
