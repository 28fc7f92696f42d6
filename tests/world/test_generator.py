"""The review generator: determinism, structure, and a corpus rich enough to learn from."""

import numpy as np
import pytest

from tqjax.world import generator as g
from tqjax.world import rewards


def test_same_seed_same_corpus_other_seed_other_corpus():
    assert g.sample_examples(50, seed=3) == g.sample_examples(50, seed=3)
    assert g.sample_texts(50, seed=3) == g.sample_texts(50, seed=3)
    assert g.sample_prompts(50, seed=3) == g.sample_prompts(50, seed=3)
    assert g.sample_texts(50, seed=3) != g.sample_texts(50, seed=4)
    assert g.sample_prompts(50, seed=3) != g.sample_prompts(50, seed=4)


def test_prefix_of_a_longer_sample_is_the_shorter_sample():
    assert g.sample_texts(200, seed=7)[:20] == g.sample_texts(20, seed=7)


def test_examples_are_prompt_plus_response_ending_in_eos():
    vocab = set(g.vocabulary())
    for e in g.sample_examples(500, seed=0):
        p, r = e.prompt.split(), e.response.split()
        assert e.text == e.prompt + " " + e.response
        assert r[-1] == "<eos>" and "<eos>" not in r[:-1] and "<eos>" not in p
        assert 5 <= len(p) <= g.MAX_PROMPT_WORDS
        assert 2 <= len(r) - 1 <= g.MAX_RESPONSE_WORDS
        assert set(p + r[:-1]) <= vocab
        assert e.text == e.text.lower()
        assert 1 <= e.rating <= 5
        assert g.DOMAINS[e.domain].name in e.prompt or any(
            " ".join(item) in e.prompt for item in g.DOMAINS[e.domain].items)


def test_corpus_is_rich_and_mixed():
    examples = g.sample_examples(2000, seed=1)
    used = {w for e in examples for w in e.text.split()}
    assert len(used) > 350
    assert len(g.vocabulary()) > 400
    assert {e.domain for e in examples} == set(range(len(g.DOMAINS)))
    r = np.array([rewards.target_reward(e.prompt, e.response) for e in examples])
    rbl = np.array([rewards.baseline_reward(e.prompt, e.response) for e in examples])
    assert (r > 1).mean() > 0.15 and (r < -1).mean() > 0.15
    assert 0.5 < np.corrcoef(r, rbl)[0, 1] < 0.95
    assert np.percentile(np.abs(r), 95) < 6 and np.percentile(np.abs(rbl), 95) < 6
    lengths = [len(e.response.split()) for e in examples]
    assert min(lengths) < 8 and max(lengths) > 30
    texts = [e.text for e in examples]
    assert any(" not " in t for t in texts) and any(" ! " in t for t in texts)
    doubled = sum(any(a == b and a.isalpha() for a, b in zip(t.split(), t.split()[1:]))
                  for t in texts)
    assert 0.02 < doubled / len(texts) < 0.3


def test_word_classes_do_not_overlap():
    topics, aspects = set(g.topic_words()), set(g.aspect_domains())
    sentiment = set(rewards.TARGET.sentiment())
    fillers = {w for d in g.DOMAINS for f in d.fillers for w in f.split()}
    assert not topics & aspects and not topics & sentiment and not aspects & sentiment
    assert not fillers & (topics | aspects | sentiment)
    assert g.aspect_domains()["staff"] == {0, 1, 2}
    assert g.topic_words()["sushi"] == g.topic_words()["restaurant"] == 0


def test_make_pairs_orders_two_responses_to_one_prompt():
    pairs = g.make_pairs(100, rewards.target_reward, seed=5)
    assert pairs == g.make_pairs(100, rewards.target_reward, seed=5)
    assert len(pairs) == 100
    for p in pairs:
        assert p.chosen_reward > p.rejected_reward
        assert p.chosen_reward == pytest.approx(rewards.target_reward(p.prompt, p.chosen))
        assert p.rejected_reward == pytest.approx(rewards.target_reward(p.prompt, p.rejected))
        assert p.chosen.endswith("<eos>") and p.rejected.endswith("<eos>")
    bl = g.make_pairs(100, rewards.baseline_reward, seed=5)
    assert [p.prompt for p in bl[:10]] == [p.prompt for p in pairs[:10]]
    flipped = sum(rewards.target_reward(p.prompt, p.chosen)
                  < rewards.target_reward(p.prompt, p.rejected) for p in bl)
    assert 5 <= flipped <= 40
