"""Model configuration: one frozen, hashable dataclass for every supported architecture."""

from __future__ import annotations

import dataclasses
from typing import Literal

ARCHS = ("gpt2", "llama", "neox")
KINDS = ("lm", "reward")
ACTIVATIONS = ("gelu", "gelu_new", "silu", "relu")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tuples(value):
    """Lists (as JSON gives them) as tuples, nested: the config must stay hashable."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def stop_set(name: str, ids) -> tuple[int, ...]:
    """``None`` / an int / a list of ints as a sorted tuple of distinct ids (HF writes all three)."""
    if ids is None:
        return ()
    if _is_int(ids):
        return (ids,)
    if isinstance(ids, (list, tuple)) and all(_is_int(i) for i in ids):
        return tuple(sorted(set(ids)))
    raise TypeError(f"{name} must be an int, a list of ints or None, got {ids!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Static description of a decoder. Passed to jitted code as a static argument.

    ``arch`` picks the block layout: ``gpt2`` (learned positions, LayerNorm, GELU MLP),
    ``llama`` (RoPE, RMSNorm, gated SiLU MLP; also Mistral and Qwen2), ``neox`` (GPT-NeoX /
    Pythia: partial RoPE, LayerNorm, parallel or sequential residual).

    ``eos_token_id`` is the stop set: every id in it ends a committed row and a rollout (from a
    Hugging Face folder, ``generation_config.json``'s ``eos_token_id`` when there is one, else
    ``config.json``'s). ``pad_token_id`` matters to a reward model: like transformers'
    ``*ForSequenceClassification`` it reads a sequence's score at its rightmost token that is not
    ``pad_token_id`` (at the last token when it is None).
    """

    arch: Literal["gpt2", "llama", "neox"]
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    mlp_dim: int
    max_positions: int
    kind: Literal["lm", "reward"] = "lm"
    norm_eps: float = 1e-5
    activation: str = "silu"
    rope_theta: float = 10000.0
    rope_fraction: float = 1.0          # share of head_dim that is rotated (NeoX partial rotary)
    rope_scaling: tuple = ()            # () | ("linear", factor) | ("llama3", factor, low, high, orig)
    #                                     | ("longrope", short_factors, long_factors, orig, attention_factor)
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    parallel_residual: bool = False
    tie_embeddings: bool = False
    # Qwen3 / Gemma / Phi-3 (arch "llama"; every default is what Llama does)
    qk_norm: bool = False               # RMSNorm over head_dim of q and k, before RoPE (Qwen3, Gemma 3)
    norm_offset: float = 0.0            # RMSNorm multiplies by (norm_offset + w): Gemma's (1 + w) is 1.0
    embed_scale: bool = False           # embeddings times sqrt(d_model), in the weights' dtype (Gemma)
    sandwich_norms: bool = False        # Gemma 2/3: norms after attention, before and after the MLP
    attn_scale: float | None = None     # score scale; None is head_dim ** -0.5 (Gemma: query_pre_attn_scalar ** -0.5)
    attn_softcap: float | None = None   # scores -> cap * tanh(scores / cap) before the mask (Gemma 2)
    final_softcap: float | None = None  # logits -> cap * tanh(logits / cap) (Gemma 2/3 causal LMs)
    sliding_window: int | None = None   # a windowed layer's query at p reads keys at p - window < q <= p
    layer_types: tuple[str, ...] = ()   # per layer "full" or "sliding"; () is every layer full
    rope_local_theta: float | None = None  # RoPE base of the sliding layers, unscaled (Gemma 3); None: as full
    bos_token_id: int | None = None
    eos_token_id: tuple[int, ...] = ()  # the stop set; an int or a list is normalised to a tuple
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; expected one of {ARCHS}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; expected one of {KINDS}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; expected one of {ACTIVATIONS}")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim",
                     "mlp_dim", "max_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        rotary = self.rotary_dim
        if self.arch != "gpt2" and (rotary < 2 or rotary % 2):
            raise ValueError(f"rotary dims {rotary} (head_dim {self.head_dim} x {self.rope_fraction}) must be even and >= 2")
        if self.rope_scaling and self.rope_scaling[0] not in ("linear", "llama3", "longrope"):
            raise ValueError(f"unsupported rope scaling {self.rope_scaling[0]!r}")
        object.__setattr__(self, "rope_scaling", _tuples(self.rope_scaling))   # JSON gives lists
        object.__setattr__(self, "layer_types", tuple(self.layer_types))
        if self.layer_types and (len(self.layer_types) != self.n_layers
                                 or not set(self.layer_types) <= {"full", "sliding"}):
            raise ValueError(f"layer_types must give 'full' or 'sliding' for each of the {self.n_layers} layers, "
                             f"got {self.layer_types!r}")
        if self.sliding_window is not None and (not _is_int(self.sliding_window) or self.sliding_window < 1):
            raise ValueError(f"sliding_window must be a positive int or None, got {self.sliding_window!r}")
        if "sliding" in self.layer_types and self.sliding_window is None:
            raise ValueError("layer_types has sliding layers but sliding_window is None")
        object.__setattr__(self, "eos_token_id", stop_set("eos_token_id", self.eos_token_id))
        for name in ("bos_token_id", "pad_token_id"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or not 0 <= value < self.vocab_size):
                raise ValueError(f"{name}={value!r} is not a token id of the vocabulary of size {self.vocab_size}")
        outside = [i for i in self.eos_token_id if not 0 <= i < self.vocab_size]
        if outside:
            raise ValueError(f"eos_token_id {outside} is outside the vocabulary of size {self.vocab_size}")

    @property
    def windows(self) -> tuple[int | None, ...]:
        """Each layer's attention window (None: full attention). Without ``layer_types`` every layer
        is windowed by ``sliding_window`` (Mistral, Phi-3), or none is."""
        types = self.layer_types or ("sliding",) * self.n_layers
        return tuple(self.sliding_window if t == "sliding" else None for t in types)

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.rope_fraction)

    @property
    def groups(self) -> int:
        return self.n_heads // self.n_kv_heads

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def gpt2(cls, vocab_size=50257, d_model=768, n_layers=12, n_heads=12, max_positions=1024, mlp_dim=None, **kw):
        kw.setdefault("activation", "gelu_new")
        kw.setdefault("tie_embeddings", True)
        return cls(arch="gpt2", vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                   n_heads=n_heads, n_kv_heads=n_heads, head_dim=d_model // n_heads,
                   mlp_dim=mlp_dim or 4 * d_model, max_positions=max_positions,
                   qkv_bias=True, out_bias=True, mlp_bias=True, **kw)

    @classmethod
    def llama(cls, vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=None,
              mlp_dim=11008, max_positions=4096, **kw):
        kw.setdefault("head_dim", d_model // n_heads)
        return cls(arch="llama", vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                   n_heads=n_heads, n_kv_heads=n_kv_heads or n_heads, mlp_dim=mlp_dim,
                   max_positions=max_positions, activation=kw.pop("activation", "silu"),
                   norm_eps=kw.pop("norm_eps", 1e-6), **kw)

    @classmethod
    def neox(cls, vocab_size=50304, d_model=512, n_layers=6, n_heads=8, max_positions=2048, mlp_dim=None, **kw):
        kw.setdefault("rope_fraction", 0.25)
        kw.setdefault("parallel_residual", True)
        kw.setdefault("activation", "gelu")
        return cls(arch="neox", vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                   n_heads=n_heads, n_kv_heads=n_heads, head_dim=d_model // n_heads,
                   mlp_dim=mlp_dim or 4 * d_model, max_positions=max_positions,
                   qkv_bias=True, out_bias=True, mlp_bias=True, **kw)

    @classmethod
    def tiny(cls, arch="llama", kind="lm", vocab_size=61, **kw):
        """The test-suite size: vocab 61, width 32, 2 layers, GQA 4 -> 2 heads (llama)."""
        args = dict(vocab_size=vocab_size, d_model=32, n_layers=2, n_heads=4, max_positions=128,
                    kind=kind, eos_token_id=2, pad_token_id=0)
        args.update(kw)
        if arch == "gpt2":
            return cls.gpt2(**args)
        if arch == "neox":
            return cls.neox(**args)
        if arch == "llama":
            args.setdefault("n_kv_heads", 2)
            args.setdefault("mlp_dim", 64)
            return cls.llama(**args)
        raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")
