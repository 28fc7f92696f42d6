"""The BERT sentence encoder against PyTorch `transformers` BertModel on random tiny encoders."""

import numpy as np
import pytest
import torch

from tests import bert_models
from tqjax.eval.encoder import encoder_coherence, sentence_embeddings
from tqjax.io.hf_bert import load_bert
from tqjax.models.bert import BertConfig, Encoder, encode, pool

TOL = 1e-4


def padded_batch(seed=0, B=3, T=12):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, len(bert_models.VOCAB), size=(B, T))
    lengths = np.array([T, T - 5, 3][:B])
    mask = np.arange(T)[None] < lengths[:, None]
    tokens[:, 0] = 2                              # [CLS]
    tokens[~mask] = 0                             # [PAD]
    return tokens, mask


def reference(hf, tokens, mask):
    with torch.no_grad():
        out = hf(torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)))
    h = out.last_hidden_state.numpy()
    m = mask[..., None].astype(np.float32)
    mean = (h * m).sum(1) / m.sum(1)
    return h, dict(cls=h[:, 0], mean=mean, pooler=None if out.pooler_output is None else out.pooler_output.numpy())


@pytest.mark.parametrize("act, pooler", [("gelu", True), ("gelu_new", False), ("relu", True)])
def test_hidden_states_and_pooling_match_transformers(act, pooler, tmp_path):
    hf = bert_models.build(seed=1, pooler=pooler, act=act)
    enc = load_bert(bert_models.save(hf, tmp_path), pooling="mean")
    assert enc.config.pooler is pooler
    tokens, mask = padded_batch()
    ref_h, ref_pooled = reference(hf, tokens, mask)
    h = np.asarray(encode(enc.config, enc.params, tokens, mask))
    assert h.dtype == np.float32 and h.shape == ref_h.shape
    assert np.abs(h - ref_h)[mask].max() <= TOL
    for pooling in ("cls", "mean") + (("pooler",) if pooler else ()):
        ours = np.asarray(pool(enc.config, enc.params, h, mask, pooling))
        assert np.abs(ours - ref_pooled[pooling]).max() <= TOL, pooling


def test_padding_does_not_change_an_embedding(tmp_path):
    enc = load_bert(bert_models.save(bert_models.build(seed=2), tmp_path), pooling="mean")
    tokens, mask = padded_batch(seed=3)
    alone = np.asarray(enc.embed(tokens[2:, :3], mask[2:, :3]))
    batched = np.asarray(enc.embed(tokens, mask))[2:]
    assert np.abs(alone - batched).max() <= 1e-5


def test_text_embeddings_match_transformers_with_the_same_tokenizer(tmp_path):
    hf = bert_models.build(seed=4)
    path = bert_models.save(hf, tmp_path, pooling="mean")
    enc = load_bert(path)
    texts = ["the food was great .", "my review of the sushi bar : the service was not good but the price was fine",
             "quiet"]
    batch = enc.tokenizer(texts, padding=True, return_tensors="np")
    _, ref = reference(hf, batch["input_ids"], batch["attention_mask"].astype(bool))
    ours = sentence_embeddings(enc, texts, batch_size=2)
    assert ours.shape == (3, 32) and np.abs(ours - ref["mean"]).max() <= TOL
    cos = encoder_coherence(enc, texts, texts[::-1])
    r = ref["mean"]
    expected = (r * r[::-1]).sum(-1) / (np.linalg.norm(r, axis=-1) * np.linalg.norm(r[::-1], axis=-1))
    assert np.abs(cos - expected).max() <= 1e-5 and abs(cos[1] - 1.0) <= 1e-6


def test_pooling_comes_from_the_sentence_transformers_folder(tmp_path):
    hf = bert_models.build(seed=5)
    assert load_bert(bert_models.save(hf, tmp_path / "mean", pooling="mean")).pooling == "mean"
    cls = load_bert(bert_models.save(hf, tmp_path / "cls", pooling="cls", max_seq_length=16, lowercase=True))
    assert (cls.pooling, cls.max_length, cls.lowercase) == ("cls", 16, True)
    assert load_bert(str(tmp_path / "cls"), pooling="pooler").pooling == "pooler"     # the flag overrides
    plain = bert_models.save(hf, tmp_path / "plain")
    assert load_bert(plain, pooling="cls").max_length == 64


def test_truncation_to_max_length(tmp_path):
    enc = load_bert(bert_models.save(bert_models.build(seed=6), tmp_path, pooling="cls", max_seq_length=8))
    long = " ".join(["good"] * 40)
    short = " ".join(["good"] * 6)                  # [CLS] + 6 + [SEP] = 8 tokens
    a, b = sentence_embeddings(enc, [long, short])
    assert np.abs(a - b).max() <= 1e-5


def test_config_and_encoder_validation():
    with pytest.raises(ValueError, match="d_model=30 is not divisible by n_heads=4"):
        BertConfig(vocab_size=61, d_model=30, n_layers=1, n_heads=4, mlp_dim=8, max_positions=16)
    cfg = BertConfig(vocab_size=61, d_model=8, n_layers=1, n_heads=2, mlp_dim=8, max_positions=16, pooler=False)
    with pytest.raises(ValueError, match="pooling must be one of"):
        Encoder(params={}, config=cfg, pooling="max", max_length=16)
    with pytest.raises(ValueError, match="needs the pooler layer"):
        Encoder(params={}, config=cfg, pooling="pooler", max_length=16)
    with pytest.raises(ValueError, match=r"max_length must lie in \[2, 16\]"):
        Encoder(params={}, config=cfg, pooling="cls", max_length=64)
