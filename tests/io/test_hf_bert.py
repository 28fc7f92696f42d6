"""The BERT encoder importer refuses what it does not implement, with a message that names it;
the packaged all-MiniLM-L6-v2 is loaded only when every file has the upstream digest."""

import hashlib
import json
import os
import shutil
import zipfile

import numpy as np
import pytest
import safetensors.numpy

from tests import bert_models
from tqjax.io import CheckpointError, UnsupportedModelError
from tqjax.io.hf_bert import load_bert
from tqjax.io.minilm import load_packaged_minilm, packaged_minilm


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return bert_models.save(bert_models.build(seed=7), tmp_path_factory.mktemp("bert"), pooling="mean")


def clone(good, tmp_path, config=None, tensors=None, files=None):
    path = tmp_path / "enc"
    shutil.copytree(good, path)
    if config:
        json.dump(config(json.load(open(path / "config.json"))), open(path / "config.json", "w"))
    if tensors:
        weights = tensors(safetensors.numpy.load_file(str(path / "model.safetensors")))
        safetensors.numpy.save_file(weights, str(path / "model.safetensors"))
    for name, content in (files or {}).items():
        if content is None:
            os.remove(path / name)
        else:
            (path / name).write_text(json.dumps(content))
    return str(path)


@pytest.mark.parametrize("config, error, message", [
    (lambda c: {**c, "model_type": "roberta"}, UnsupportedModelError, "must have model_type 'bert', got 'roberta'"),
    (lambda c: {**c, "architectures": ["BertForMaskedLM"]}, UnsupportedModelError,
     r"unsupported encoder architecture \['BertForMaskedLM'\]"),
    (lambda c: {**c, "position_embedding_type": "relative_key"}, UnsupportedModelError,
     "position_embedding_type='relative_key' is not supported"),
    (lambda c: {**c, "is_decoder": True}, UnsupportedModelError, "is_decoder=True is not supported"),
    (lambda c: {**c, "rotary_value": 1}, UnsupportedModelError, "unhandled config field.*rotary_value"),
    (lambda c: {**c, "auto_map": {"AutoModel": "x.Y"}}, UnsupportedModelError, "remote code"),
    (lambda c: {**c, "hidden_act": "swish_x"}, UnsupportedModelError, "unsupported hidden_act 'swish_x'"),
    (lambda c: {k: v for k, v in c.items() if k != "intermediate_size"}, CheckpointError,
     "lacks the field 'intermediate_size'"),
    (lambda c: {**c, "num_attention_heads": 5}, UnsupportedModelError, "not divisible by n_heads=5"),
])
def test_bad_config(good, tmp_path, config, error, message):
    with pytest.raises(error, match=message):
        load_bert(clone(good, tmp_path, config=config))


def drop(name):
    return lambda w: {k: v for k, v in w.items() if k != name}


@pytest.mark.parametrize("tensors, message", [
    (drop("encoder.layer.1.output.dense.bias"), "missing tensor.*encoder.layer.1.output.dense.bias"),
    (lambda w: {**w, "cls.predictions.bias": np.zeros(61, np.float32)}, "unexpected tensor.*cls.predictions.bias"),
    (lambda w: {**w, "encoder.layer.0.intermediate.dense.weight": np.zeros((64, 31), np.float32)},
     r"encoder.layer.0.intermediate.dense.weight has shape \(64, 31\), expected \(64, 32\)"),
    (drop("pooler.dense.bias"), "missing tensor.*pooler.dense.bias"),
    (lambda w: {**w, "embeddings.word_embeddings.weight": np.zeros((61, 32), np.int32)},
     "has dtype int32, expected a floating-point type"),
])
def test_bad_tensors(good, tmp_path, tensors, message):
    with pytest.raises(CheckpointError, match=message):
        load_bert(clone(good, tmp_path, tensors=tensors))


def test_a_folder_without_a_pooler_loads_without_it(good, tmp_path):
    path = clone(good, tmp_path, tensors=lambda w: {k: v for k, v in w.items() if not k.startswith("pooler.")})
    enc = load_bert(path)
    assert not enc.config.pooler and "pooler_DD" not in enc.params
    with pytest.raises(ValueError, match="needs the pooler layer"):
        load_bert(path, pooling="pooler")


