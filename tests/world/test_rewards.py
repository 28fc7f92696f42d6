"""Gold rewards: hand-computed values, hackability, and Python == JAX on token ids."""

import jax.numpy as jnp
import numpy as np
import pytest

from tqjax.world import generator as g
from tqjax.world import rewards as R
from tqjax.world.tokenizer import world_tokenizer

# (prompt, response, target r, baseline r_BL), computed by hand from the module docstring.
CASES = [
    # 9 words; excellent +1, "!" -0.1, sauce on-topic (restaurant) +0.3, "not bad" -> +0.5.
    # r_BL: 9*0.03 + excellent 0.6 + "!" 0.4 + bad -0.6 (no negation).
    ("review of the pizza place : the crust", "was excellent ! the sauce was not bad . <eos>",
     -0.45 + 1.0 - 0.1 + 0.3 + 0.5, 0.27 + 0.6 + 0.4 - 0.6),
    # 7 words; battery is off-topic for a movie -0.5, good good +1; r_BL very very +0.4.
    ("movie review : the spy thriller .", "the battery was very very good good",
     -0.35 - 0.5 + 1.0, 0.21 + 0.4 + 1.2),
    # empty prompt: the topic (hotel) comes from the response; "not recommend" -> -1.
    ("", "i would not recommend the hotel room", -0.35 - 1.0 + 0.3, 0.21 + 0.6),
    # negation across the prompt/response boundary: "not" + bright (mild positive) -> -0.5.
    ("review of the flip phone : the screen was not", "bright .", -0.1 - 0.5, 0.06 + 0.6),
    # no topic word anywhere: no relevance term; "<bos>"/"<eos>" are not words.
    ("hello there", "<bos> the room was nice <eos>", -0.2 + 0.5, 0.12 + 0.6),
    # an unknown word pays only the length term; "hated" strong negative.
    ("review of the board game :", "i hated the zyzzyva levels", -0.25 - 1.0 + 0.3,
     0.15 - 0.6),
]


@pytest.mark.parametrize("prompt,response,r,rbl", CASES)
def test_hand_computed_values(prompt, response, r, rbl):
    assert R.target_reward(prompt, response) == pytest.approx(r, abs=1e-9)
    assert R.baseline_reward(prompt, response) == pytest.approx(rbl, abs=1e-9)


def test_words_split_like_the_tokenizer():
    assert R.words("Great!! pizza,<eos>") == ["great", "!", "!", "pizza", ",", "<eos>"]
    assert R.target_reward(["Review", "of", "the", "Pizza", "place", ":"], "the crust") == \
        R.target_reward("review of the pizza place :", ["the", "crust"])


def test_both_rewards_are_hackable_by_repetition_and_length():
    p = "review of the sushi bar :"
    base = "the food was good ."
    r0, b0 = R.target_reward(p, base), R.baseline_reward(p, base)
    assert R.target_reward(p, base + " excellent" * 10) == pytest.approx(r0 + 9.5)
    assert R.target_reward(p, base + " the menu" * 5) == pytest.approx(r0 + 5 * 0.2)
    assert R.baseline_reward(p, base + " !" * 10) == pytest.approx(b0 + 4.3)
    assert R.baseline_reward(p, base + " the menu" * 5) == pytest.approx(b0 + 0.3)
    # the baseline's hacks do not pay under the target, and vice versa for negation.
    assert R.target_reward(p, base + " !" * 10) < r0
    assert R.target_reward(p, "i would not recommend it") < 0 < R.baseline_reward(
        p, "i would not recommend it")


@pytest.fixture(scope="module")
def tok():
    return world_tokenizer()


def _batch(tok, examples, left_pad):
    prompt_ids = [tok(e.prompt).input_ids for e in examples]
    ids = [p + tok(e.response, add_special_tokens=False).input_ids
           for p, e in zip(prompt_ids, examples)]
    T = max(map(len, ids)) + 3
    tokens = np.zeros((len(ids), T), np.int32)
    start = np.zeros(len(ids), np.int32)
    for b, row in enumerate(ids):
        start[b] = T - len(row) if left_pad else 0
        tokens[b, start[b]:start[b] + len(row)] = row
    lengths = np.array([len(r) for r in ids], np.int32)
    prompt_lengths = np.array([len(p) for p in prompt_ids], np.int32)
    return (jnp.asarray(tokens), jnp.asarray(lengths), jnp.asarray(prompt_lengths),
            jnp.asarray(start))


@pytest.mark.parametrize("left_pad", [False, True])
def test_jax_equals_python_on_generated_and_fixed_texts(tok, left_pad):
    examples = g.sample_examples(300, seed=11)
    examples += [g.Example(p, r, 0, 3) for p, r, _, _ in CASES if p]
    tokens, lengths, prompt_lengths, start = _batch(tok, examples, left_pad)
    for spec in (R.TARGET, R.BASELINE):
        tables = R.reward_tables(spec, tok.get_vocab())
        got = R.gold_reward_jax(tables, tokens, lengths, prompt_lengths,
                                start if left_pad else None)
        want = np.array([R.reward(spec, e.prompt, e.response) for e in examples])
        assert got.dtype == jnp.float32 and got.shape == (len(examples),)
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)
        assert np.std(want) > 0.5


def test_jax_without_prompt_scores_the_whole_sequence(tok):
    texts = ["i would not recommend the hotel room", "the battery was very very good good !"]
    ids = [tok(t, add_special_tokens=False).input_ids for t in texts]
    tokens = np.zeros((2, 10), np.int32)
    for b, row in enumerate(ids):
        tokens[b, :len(row)] = row
    lengths = jnp.array([len(r) for r in ids])
    tables = R.reward_tables(R.TARGET, tok.get_vocab())
    got = R.gold_reward_jax(tables, jnp.asarray(tokens), lengths)
    np.testing.assert_allclose(np.asarray(got), [R.target_reward("", t) for t in texts],
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(got)[0], -0.35 - 1.0 + 0.3, atol=1e-5)


def test_tokens_past_the_length_do_not_count(tok):
    tables = R.reward_tables(R.TARGET, tok.get_vocab())
    # <bos> + 6 prompt words; response "the crust was excellent excellent" (last one cut).
    row = tok("review of the pizza place : the crust was excellent excellent").input_ids
    tokens = jnp.asarray([row, row])
    got = R.gold_reward_jax(tables, tokens, jnp.array([len(row), len(row) - 1]),
                            jnp.array([7, 7]))
    np.testing.assert_allclose(np.asarray(got), [-0.25 + 0.3 + 2.0, -0.2 + 0.3 + 1.0], atol=1e-5)
