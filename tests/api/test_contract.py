"""The contract of the public API: every argument of every public entry point refuses a bad value
at the door, with the right error type and a message that names the argument, before any model
is placed or any program traced or compiled.

`ROWS` holds one (entry point, argument, bad value, error, kind of bad value) per case; every other
argument of the call is a good value (`good`). `test_every_public_argument_has_a_row` fails when a
public function of `tqjax` grows an argument without a row here: add one line to `ROWS` (e.g.
``("load", "reward_label", 2.5, TypeError, TYPE)``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

import tqjax
from tests.compile_events import compile_events
from tqjax.decoding.continuous import Stats
from tqjax.models import ModelConfig, toy
from tqjax.models.transformer import is_shape, param_shapes

TYPE, RANGE, SHAPE, NONE, ARITY = "wrong type", "out of range", "wrong shape", "None", "arity"


@dataclasses.dataclass(frozen=True)
class Use:
    """A bad value that is one of the module's models (see `models`)."""
    name: str


ROWS = [
    # tqjax.decode
    ("decode", "params", None, TypeError, NONE),
    ("decode", "params", (Use("lm"), Use("lm")), TypeError, TYPE),
    ("decode", "prompts", None, TypeError, NONE),
    ("decode", "prompts", "hello", TypeError, TYPE),
    ("decode", "prompts", [], ValueError, SHAPE),
    ("decode", "prompts", [[[1, 2]]], ValueError, SHAPE),
    ("decode", "prompts", [[1.5, 2.0]], TypeError, TYPE),
    ("decode", "prompts", [[1, 61]], ValueError, RANGE),
    ("decode", "prompts", [[1] * 130], ValueError, RANGE),
    ("decode", "prompts", [{"role": "user", "content": "hi"}], TypeError, TYPE),
    ("decode", "config", None, TypeError, NONE),
    ("decode", "config", {"method": "tq"}, TypeError, TYPE),
    ("decode", "batch_size", -1, ValueError, RANGE),
    ("decode", "batch_size", 2.5, TypeError, TYPE),
    ("decode", "batch_size", "4", TypeError, TYPE),
    ("decode", "batch_size", True, TypeError, TYPE),
    ("decode", "indices", 5, TypeError, TYPE),
    ("decode", "indices", "0", TypeError, TYPE),
    ("decode", "indices", [0.5], TypeError, TYPE),
    ("decode", "indices", [0, 1], ValueError, SHAPE),
    ("decode", "indices", [-1], ValueError, RANGE),
    ("decode", "indices", [2 ** 32], ValueError, RANGE),
    ("decode", "mesh", "2,4", TypeError, TYPE),
    ("decode", "mesh", (2, 4), TypeError, TYPE),
    ("decode", "mesh", Use("mesh_xy"), ValueError, RANGE),
    ("decode", "chunk", 0, ValueError, RANGE),
    ("decode", "chunk", 1.5, TypeError, TYPE),
    ("decode", "on_done", 5, TypeError, TYPE),
    ("decode", "on_done", lambda i: None, TypeError, ARITY),
    ("decode", "on_done", lambda: None, TypeError, ARITY),
    ("decode", "on_error", "log", TypeError, TYPE),
    ("decode", "on_error", lambda i, error, extra: None, TypeError, ARITY),
    ("decode", "stats", {}, TypeError, TYPE),
    ("decode", "stats", 0, TypeError, TYPE),
    # tqjax.load
    ("load", "path", None, TypeError, NONE),
    ("load", "path", 5, TypeError, TYPE),
    ("load", "path", "", ValueError, RANGE),
    ("load", "path", "/nonexistent/tqjax-model", FileNotFoundError, RANGE),
    ("load", "dtype", "float33", TypeError, TYPE),
    ("load", "dtype", "int8", ValueError, RANGE),
    ("load", "shardings", "replicated", TypeError, TYPE),
    ("load", "shardings", {}, TypeError, SHAPE),
    ("load", "mesh", "2,4", TypeError, TYPE),
    ("load", "mesh", (2, 4), TypeError, TYPE),
    ("load", "mesh", Use("mesh_xy"), ValueError, RANGE),
    ("load", "reward_label", 2.5, TypeError, TYPE),
    ("load", "reward_label", True, TypeError, TYPE),
    ("load", "reward_label", -1, ValueError, RANGE),
    ("load", "path", "/nonexistent/tqjax-model.gguf", FileNotFoundError, RANGE),
    # tqjax.save
    ("save", "model", None, TypeError, NONE),
    ("save", "model", Use("toy"), TypeError, TYPE),
    ("save", "path", None, TypeError, NONE),
    ("save", "path", 5, TypeError, TYPE),
    ("save", "overwrite", "yes", TypeError, TYPE),
    ("save", "overwrite", None, TypeError, NONE),
    # tqjax.logits
    ("logits", "model", None, TypeError, NONE),
    ("logits", "model", Use("toy"), TypeError, TYPE),
    ("logits", "model", Use("rm"), ValueError, RANGE),
    ("logits", "tokens_BT", None, TypeError, NONE),
    ("logits", "tokens_BT", "1 2", TypeError, TYPE),
    ("logits", "tokens_BT", [[1.5, 2.0]], TypeError, TYPE),
    ("logits", "tokens_BT", [1, 2], ValueError, SHAPE),
    ("logits", "tokens_BT", np.zeros((0, 3), np.int32), ValueError, SHAPE),
    ("logits", "tokens_BT", [[1, 61]], ValueError, RANGE),
    ("logits", "tokens_BT", [[-1, 1]], ValueError, RANGE),
    ("logits", "tokens_BT", np.ones((1, 129), np.int32), ValueError, SHAPE),
    # tqjax.reward
    ("reward", "model", None, TypeError, NONE),
    ("reward", "model", Use("lm"), ValueError, RANGE),
    ("reward", "tokens_BT", None, TypeError, NONE),
    ("reward", "tokens_BT", [[[1, 2]]], ValueError, SHAPE),
    ("reward", "tokens_BT", [[1, 99]], ValueError, RANGE),
    ("reward", "lengths_B", None, TypeError, NONE),
    ("reward", "lengths_B", [1.5], TypeError, TYPE),
    ("reward", "lengths_B", [2, 2], ValueError, SHAPE),
    ("reward", "lengths_B", [0], ValueError, RANGE),
    ("reward", "lengths_B", [3], ValueError, RANGE),
    # tqjax.make_mesh
    ("make_mesh", "data", "1", TypeError, TYPE),
    ("make_mesh", "data", 0, ValueError, RANGE),
    ("make_mesh", "data", 3, ValueError, RANGE),
    ("make_mesh", "model", 1.0, TypeError, TYPE),
    ("make_mesh", "model", -2, ValueError, RANGE),
    ("make_mesh", "model", None, TypeError, NONE),
    ("make_mesh", "devices", "cpu", TypeError, TYPE),
    ("make_mesh", "devices", [0], TypeError, TYPE),
    ("make_mesh", "devices", [], ValueError, SHAPE),
    ("make_mesh", "devices", Use("same_device_twice"), ValueError, RANGE),
    # tqjax.TQParams
    ("TQParams", "sft", None, TypeError, NONE),
    ("TQParams", "sft", "sft", TypeError, TYPE),
    ("TQParams", "sft", Use("rm"), ValueError, RANGE),
    ("TQParams", "baseline", 5, TypeError, TYPE),
    ("TQParams", "baseline", Use("rm"), ValueError, RANGE),
    ("TQParams", "reward", "reward", TypeError, TYPE),
    ("TQParams", "reward", Use("lm"), ValueError, RANGE),
    ("TQParams", "baseline_reward", object(), TypeError, TYPE),
    ("TQParams", "baseline_reward", Use("lm"), ValueError, RANGE),
    # tqjax.DecodeConfig
    ("DecodeConfig", "method", "beam", ValueError, RANGE),
    ("DecodeConfig", "method", None, TypeError, NONE),
    ("DecodeConfig", "k", 0, ValueError, RANGE),
    ("DecodeConfig", "k", 2.5, TypeError, TYPE),
    ("DecodeConfig", "k", None, TypeError, NONE),
    ("DecodeConfig", "alpha", float("nan"), ValueError, RANGE),
    ("DecodeConfig", "alpha", "1", TypeError, TYPE),
    ("DecodeConfig", "horizon", -1, ValueError, RANGE),
    ("DecodeConfig", "horizon", 1.0, TypeError, TYPE),
    ("DecodeConfig", "rollouts", 0, ValueError, RANGE),
    ("DecodeConfig", "rollouts", "2", TypeError, TYPE),
    ("DecodeConfig", "transfer", "sideways", ValueError, RANGE),
    ("DecodeConfig", "transfer", 1, TypeError, TYPE),
    ("DecodeConfig", "beta", 0.0, ValueError, RANGE),
    ("DecodeConfig", "beta", None, TypeError, NONE),
    ("DecodeConfig", "weights", "raw", ValueError, RANGE),
    ("DecodeConfig", "weights", None, TypeError, NONE),
    ("DecodeConfig", "proposal", "dpo", ValueError, RANGE),
    ("DecodeConfig", "proposal", ["sft"], TypeError, TYPE),
    ("DecodeConfig", "select", "top", ValueError, RANGE),
    ("DecodeConfig", "select", True, TypeError, TYPE),
    ("DecodeConfig", "rollout_temperature", -1.0, ValueError, RANGE),
    ("DecodeConfig", "rollout_temperature", "0", TypeError, TYPE),
    ("DecodeConfig", "temperature", -0.1, ValueError, RANGE),
    ("DecodeConfig", "temperature", float("inf"), ValueError, RANGE),
    ("DecodeConfig", "top_k", -1, ValueError, RANGE),
    ("DecodeConfig", "top_k", 0.5, TypeError, TYPE),
    ("DecodeConfig", "top_p", 0.0, ValueError, RANGE),
    ("DecodeConfig", "top_p", 1.5, ValueError, RANGE),
    ("DecodeConfig", "top_p", None, TypeError, NONE),
    ("DecodeConfig", "n", 0, ValueError, RANGE),
    ("DecodeConfig", "n", 4.0, TypeError, TYPE),
    ("DecodeConfig", "max_new_tokens", 0, ValueError, RANGE),
    ("DecodeConfig", "max_new_tokens", None, TypeError, NONE),
    ("DecodeConfig", "stop_token_ids", 2, TypeError, TYPE),
    ("DecodeConfig", "stop_token_ids", (2, "eos"), TypeError, TYPE),
    ("DecodeConfig", "stop_token_ids", (-1,), ValueError, RANGE),
    ("DecodeConfig", "ignore_eos", 1, TypeError, TYPE),
    ("DecodeConfig", "ignore_eos", None, TypeError, NONE),
    ("DecodeConfig", "seed", -1, ValueError, RANGE),
    ("DecodeConfig", "seed", 2 ** 32, ValueError, RANGE),
    ("DecodeConfig", "seed", 1.0, TypeError, TYPE),
    ("DecodeConfig", "diagnostics", "yes", TypeError, TYPE),
    ("DecodeConfig", "candidate_chunk", -1, ValueError, RANGE),
    ("DecodeConfig", "candidate_chunk", None, TypeError, NONE),
    ("DecodeConfig", "layers", "unrolled", ValueError, RANGE),
    ("DecodeConfig", "layers", None, TypeError, NONE),
]

