"""`DecodePlan` (roles, shapes, cost) and `Knobs`: every static decision made once."""

from __future__ import annotations

import dataclasses

import pytest

from tqjax.decoding import DecodeConfig, DecodePlan, Knobs
from tqjax.decoding.decode_plan import (HOST_FIELDS, KNOB_FIELDS, PLAN_FIELDS, ROLES, check_fields,
                                        matched_bon_n)

THREE = ROLES[:3]

# config -> (required, active, proposal, rollout, readers)
ROLE_TABLE = [
    (DecodeConfig(), ("sft", "baseline", "reward"), ("sft", "baseline", "reward"), "sft", "baseline",
     ("reward",)),
    (DecodeConfig(proposal="baseline"), ("sft", "baseline", "reward"), ("sft", "baseline", "reward"),
     "baseline", "baseline", ("reward",)),
    (DecodeConfig(method="cd"), ("sft", "reward"), ("sft", "reward"), "sft", "sft", ("reward",)),
    (DecodeConfig(method="args"), ("sft", "reward"), ("sft", "reward"), "sft", None, ("reward",)),
    (DecodeConfig(method="args", proposal="baseline"), ("sft", "baseline", "reward"),
     ("sft", "baseline", "reward"), "baseline", None, ("reward",)),
    (DecodeConfig(method="bon"), ("sft", "reward"), ("sft", "reward"), "sft", None, ()),
    (DecodeConfig(method="bon", proposal="baseline"), ("sft", "baseline", "reward"),
     ("sft", "baseline", "reward"), "baseline", None, ()),
    (DecodeConfig(method="sft"), ("sft",), ("sft", "reward"), "sft", None, ()),
    (DecodeConfig(method="baseline"), ("sft", "baseline"), ("sft", "baseline", "reward"), "baseline",
     None, ()),
    (DecodeConfig(transfer="indirect"), ("sft", "baseline", "reward"), ("sft", "baseline", "reward"),
     "sft", "baseline", ("reward", "sft")),
]


@pytest.mark.parametrize("config, required, active, proposal, rollout, readers", ROLE_TABLE)
def test_roles(config, required, active, proposal, rollout, readers):
    plan = DecodePlan.build(config, THREE, stop_ids=(7, 2))
    assert (plan.required, plan.active, plan.proposal, plan.rollout, plan.readers) == (
        required, active, proposal, rollout, readers)
    assert plan.stop_ids == (2, 7)
    hash(plan)


def test_indirect_with_a_baseline_reward_model_reads_it():
    plan = DecodePlan.build(DecodeConfig(transfer="indirect", rollouts=4), ROLES)
    assert plan.readers == ("reward", "baseline_reward") and not plan.implicit_rbl
    assert plan.active == ROLES
    assert "baseline_reward" not in DecodePlan.build(DecodeConfig(), ROLES).active


@pytest.mark.parametrize("config, forwards", [
    # tq: ρ_BL proposes z..τ_{H-1} (k·M·H), the reward model reads z..τ_H (k·M·(H+1)), 1 commit each
    (DecodeConfig(k=10, horizon=20), dict(sft=1, baseline=201, reward=211)),
    (DecodeConfig(method="cd", k=4, horizon=3, rollouts=2), dict(sft=1 + 24, reward=1 + 32)),
    (DecodeConfig(method="args", k=5, horizon=9), dict(sft=1, reward=1 + 5)),
    (DecodeConfig(method="bon", n=6), dict(sft=6, reward=6)),
    (DecodeConfig(method="sft"), dict(sft=1, reward=1)),
    # implicit r_BL: π_sft reads the H rollout tokens of every rollout
    (DecodeConfig(transfer="indirect", k=2, horizon=3, rollouts=2), dict(sft=1 + 12, baseline=1 + 12,
                                                                        reward=1 + 16)),
])
def test_cost_counts_what_the_engine_runs(config, forwards):
    assert dict(DecodePlan.build(config, THREE).forwards) == forwards


def test_matched_best_of_n():
    # tq at the paper's setting: 3 + k·M·(2H+1) = 413 forwards per token; a best-of-N sample: 2
    assert matched_bon_n(DecodeConfig()) == 207
    assert matched_bon_n(DecodeConfig(method="cd", k=2, horizon=1)) == 4   # (1+2 + 1+4) / 2


@pytest.mark.parametrize("config, role", [
    (DecodeConfig(), "baseline"), (DecodeConfig(method="cd"), "reward"),
    (DecodeConfig(method="baseline"), "baseline"), (DecodeConfig(method="bon"), "reward")])
def test_missing_model_is_named(config, role):
    given = [r for r in THREE if r != role]
    with pytest.raises(ValueError, match=f"needs a {role} model, but TQParams.{role} is None"):
        DecodePlan.build(config, given)


def test_every_config_field_is_static_a_knob_or_host_side():
    names = {f.name for f in dataclasses.fields(DecodeConfig)}
    assert names == set(PLAN_FIELDS) | set(KNOB_FIELDS) | set(HOST_FIELDS)
    assert not set(PLAN_FIELDS) & set(KNOB_FIELDS)
    assert set(KNOB_FIELDS) == {f.name for f in dataclasses.fields(Knobs)}

    @dataclasses.dataclass(frozen=True)
    class Grown(DecodeConfig):
        new_field: int = 0

    with pytest.raises(TypeError, match=r"unclassified \['new_field'\]"):
        check_fields(Grown)


def test_knobs_do_not_change_the_plan_and_zero_temperatures_do():
    base = DecodeConfig(method="bon", temperature=0.7, top_p=0.9, rollout_temperature=0.5)
    swept = base.replace(alpha=3.0, beta=0.2, temperature=1.3, top_p=0.5, rollout_temperature=2.0,
                         seed=9)
    assert DecodePlan.build(base, THREE) == DecodePlan.build(swept, THREE)
    for change in (dict(temperature=0.0), dict(top_p=1.0), dict(n=5), dict(stop_token_ids=(3,))):
        assert DecodePlan.build(base.replace(**change), THREE) != DecodePlan.build(base, THREE)
    knobs = Knobs.from_config(swept)
    assert float(knobs.alpha) == 3.0 and float(knobs.top_p) == 0.5


def test_config_must_be_a_decode_config():
    with pytest.raises(TypeError, match="config must be a tqjax.DecodeConfig, got dict"):
        DecodePlan.build({"method": "tq"}, THREE)


@pytest.mark.parametrize("prompts, multiple, rows", [(1, 1, 1), (3, 1, 4), (5, 1, 8), (3, 8, 8),
                                                     (9, 4, 16), (5, 3, 9)])
def test_batch_bucket(prompts, multiple, rows):
    from tqjax.decoding.decode_plan import batch_bucket
    assert batch_bucket(prompts, multiple) == rows


@pytest.mark.parametrize("longest, room, slots", [(3, None, 8), (9, None, 16), (9, 12, 12),
                                                  (20, 12, 20), (16, 100, 16)])
def test_prompt_bucket(longest, room, slots):
    from tqjax.decoding.decode_plan import prompt_bucket
    assert prompt_bucket(longest, room) == slots


def test_unknown_role_is_named():
    with pytest.raises(ValueError, match=r"unknown model roles \['critic'\]"):
        DecodePlan.build(DecodeConfig(), THREE + ("critic",))
