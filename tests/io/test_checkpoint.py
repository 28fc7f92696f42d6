"""tqjax checkpoints: bit-exact round trips, `tqjax convert`, refusal to overwrite, format 1."""

import dataclasses
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import tqjax
from tests import hf_models
from tqjax.cli.main import main


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_round_trip_is_bit_exact(tmp_path, dtype):
    model = tqjax.init_model(tqjax.ModelConfig.tiny("neox", kind="reward"), jax.random.key(0))
    if dtype:
        model = model.replace(params=jax.tree.map(lambda p: p.astype(dtype), model.params))
    tqjax.save(model, tmp_path / "ckpt")
    back = tqjax.load(tmp_path / "ckpt")
    assert back.config == model.config
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(back.params)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree.structure(back.params) == jax.tree.structure(model.params)


def test_save_refuses_to_overwrite(tmp_path):
    model = tqjax.init_model(tqjax.ModelConfig.tiny("gpt2"), jax.random.key(0))
    tqjax.save(model, tmp_path / "ckpt")
    with pytest.raises(FileExistsError, match="already holds a checkpoint"):
        tqjax.save(model, tmp_path / "ckpt")
    tqjax.save(model, tmp_path / "ckpt", overwrite=True)


def test_convert_command(tmp_path, capsys):
    hf = hf_models.save(hf_models.build("gpt2"), tmp_path / "hf")
    assert main(["convert", hf, str(tmp_path / "out")]) == 0
    assert "gpt2 lm" in capsys.readouterr().out
    tokens = np.arange(3, 20)[None]
    np.testing.assert_array_equal(np.asarray(tqjax.logits(tqjax.load(tmp_path / "out"), tokens)),
                                  np.asarray(tqjax.logits(tqjax.load(hf), tokens)))


def test_convert_command_reports_bad_input(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


def save_format_1(model, path):
    """A checkpoint as tqjax wrote it before the layers were stacked: ``params["layers"]`` a list of
    per-layer dicts, ``format_version`` 1."""
    per_layer = [jax.tree.map(lambda a: a[i], model.params["layers"]) for i in range(model.config.n_layers)]
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(path, "params"), dict(model.params, layers=per_layer))
    checkpointer.wait_until_finished()
    meta = {"format_version": 1, "dtype": "float32", "config": dataclasses.asdict(model.config)}
    with open(os.path.join(path, "tqjax.json"), "w") as f:
        json.dump(meta, f)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_format_1_per_layer_checkpoints_load_stacked(tmp_path, arch):
    model = tqjax.init_model(tqjax.ModelConfig.tiny(arch, n_layers=3), jax.random.key(2))
    save_format_1(model, tmp_path / "old")
    back = tqjax.load(tmp_path / "old")
    assert back.config == model.config
    assert jax.tree.structure(back.params) == jax.tree.structure(model.params)
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(back.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    tqjax.save(back, tmp_path / "new")                     # re-saved in the stacked format
    with open(tmp_path / "new" / "tqjax.json") as f:
        assert json.load(f)["format_version"] == 2
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(tqjax.load(tmp_path / "new").params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_format_1_checkpoint_loads_into_a_mesh(tmp_path):
    model = tqjax.init_model(tqjax.ModelConfig.tiny("llama"), jax.random.key(3))
    save_format_1(model, tmp_path / "old")
    back = tqjax.load(tmp_path / "old", mesh=tqjax.make_mesh(4, 2))
    up = back.params["layers"]["up_DF"]
    assert up.sharding.spec == jax.sharding.PartitionSpec(None, None, "model") and len(up.addressable_shards) == 8
    tokens = np.arange(3, 15)[None]
    np.testing.assert_allclose(np.asarray(tqjax.logits(back, tokens)), np.asarray(tqjax.logits(model, tokens)),
                               atol=1e-5)


@pytest.mark.parametrize("name", ["sft", "reward", "reward-baseline", "baseline-direct", "baseline-indirect",
                                  "reward-bpe"])
def test_the_shipped_checkpoints_are_format_2_and_load(name):
    """The shipped models were rebuilt on 2026-12-03 and saved stacked (format 2); format 1 is
    covered by the tests above."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "tqjax", "checkpoints", "world", name)
    with open(os.path.join(path, "tqjax.json")) as f:
        assert json.load(f)["format_version"] == 2
    model = tqjax.load(path)
    assert model.params["layers"]["q_DNH"].shape[0] == model.config.n_layers
    assert model.tokenizer is not None and len(model.tokenizer) == model.config.vocab_size


def test_an_unknown_format_is_refused(tmp_path):
    model = tqjax.init_model(tqjax.ModelConfig.tiny("gpt2"), jax.random.key(0))
    tqjax.save(model, tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "tqjax.json").read_text())
    (tmp_path / "ckpt" / "tqjax.json").write_text(json.dumps(dict(meta, format_version=9)))
    with pytest.raises(tqjax.CheckpointError, match="unsupported tqjax checkpoint format 9 .*reads formats 1, 2"):
        tqjax.load(tmp_path / "ckpt")