def decoder_run(params, config, prompts, batch_size=None, *, indices=None, mesh=None, chunk=None,
                on_done=None, on_error=None, stats=None):
    """`tqjax.Decoder` built, then run: the arguments of `tqjax.decode`, split between the two."""
    return tqjax.Decoder(params, config, mesh).run(prompts, batch_size, indices=indices, chunk=chunk,
                                                   on_done=on_done, on_error=on_error, stats=stats)


# tqjax.Decoder takes decode's arguments (params, config and mesh when built, the rest in run)
ROWS += [("Decoder",) + row[1:] for row in ROWS if row[0] == "decode"]
ENTRY_POINTS = dict(decode=tqjax.decode, Decoder=decoder_run, load=tqjax.load, save=tqjax.save, logits=tqjax.logits,
                    reward=tqjax.reward, make_mesh=tqjax.make_mesh, TQParams=tqjax.TQParams,
                    DecodeConfig=tqjax.DecodeConfig)
# Public names that are not entry points with arguments to check here, and why.
EXEMPT = {
    "DecodeOutput": "a result that decode builds, never built by users",
    "Model": "built by load and init_model; its config is a ModelConfig",
    "ModelConfig": "checks its fields in __post_init__ (tests/models, tests/io/test_hf_errors)",
    "init_model": "tqjax/models is outside this contract so far (see issue 24's closing note)",
}
# How a message names each argument, where not by the argument's own name.
NAMED_AS = {"prompts": r"\bprompts?\b", "data": r"\bdata\b", "model": r"\bmodel\b"}

