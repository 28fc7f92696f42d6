"""The gold reward as a reward model: the engine's rewards equal the Python gold reward."""

import numpy as np

import tqjax
from tqjax.cli.options import SHIPPED
from tqjax.world import sample_prompts, target_reward
from tqjax.world.oracle import gold_reward_model


def test_engine_rewards_with_the_gold_model_equal_the_python_gold_reward():
    sft = tqjax.load(SHIPPED / "sft")
    params = tqjax.TQParams(sft=sft, baseline=tqjax.load(SHIPPED / "baseline-direct"),
                            reward=gold_reward_model(sft.tokenizer))
    prompts = sample_prompts(4, seed=123)
    for method in ("tq", "args", "bon"):
        config = tqjax.DecodeConfig(method=method, k=3, horizon=3, n=3, temperature=1.0,
                                    max_new_tokens=12)
        out = tqjax.decode(params, prompts, config)
        # continuous batching, as `tqjax eval --gold-rm` runs it (the planner, which knows
        # transformers only, once refused the gold model as a missing reward model)
        rows = tqjax.decode(params, prompts, config, batch_size=2)
        assert rows.tokens == out.tokens
        np.testing.assert_allclose(rows.rewards, out.rewards, atol=1e-5)
        expected = [target_reward(p, t) for p, t in zip(prompts, out.texts)]
        np.testing.assert_allclose(out.rewards, expected, atol=1e-4)
        if method == "bon":   # best-of-N keeps the sample with the highest gold reward
            assert np.allclose(out.diagnostics["sample_rewards"].max(axis=1), out.rewards, atol=1e-5)


def test_forward_suffix_equals_extend_token_by_token():
    """Rollouts are scored with `forward_suffix`; it must agree with the per-token protocol."""
    import jax.numpy as jnp

    tok = tqjax.load(SHIPPED / "sft").tokenizer
    gold = gold_reward_model(tok)
    ids = [tok.encode(p) for p in sample_prompts(2, seed=7)]
    width = max(map(len, ids))
    padded = np.array([[0] * (width - len(r)) + r for r in ids])
    start = np.array([width - len(r) for r in ids], np.int32)
    _, cache = gold.prefill(jnp.asarray(padded), jnp.asarray(start), gold.init_cache(2, width + 8))
    words = [tok.convert_tokens_to_ids(w) for w in ("the", "camera", "is", "great", "and", "cheap")]
    cont = jnp.asarray([words, words[::-1]])
    suffix, stepwise = gold.init_suffix(cache, 6), []
    for u in range(6):
        score, suffix = gold.extend(cont[:, u], cache, suffix)
        stepwise.append(score)
    block = np.asarray(gold.forward_suffix(cont, cache))
    np.testing.assert_allclose(block, np.stack(stepwise, 1), atol=1e-6)
    assert np.ptp(block) > 0      # the scores move along the suffix
