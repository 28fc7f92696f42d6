"""`DecodePlan`: every static decision of a decode, made once from the config and the models given.

Which models a method needs and which keep a committed cache, which one proposes the candidates
(or is sampled), which one rolls out and which ones read the finished rollouts, the static shapes,
the stop set and the cost per committed token are all answered here and nowhere else: validation
(`tqjax.decode`), the loop, the TQ* step, best-of-N, the memory planner, ``tqjax eval``'s
compute-matched best-of-N and the CLI read them from the plan. The plan is frozen and hashable and
is the jit key of the engine; the numbers a user sweeps travel beside it as `Knobs` (traced).

Every `DecodeConfig` field is exactly one of: a static field of the plan (``PLAN_FIELDS``), a knob
(``KNOB_FIELDS``; the plan keeps only whether a temperature is zero and whether top-p filters), or
host-side (``HOST_FIELDS``: the seed, which makes the per-prompt keys). `check_fields` enforces it
at import, so a new config field cannot silently be neither.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import jax
import jax.numpy as jnp

from tqjax.decoding.config import DecodeConfig

ROLES = ("sft", "baseline", "reward", "baseline_reward")
ROLE_KINDS = dict(sft="lm", baseline="lm", reward="reward", baseline_reward="reward")
CANDIDATE_METHODS = ("tq", "cd", "args")      # score top-k candidates with a value estimate

PLAN_FIELDS = ("method", "k", "horizon", "rollouts", "transfer", "weights", "proposal", "select",
               "top_k", "n", "max_new_tokens", "stop_token_ids", "ignore_eos", "diagnostics",
               "candidate_chunk", "layers")
KNOB_FIELDS = ("alpha", "beta", "temperature", "rollout_temperature", "top_p")
HOST_FIELDS = ("seed",)
MIN_BUCKET = 8          # shortest prompt bucket


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def batch_bucket(prompts: int, multiple: int = 1) -> int:
    """Rows a batch of ``prompts`` is padded to: the next power of two, rounded up to a multiple
    of ``multiple`` (the mesh's data axis), so that new batch sizes reuse compiled programs."""
    return -(-_pow2(prompts) // multiple) * multiple


def prompt_bucket(longest: int, room: int | None = None) -> int:
    """Slots prompts are left-padded to: the next power of two (at least `MIN_BUCKET`), capped at
    ``room`` (the context left after the response and the rollout), never below ``longest``."""
    bucket = max(MIN_BUCKET, _pow2(longest))
    return max(longest, bucket if room is None else min(bucket, room))


def check_fields(config_type=DecodeConfig) -> None:
    """Every DecodeConfig field is static, a knob or host-side, and only one of them."""
    names = [f.name for f in dataclasses.fields(config_type)]
    groups = PLAN_FIELDS + KNOB_FIELDS + HOST_FIELDS
    missing = sorted(set(names) - set(groups))
    extra = sorted(set(groups) - set(names))
    twice = sorted({g for g in groups if groups.count(g) > 1})
    if missing or extra or twice:
        raise TypeError(f"DecodeConfig fields must each be a plan field, a knob or host-side: "
                        f"unclassified {missing}, unknown {extra}, twice {twice}")


check_fields()


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Knobs:
    """The traced numbers of a decode: changing them reuses the compiled program.

    A zero temperature is greedy decoding, a different program (`DecodePlan.greedy`); the knob
    then holds 1.0 and is never read.
    """

    alpha: jax.Array
    beta: jax.Array
    temperature: jax.Array
    rollout_temperature: jax.Array
    top_p: jax.Array

    @classmethod
    def from_config(cls, config: DecodeConfig) -> "Knobs":
        f32 = lambda x: jnp.asarray(x, jnp.float32)
        return cls(alpha=f32(config.alpha), beta=f32(config.beta),
                   temperature=f32(config.temperature or 1.0),
                   rollout_temperature=f32(config.rollout_temperature or 1.0), top_p=f32(config.top_p))


@dataclasses.dataclass(frozen=True)
class DecodePlan:
    """The static description of a decode (the engine's jit key). Build it with `DecodePlan.build`."""

    # roles
    method: str
    given: tuple[str, ...]        # models given (`ROLES` order)
    required: tuple[str, ...]     # models the method needs
    active: tuple[str, ...]       # models that keep a committed cache (and are appended to)
    proposal: str                 # top-k and prior (candidate methods), or the sampled model
    rollout: str | None           # the model that proposes rollout tokens, one at a time
    readers: tuple[str, ...]      # models that read each finished rollout in one pass
    text_roles: tuple[str, ...]   # given readers with a tokenizer of their own: they read text
    # static shapes and switches
    k: int                        # candidates (0: not a candidate method)
    horizon: int                  # H as run (0 for ARGS)
    rollouts: int                 # M as run (1 for ARGS)
    n: int                        # best-of-N samples (1 otherwise)
    max_new_tokens: int
    candidate_chunk: int
    top_k: int
    transfer: str
    weights: str
    select: str
    greedy: bool                  # plain decoding / best-of-N samples at temperature 0
    greedy_rollouts: bool
    nucleus: bool                 # top_p < 1 filters
    ignore_eos: bool
    diagnostics: bool
    stop_ids: tuple[int, ...]     # every id that ends a committed row or a rollout
    layers: str                   # "auto", "scan" or "unroll" (`DecodeConfig.layers`)
    # cost: model token-forwards per committed token (per prompt), by role
    forwards: tuple[tuple[str, int], ...]

    @property
    def candidates(self) -> bool:
        return self.k > 0

    @property
    def indirect(self) -> bool:
        return self.transfer == "indirect"

    @property
    def implicit_rbl(self) -> bool:
        """Indirect transfer with r_BL = β·(log ρ_BL − log π_sft): π_sft reads the rollouts."""
        return self.indirect and "baseline_reward" not in self.readers

    @property
    def lms(self) -> tuple[str, ...]:
        """The language models that keep a committed cache (π_sft, and ρ_BL where it runs)."""
        return tuple(r for r in self.active if ROLE_KINDS[r] == "lm")

    @property
    def reward_models(self) -> tuple[str, ...]:
        """The active reward models (r, and r_BL for indirect transfer when given)."""
        return tuple(r for r in self.active if ROLE_KINDS[r] == "reward")

    @property
    def id_roles(self) -> tuple[str, ...]:
        """The given models that read the SFT model's ids (all but the text readers): one
        vocabulary."""
        return tuple(r for r in self.given if r not in self.text_roles)

    @property
    def text_readers(self) -> tuple[str, ...]:
        """The readers the decode runs (``active``) that read text (`tqjax.decoding.cross`)."""
        return tuple(r for r in self.active if r in self.text_roles)

    @property
    def total_forwards(self) -> int:
        return sum(n for _, n in self.forwards)

    @classmethod
    def build(cls, config: DecodeConfig, given: Iterable[str], stop_ids: Iterable[int] = (),
              text: Iterable[str] = ()):
        """The plan for ``config`` with the models of the roles in ``given``.

        ``stop_ids``: the stop sets of the models that decode or roll out (`decoding_roles`);
        ``config.stop_token_ids`` are added. ``text``: the given readers that read text
        (`plan_for` asks `tqjax.decoding.text_reader.reads_text`). Raises ValueError if a needed model is missing.
        """
        if not isinstance(config, DecodeConfig):
            raise TypeError(f"config must be a tqjax.DecodeConfig, got {type(config).__name__}")
        unknown = sorted(set(given) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown model roles {unknown}; expected some of {ROLES}")
        given = tuple(r for r in ROLES if r in set(given))
        method, candidates = config.method, config.method in CANDIDATE_METHODS
        proposal = "baseline" if method == "baseline" or (
            method != "sft" and config.proposal == "baseline") else "sft"
        rollout = {"tq": "baseline", "cd": "sft"}.get(method)
        required = cls.decoding_roles(config)
        if candidates or method == "bon":
            required += ("reward",)
        if config.transfer == "indirect" and "baseline" not in given:
            raise ValueError("transfer='indirect' needs a baseline model (rollouts and, without a "
                             "baseline_reward model, the implicit reward β·(log ρ_BL − log π_sft))")
        for role in required:
            if role not in given:
                raise ValueError(f"method={method!r} (proposal={config.proposal!r}) needs a {role} "
                                 f"model, but TQParams.{role} is None")
        indirect_model = config.transfer == "indirect" and "baseline_reward" in given
        active = tuple(r for r in ROLES if r in required
                       or (r == "reward" and r in given)
                       or (r == "baseline_reward" and indirect_model))
        readers = ()
        if candidates:
            readers = ("reward",)
            if config.transfer == "indirect":
                readers += ("baseline_reward",) if indirect_model else ("sft",)
        H = config.horizon if method in ("tq", "cd") else 0        # ARGS: H = 0, M = 1
        M = (config.rollouts if method in ("tq", "cd") else 1) if candidates else 0
        k = config.k if candidates else 0
        n = config.n if method == "bon" else 1
        forwards = {r: n for r in active}                    # one commit per row (N rows for bon)
        if rollout is not None:
            forwards[rollout] += k * M * H                   # z, τ_1..τ_{H-1}, one at a time
        for r in readers:                                    # z, τ_1..τ_H (π_sft: H positions)
            forwards[r] += k * M * (H if r == "sft" else H + 1)
        return cls(
            method=method, given=given, required=required, active=active, proposal=proposal, rollout=rollout,
            readers=readers, text_roles=tuple(r for r in given if r in set(text)), k=k, horizon=H, rollouts=max(M, 1), n=n,
            max_new_tokens=config.max_new_tokens, candidate_chunk=config.candidate_chunk,
            top_k=config.top_k, transfer=config.transfer, weights=config.weights,
            select=config.select, greedy=config.temperature == 0,
            greedy_rollouts=config.rollout_temperature == 0, nucleus=config.top_p < 1,
            ignore_eos=config.ignore_eos, diagnostics=config.diagnostics,
            stop_ids=tuple(sorted(set(stop_ids) | set(config.stop_token_ids))), layers=config.layers,
            forwards=tuple(forwards.items()))

    @classmethod
    def nominal(cls, config: DecodeConfig, baseline_reward: bool = False) -> "DecodePlan":
        """The plan of ``config`` given every model it can use (π_sft, ρ_BL, r, and r_BL with
        ``baseline_reward``), all reading ids: what a method costs before any model is loaded."""
        return cls.build(config, ROLES if baseline_reward else ROLES[:3])

    @staticmethod
    def decoding_roles(config: DecodeConfig) -> tuple[str, ...]:
        """The language models a decode runs (π_sft, and ρ_BL where it proposes, is sampled or
        rolls out); their stop sets end rows and rollouts."""
        uses_baseline = config.method in ("tq", "baseline") or (
            config.method != "sft" and config.proposal == "baseline")
        return ("sft", "baseline") if uses_baseline else ("sft",)


def plan_for(params, config: DecodeConfig) -> DecodePlan:
    """The plan of ``params`` (a `TQParams`, or a mapping role -> model) under ``config``: the
    stop sets of the models that decode, and which given readers read text (a tokenizer of their
    own, `tqjax.decoding.text_reader.reads_text`)."""
    from tqjax.decoding.text_reader import reads_text

    models = params if isinstance(params, dict) else {r: getattr(params, r) for r in ROLES}
    given = {r: m for r, m in models.items() if m is not None}
    stops = set()
    for role in DecodePlan.decoding_roles(config):
        if role in given:
            stops |= set(given[role].stop_token_ids)
    text = tuple(r for r in ROLES if ROLE_KINDS[r] == "reward" and r in given and "sft" in given
                 and reads_text(given["sft"], given[r], r))
    return DecodePlan.build(config, given, stops, text)


def matched_bon_n(config: DecodeConfig, plan: DecodePlan | None = None) -> int:
    """Best-of-N's N that spends about the model token-forwards per committed token of ``config``.

    A best-of-N sample costs one forward per token of each model it runs (π_sft or ρ_BL, the
    reward model, and π_sft for the KL when ρ_BL samples): N = round(total / per sample).
    """
    plan = plan or DecodePlan.nominal(config)
    bon = DecodePlan.nominal(DecodeConfig(method="bon", n=1, proposal=config.proposal))
    return max(1, int(plan.total_forwards / bon.total_forwards + 0.5))


def sampling_plan(params, config: DecodeConfig, plan: DecodePlan):
    """``(params, plan)`` of the fused decode that samples the responses of ``plan``'s plain
    method or best-of-N when its reader reads text (`tqjax.decoding.cross.plain`): the proposal's
    own method with no reader, the reader scoring the responses' text afterwards."""
    method = plan.proposal if plan.method == "bon" else plan.method
    fused = dataclasses.replace(params, reward=None, baseline_reward=None)
    return fused, plan_for(fused, dataclasses.replace(config, method=method))