# What each entry point does first once its arguments are good: spied on, so no row gets there.
WORK = ["tqjax.api.inputs.layout", "tqjax.api.params.place_params", "tqjax.decoding.engine.decode_arrays",
        "tqjax.decoding.continuous.decode_rows", "tqjax.api.cross.decode_text",
        "tqjax.api.cross.TextScorer", "tqjax.api.models.load_checkpoint",
        "tqjax.api.models.load_hf", "tqjax.api.models.save_checkpoint", "tqjax.api.models._forward",
        "tqjax.api.models._reward", "tqjax.parallel.mesh.Mesh"]


class Reached(Exception):
    """A spied entry point of the work was called."""


def _zeros(config) -> tqjax.Model:
    """A tiny model of zeros, built without tracing (no row ever runs it)."""
    shapes = param_shapes(config)
    return tqjax.Model(jax.tree.map(lambda s: np.zeros(s, np.float32), shapes, is_leaf=is_shape),
                       config)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    lm = _zeros(ModelConfig.tiny("llama"))
    path = tmp_path_factory.mktemp("contract") / "lm"
    tqjax.save(lm, path)
    one = jax.devices()[:1]
    return dict(lm=lm, rm=_zeros(ModelConfig.tiny("llama", kind="reward")), path=str(path),
                toy=toy.ToyModel(np.zeros((8, 7, 5), np.float32)),
                mesh=tqjax.make_mesh(1, 1, devices=one),
                mesh_xy=Mesh(np.asarray(one).reshape(1, 1), ("x", "y")),
                same_device_twice=[one[0], one[0]])


