"""Every bad Hugging Face folder gets a clear error that names the problem."""

import json
import os
import struct

import numpy as np
import pytest
import safetensors.numpy

import tqjax
from tests import hf_models


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return hf_models.save(hf_models.build("llama"), tmp_path_factory.mktemp("good"))


def clone(good, tmp_path, config=None, tensors=None):
    cfg = json.load(open(os.path.join(good, "config.json")))
    if config:
        cfg = config(cfg)
    json.dump(cfg, open(tmp_path / "config.json", "w"))
    weights = safetensors.numpy.load_file(os.path.join(good, "model.safetensors"))
    if tensors:
        weights = tensors(weights)
    safetensors.numpy.save_file(weights, str(tmp_path / "model.safetensors"))
    return str(tmp_path)


def test_missing_path_is_an_error_not_a_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*never downloads"):
        tqjax.load(str(tmp_path / "meta-llama/Llama-2-7b"))


def test_pickled_weights_are_refused(good, tmp_path):
    json.dump(json.load(open(os.path.join(good, "config.json"))), open(tmp_path / "config.json", "w"))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(tqjax.CheckpointError, match="pickle.*Convert them to safetensors"):
        tqjax.load(str(tmp_path))


def test_remote_code_only_type_is_refused(good, tmp_path):
    path = clone(good, tmp_path, config=lambda c: {**c, "model_type": "x-vendor",
                                                   "auto_map": {"AutoModel": "modeling_x.X"}})
    with pytest.raises(tqjax.UnsupportedModelError, match="'x-vendor'.*only as remote code.*never runs"):
        tqjax.load(path)


def test_auto_map_of_a_native_type_loads(good, tmp_path):
    """Phi-3 and others ship an auto_map although transformers implements them: tqjax's own code reads them."""
    path = clone(good, tmp_path, config=lambda c: {**c, "auto_map": {"AutoModelForCausalLM": "modeling_x.X"}})
    tokens = np.arange(3, 13)[None]
    np.testing.assert_array_equal(np.asarray(tqjax.logits(tqjax.load(path), tokens)),
                                  np.asarray(tqjax.logits(tqjax.load(good), tokens)))


def test_unknown_architecture(good, tmp_path):
    path = clone(good, tmp_path, config=lambda c: {**c, "model_type": "bert"})
    with pytest.raises(tqjax.UnsupportedModelError, match="unsupported model_type 'bert'"):
        tqjax.load(path)


def test_bookkeeping_fields_are_ignored(good, tmp_path):
    """Fields that no forward reads (SmolLM2's unk_token_id, GPT-2 XL's output_past, ...) load."""
    path = clone(good, tmp_path, config=lambda c: {**c, "unk_token_id": 0, "output_past": True, "alibi_slopes": True})
    assert tqjax.load(path).config == tqjax.load(good).config


def test_unimplemented_value_of_a_math_field(good, tmp_path):
    path = clone(good, tmp_path, config=lambda c: {**c, "hidden_act": "relu2"})
    with pytest.raises(tqjax.UnsupportedModelError, match="config field hidden_act='relu2' is not supported"):
        tqjax.load(path)


def test_invalid_value_is_named(good, tmp_path):
    path = clone(good, tmp_path, config=lambda c: {**c, "num_hidden_layers": "two"})
    with pytest.raises(tqjax.CheckpointError, match="not a valid llama config.*num_hidden_layers"):
        tqjax.load(path)


def test_unsupported_rope_scaling(good, tmp_path):
    path = clone(good, tmp_path, config=lambda c: {**c, "rope_parameters": {"rope_type": "yarn", "factor": 2.0}})
    with pytest.raises(tqjax.UnsupportedModelError, match="rope_parameters.rope_type='yarn' is not supported"):
        tqjax.load(path)


def test_multi_label_classifier_needs_a_label(good, tmp_path):
    path = clone(good, tmp_path, config=lambda c: {**c, "architectures": ["LlamaForSequenceClassification"],
                                                   "id2label": {"0": "a", "1": "b"}})
    with pytest.raises(ValueError, match="2 labels.*'a'.*'b'.*reward_label="):
        tqjax.load(path)


def test_missing_tensor_is_named(good, tmp_path):
    path = clone(good, tmp_path, tensors=lambda w: {k: v for k, v in w.items() if "layers.1.mlp.up_proj" not in k})
    with pytest.raises(tqjax.CheckpointError, match=r"missing tensor\(s\): .*model.layers.1.mlp.up_proj.weight"):
        tqjax.load(path)


def test_unexpected_tensor_is_named(good, tmp_path):
    path = clone(good, tmp_path, tensors=lambda w: {**w, "model.layers.0.extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(tqjax.CheckpointError, match=r"unexpected tensor\(s\): model.layers.0.extra.weight"):
        tqjax.load(path)


def test_misshaped_tensor_is_named(good, tmp_path):
    def shrink(w):
        w["model.layers.0.self_attn.k_proj.weight"] = w["model.layers.0.self_attn.k_proj.weight"][:8]
        return w
    path = clone(good, tmp_path, tensors=shrink)
    with pytest.raises(tqjax.CheckpointError, match=r"k_proj.weight has shape \(8, 32\), expected \(16, 32\)"):
        tqjax.load(path)


def test_truncated_safetensors(good, tmp_path):
    path = clone(good, tmp_path)
    file = tmp_path / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) - 100])
    with pytest.raises(tqjax.CheckpointError, match="truncated or corrupt"):
        tqjax.load(path)


def test_absurd_header_length_is_not_allocated(good, tmp_path):
    path = clone(good, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(tqjax.CheckpointError, match="corrupt safetensors header length 4611686018427387904"):
        tqjax.load(path)


def test_garbage_header(good, tmp_path):
    path = clone(good, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{[")
    with pytest.raises(tqjax.CheckpointError, match="corrupt safetensors header"):
        tqjax.load(path)


def test_sharded_index_leaving_the_folder_is_refused(good, tmp_path):
    path = clone(good, tmp_path)
    os.remove(tmp_path / "model.safetensors")
    index = {"weight_map": {"model.embed_tokens.weight": "../elsewhere/model-00001.safetensors"}}
    json.dump(index, open(tmp_path / "model.safetensors.index.json", "w"))
    with pytest.raises(tqjax.CheckpointError, match="leaves the checkpoint folder"):
        tqjax.load(path)


def test_sharded_checkpoint_loads(good, tmp_path):
    """A real two-shard index loads and equals the single-file checkpoint."""
    path = clone(good, tmp_path)
    weights = safetensors.numpy.load_file(tmp_path / "model.safetensors")
    os.remove(tmp_path / "model.safetensors")
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        safetensors.numpy.save_file({k: weights[k] for k in keys}, str(tmp_path / file))
    json.dump({"weight_map": {k: f for f, ks in shards.items() for k in ks}}, open(tmp_path / "model.safetensors.index.json", "w"))
    tokens = np.arange(3, 13)[None]
    np.testing.assert_array_equal(np.asarray(tqjax.logits(tqjax.load(path), tokens)),
                                  np.asarray(tqjax.logits(tqjax.load(good), tokens)))
