"""TQ* decoding throughput on a random Llama model (not a test; prints its figures).

TQ* with k=10, H=20, M=1, 32 new tokens (ignore_eos), prompts of 128 tokens, batches of 1, 4 and
16 prompts, on a random Llama (d=256, 4 layers, vocab 1024). Prints generated tokens/s, rollout
token-forwards/s, the necessary model FLOPs (docs/design.md) per second as a % of this machine's matmul
peak measured in the same run, compile seconds, and compiled memory at k = 1, 10 and 32.

    python benchmarks/decode.py [--batches 1 4 16] [--new 32]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from tqjax.api.decode import TQParams, prepare
from tqjax.decoding import DecodeConfig, Knobs, engine, plan_for
from tqjax.models import ModelConfig, init_model


def matmul_peak(n=1024, reps=20) -> float:
    """float32 matmul FLOP/s of this machine (best of a few timed runs)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)

    @jax.jit
    def chain(a):
        return jax.lax.fori_loop(0, reps, lambda i, x: (x @ a) * 1e-3, a)

    chain(a).block_until_ready()
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        chain(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 * reps / best


def forward_flops(cfg: ModelConfig, context: float) -> float:
    """FLOPs of one token-forward: weight matmuls plus attention over ``context`` keys."""
    D, F, L = cfg.d_model, cfg.mlp_dim, cfg.n_layers
    attn_proj = D * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)
    mlp = (3 if cfg.arch == "llama" else 2) * D * F
    head = D * cfg.vocab_size if cfg.kind == "lm" else D
    scores = 2 * cfg.n_heads * cfg.head_dim * context
    return 2 * (L * (attn_proj + mlp + scores) + head)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=128)
    args = parser.parse_args()

    cfg = ModelConfig.llama(vocab_size=1024, d_model=256, n_layers=4, n_heads=4, n_kv_heads=4,
                            mlp_dim=1024, max_positions=256, eos_token_id=2)
    ks = jax.random.split(jax.random.key(0), 3)
    params = TQParams(init_model(cfg, ks[0]), init_model(cfg, ks[1]),
                      init_model(cfg.replace(kind="reward"), ks[2]))
    config = DecodeConfig(method="tq", k=10, horizon=20, rollouts=1, max_new_tokens=args.new,
                          ignore_eos=True)
    k, M, H, N, P = config.k, config.rollouts, config.horizon, config.max_new_tokens, args.prompt
    peak = matmul_peak()
    print(f"devices: {jax.devices()}  matmul peak (f32, measured): {peak / 1e9:.1f} GFLOP/s")
    print(f"TQ*: k={k} H={H} M={M}, {N} new tokens, prompts of {P} tokens, Llama d=256 L=4 V=1024")
    rng = np.random.default_rng(0)

    def compiled(B, config):
        prompts = rng.integers(3, cfg.vocab_size, size=(B, P)).tolist()
        arrays, _ = prepare(params, prompts, config)
        lowered = engine.decode_arrays.lower(params, arrays["tokens_BT"], arrays["start_B"],
                                             arrays["keys_B"], arrays["live_B"],
                                             Knobs.from_config(config), plan=plan_for(params, config))
        return lowered.compile(), arrays

    for B in args.batches:
        t = time.perf_counter()
        program, arrays = compiled(B, config)
        compile_s = time.perf_counter() - t
        run = lambda: jax.block_until_ready(program(params, arrays["tokens_BT"], arrays["start_B"],
                                                    arrays["keys_B"], arrays["live_B"],
                                                    Knobs.from_config(config)))
        run()
        t = time.perf_counter()
        run()
        seconds = time.perf_counter() - t
        ctx = P + N / 2 + H / 2                           # mean context of a rollout token
        per_token = (k * M * H * forward_flops(cfg, ctx)                       # baseline rollouts
                     + k * M * (H + 1) * forward_flops(cfg.replace(kind="reward"), ctx)
                     + 2 * forward_flops(cfg, P + N / 2)                        # sft, baseline commit
                     + forward_flops(cfg.replace(kind="reward"), P + N / 2))
        flops = B * N * per_token
        rollout_forwards = B * N * k * M * (2 * H + 1)
        print(f"batch {B:3d}: {B * N / seconds:8.1f} tokens/s  "
              f"{rollout_forwards / seconds:10.0f} rollout token-forwards/s  "
              f"{flops / seconds / 1e9:6.1f} GFLOP/s = {100 * flops / seconds / peak:5.1f}% of peak  "
              f"compile {compile_s:5.1f}s  run {seconds:6.2f}s")

    B = max(args.batches)
    for kk in (1, 10, 32):
        program, _ = compiled(B, config.replace(k=kk))
        mem = program.memory_analysis()
        print(f"compiled memory, batch {B}, k={kk:2d}: temp {mem.temp_size_in_bytes / 2**20:7.1f} MiB"
              f"  arguments {mem.argument_size_in_bytes / 2**20:6.1f} MiB")


if __name__ == "__main__":
    main()