def good(entry: str, m: dict, tmp_path) -> dict:
    """Good values of every argument of ``entry``."""
    if entry == "Decoder":
        entry = "decode"
    return dict(
        decode=dict(params=tqjax.TQParams(m["lm"], m["lm"], m["rm"]), prompts=[[1, 2]],
                    config=tqjax.DecodeConfig(k=3, horizon=2, max_new_tokens=4), batch_size=2,
                    indices=[0], mesh=m["mesh"], chunk=2, on_done=lambda i, output: None,
                    on_error=lambda i, error: None, stats=Stats()),
        load=dict(path=m["path"], dtype="float32", shardings=None, mesh=None),
        save=dict(model=m["lm"], path=str(tmp_path / "saved"), overwrite=False),
        logits=dict(model=m["lm"], tokens_BT=[[1, 2]]),
        reward=dict(model=m["rm"], tokens_BT=[[1, 2]], lengths_B=[2]),
        make_mesh=dict(data=1, model=1, devices=jax.devices()[:1]),
        TQParams=dict(sft=m["lm"], baseline=m["lm"], reward=m["rm"], baseline_reward=m["rm"]),
        DecodeConfig=dict(),
    )[entry]


@pytest.fixture
def no_work(monkeypatch):
    """Spies on the work (`WORK`) and a count of every JAX trace and compile while it runs."""
    for target in WORK:
        def spy(*args, _target=target, **kwargs):
            raise Reached(_target)
        monkeypatch.setattr(target, spy)
    with compile_events() as events:
        yield events


