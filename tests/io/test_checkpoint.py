"""tqjax checkpoints: bit-exact round trips, `tqjax convert`, refusal to overwrite."""

import jax
import numpy as np
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