@pytest.mark.parametrize("files, error, message", [
    ({"modules.json": [{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
                       {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                       {"idx": 2, "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]},
     UnsupportedModelError, "module 'sentence_transformers.models.Dense' is not supported"),
    ({"1_Pooling/config.json": {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
                                "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True}},
     UnsupportedModelError, "pooling_mode_max_tokens is not supported"),
    ({"1_Pooling/config.json": {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}},
     UnsupportedModelError, "exactly one of pooling_mode_cls_token / pooling_mode_mean_tokens, got 2"),
    ({"1_Pooling/config.json": {"pooling_mode_mean_tokens": True, "pooling_mode_magic": True}},
     UnsupportedModelError, "unhandled pooling field.*pooling_mode_magic"),
    ({"sentence_bert_config.json": {"max_seq_length": 32, "model_args": {}}}, UnsupportedModelError,
     "sentence_bert_config.json: unhandled field.*model_args"),
    ({"modules.json": None}, ValueError, "no sentence-transformers pooling config.*give the pooling explicitly"),
])
def test_bad_sentence_transformers_files(good, tmp_path, files, error, message):
    with pytest.raises(error, match=message):
        load_bert(clone(good, tmp_path, files=files))


def test_bad_folders(good, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*never downloads"):
        load_bert(str(tmp_path / "sentence-transformers/all-MiniLM-L6-v2"))
    pickled = clone(good, tmp_path)
    os.remove(os.path.join(pickled, "model.safetensors"))
    open(os.path.join(pickled, "pytorch_model.bin"), "wb").write(b"\x80\x04pickle")
    with pytest.raises(CheckpointError, match="refuses pickle files"):
        load_bert(pickled)
    no_vocab = tmp_path / "novocab"
    shutil.copytree(good, no_vocab)
    for name in ("vocab.txt", "tokenizer.json"):
        os.remove(no_vocab / name)
    with pytest.raises(CheckpointError, match="no tokenizer"):
        load_bert(str(no_vocab))
    with pytest.raises(ValueError, match="pooling must be one of"):
        load_bert(good, pooling="max")


def zip_folder(folder, path, skip=()):
    names = {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for root, _, files in os.walk(folder):
            for f in files:
                name = os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/")
                if name in skip:
                    continue
                data = open(os.path.join(root, f), "rb").read()
                z.writestr(name, data)
                names[name] = hashlib.sha256(data).hexdigest()
    return str(path), names


def test_packaged_encoder_is_loaded_only_with_the_pinned_digests(good, tmp_path):
    path, digests = zip_folder(good, tmp_path / "model.zip")
    enc = load_packaged_minilm(path, digests)
    assert enc.pooling == "mean" and enc.config.d_model == 32
    tampered = {**digests, "model.safetensors": "0" * 64}
    with pytest.raises(CheckpointError, match="model.safetensors has sha256 [0-9a-f]{64}, not the "
                                              "sentence-transformers/all-MiniLM-L6-v2@1110a243 file"):
        load_packaged_minilm(path, tampered)
    with pytest.raises(CheckpointError, match=r"\(unexpected: \[\], missing: \['extra.txt'\]\)"):
        load_packaged_minilm(path, {**digests, "extra.txt": "0" * 64})
    with pytest.raises(CheckpointError, match="unexpected: \\['vocab.txt'\\]"):
        load_packaged_minilm(path)          # the real pins: this tiny folder is not all-MiniLM-L6-v2
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a zip archive"):
        load_packaged_minilm(str(tmp_path / "bad.zip"), digests)


@pytest.mark.skipif(packaged_minilm() is None, reason="the optional 'coherence' extra is not installed")
def test_packaged_minilm_reproduces_the_published_similarities():
    """sentence-transformers' README: all-MiniLM-L6-v2 similarities of these three sentences."""
    from tqjax.eval.encoder import sentence_embeddings

    enc = load_packaged_minilm(packaged_minilm())
    e = sentence_embeddings(enc, ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = e @ e.T
    assert np.abs(sim[[0, 0, 1], [1, 2, 2]] - [0.6660, 0.1046, 0.1411]).max() <= 6e-5