def _resolve(value, m):
    if isinstance(value, Use):
        return m[value.name]
    if isinstance(value, tuple) and any(isinstance(v, Use) for v in value):
        return tuple(_resolve(v, m) for v in value)
    return value


def _id(row):
    entry, arg, bad, error, kind = row
    # addresses differ between processes, and pytest-xdist's workers must collect the same ids
    shown = re.sub(r" at 0x[0-9a-f]+>", ">", repr(bad))
    shown = shown.replace("<function <lambda>>", "lambda")[:24]
    return f"{entry}-{arg}-{shown}"


@pytest.mark.parametrize("row", ROWS, ids=[_id(r) for r in ROWS])
def test_a_bad_argument_fails_at_the_door(row, models, tmp_path, no_work):
    entry, arg, bad, error, kind = row
    kwargs = dict(good(entry, models, tmp_path), **{arg: _resolve(bad, models)})
    with pytest.raises(error) as caught:
        ENTRY_POINTS[entry](**kwargs)
    message = str(caught.value)
    assert re.search(NAMED_AS.get(arg, rf"\b{arg}\b"), message), (arg, message)
    assert not no_work, f"traced or compiled before the error: {no_work}"
    assert not (tmp_path / "saved").exists()


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_good_arguments_pass_the_door(entry, models, tmp_path, no_work):
    """The rows fail for their bad value alone: with every argument good, the call gets past the
    door to the work (spied on) or, for the two value types, builds its value."""
    call = lambda: ENTRY_POINTS[entry](**good(entry, models, tmp_path))
    if entry in ("TQParams", "DecodeConfig"):
        call()
    else:
        with pytest.raises(Reached):
            call()


@pytest.mark.parametrize("name", ["chunk", "on_done", "on_error", "stats"])
def test_continuous_batching_arguments_need_batch_size(name, models, tmp_path, no_work):
    kwargs = dict(good("decode", models, tmp_path), batch_size=None)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("chunk", "on_done", "on_error", "stats") or k == name}
    with pytest.raises(ValueError, match=f"{name} needs batch_size"):
        tqjax.decode(**kwargs)
    assert not no_work


def test_load_refuses_shardings_and_mesh_together(models, no_work):
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]),
                             models["lm"].params)
    with pytest.raises(ValueError, match="pass shardings or mesh, not both"):
        tqjax.load(models["path"], shardings=shardings, mesh=models["mesh"])
    assert not no_work


def test_a_builtin_callback_without_a_signature_is_taken_on_trust(models, tmp_path, no_work):
    seen = {}
    kwargs = dict(good("decode", models, tmp_path), on_done=seen.setdefault, on_error=print)
    with pytest.raises(Reached):
        tqjax.decode(**kwargs)


def test_every_public_argument_has_a_row():
    """Like `check_fields` for DecodeConfig: a new public function or argument needs rows."""
    public = {name for name in tqjax.__all__
              if not (inspect.isclass(getattr(tqjax, name))
                      and issubclass(getattr(tqjax, name), Exception))}
    assert public == set(ENTRY_POINTS) | set(EXEMPT), (
        f"public names with no entry in ENTRY_POINTS or EXEMPT: "
        f"{sorted(public - set(ENTRY_POINTS) - set(EXEMPT))}")
    for entry, fn in ENTRY_POINTS.items():
        arguments = set(inspect.signature(fn).parameters)
        rows = {arg for e, arg, *_ in ROWS if e == entry}
        assert arguments <= rows, f"{entry}: arguments with no row in ROWS: {sorted(arguments - rows)}"
        assert rows <= arguments, f"{entry}: rows for unknown arguments: {sorted(rows - arguments)}"


def test_every_kind_of_bad_value_is_tried():
    assert {kind for *_, kind in ROWS} == {TYPE, RANGE, SHAPE, NONE, ARITY}


def test_the_spy_sees_a_compile(no_work):
    jax.jit(lambda x: x * 3 + 1)(np.float32(2))
    assert no_work
