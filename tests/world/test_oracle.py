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
        out = tqjax.decode(params, prompts, tqjax.DecodeConfig(method=method, k=3, horizon=3, n=3,
                                                               temperature=1.0, max_new_tokens=12))
        expected = [target_reward(p, t) for p, t in zip(prompts, out.texts)]
        np.testing.assert_allclose(out.rewards, expected, atol=1e-4)
        if method == "bon":   # best-of-N keeps the sample with the highest gold reward
            assert np.allclose(out.diagnostics["sample_rewards"].max(axis=1), out.rewards, atol=1e-5)
