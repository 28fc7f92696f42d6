"""Decode throughput over device meshes, and how it should scale on a real pod.

Part 1 measures TQ* decoding on 8 *virtual* CPU devices for meshes (1,1), (8,1) and (2,4). They
share the machine's cores, so this checks the overhead of sharding only, not speed-up. Part 2
applies the cost model of docs/design.md and the memory planner (`tqjax.decoding.memory`) to 7B and
70B Llamas (SFT, baseline and reward model, bfloat16, k=10, H=20, M=1) on H100 hosts (one, or two
with one global mesh) and on a TPU v5e-64 slice: a roofline estimate, not a measurement.

    .venv/bin/python benchmarks/scaling.py [--reps 2] [--skip-measure]
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

import tqjax  # noqa: E402
from tqjax.models import ModelConfig, init_model  # noqa: E402
from tqjax.decoding.memory import format_bytes, largest_batch, plan  # noqa: E402
from tqjax.parallel.rules import with_kv_replicas  # noqa: E402

MESHES = [(1, 1), (8, 1), (2, 4)]


def measure(reps: int) -> None:
    cfg = ModelConfig.llama(vocab_size=1024, d_model=128, n_layers=2, n_heads=8, n_kv_heads=4,
                            mlp_dim=512, max_positions=256, eos_token_id=2)
    params = tqjax.TQParams(sft=init_model(cfg, jax.random.key(0)), baseline=init_model(cfg, jax.random.key(1)),
                            reward=init_model(cfg.replace(kind="reward"), jax.random.key(2)))
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, 1024, 32).tolist() for _ in range(16)]
    config = tqjax.DecodeConfig(k=4, horizon=4, max_new_tokens=8, ignore_eos=True, seed=0)
    print(f"Part 1: 8 virtual CPU devices ({jax.devices()[0].device_kind}, {os.cpu_count()} cores shared), "
          f"Llama d=128 L=2 V=1024, 16 prompts x 32 tokens, TQ* k=4 H=4, 8 new tokens, best of {reps}")
    print(f"  {'mesh (data, model)':>20} {'tokens/s':>10} {'vs (1,1)':>9} {'same tokens':>12}")
    base, ref = None, None
    for shape in MESHES:
        mesh = tqjax.make_mesh(*shape, devices=jax.devices()[:shape[0] * shape[1]])
        out = tqjax.decode(params, prompts, config, mesh=mesh)        # compile
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            out = tqjax.decode(params, prompts, config, mesh=mesh)
            best = min(best, time.perf_counter() - t)
        rate = sum(len(t) for t in out.tokens) / best
        base, ref = base or rate, ref or out.tokens
        print(f"  {str(shape):>20} {rate:10.1f} {rate / base:8.2f}x {str(out.tokens == ref):>12}")


# ---- part 2: the cost model on real hardware -------------------------------------------------

PODS = {   # per chip: memory, dense bf16 FLOP/s, HBM bytes/s; interconnect bytes/s (one direction)
    # within a host (link) and between hosts (net, where a model axis wider than a host crosses it)
    "8xH100-80GB (NVLink)": dict(chips=8, host=8, memory=80e9, flops=989e12, hbm=3.35e12,
                                 link=450e9, net=450e9),
    "2 hosts x 8xH100 (IB)": dict(chips=16, host=8, memory=80e9, flops=989e12, hbm=3.35e12,
                                  link=450e9, net=50e9),
    "TPU v5e-64": dict(chips=64, host=4, memory=16e9, flops=197e12, hbm=819e9, link=200e9, net=200e9),
}
MODELS = {   # name -> (config, model axes to try on each pod)
    "7B": (ModelConfig.llama(vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, mlp_dim=11008,
                             max_positions=4096, eos_token_id=2), (1, 2, 4, 8)),
    "70B (GQA, 8 kv heads)": (ModelConfig.llama(vocab_size=32000, d_model=8192, n_layers=80, n_heads=64,
                                                n_kv_heads=8, mlp_dim=28672, max_positions=4096,
                                                eos_token_id=2), (8, 16, 32, 64)),
}


def iteration_time(configs, roles, rows, prompts, slots, suffix, model, hw, tokens=1, nbytes=2):
    """Seconds per device for ``tokens`` tokens of each of ``rows`` rows (per device) through
    ``roles`` in one pass (weights read once); the rows share the committed caches of
    ``prompts`` rows (``slots`` long, read once) and each has a private suffix of ``suffix`` slots.
    Kv heads are counted as replicated where the model axis is wider than their count."""
    flops = bytes_ = comm = 0.0
    for role in roles:
        c = configs[role]
        weights = plan({"sft": c}, tqjax.DecodeConfig(method="sft"), 1, 1, (1, model), dtype="bfloat16").params["sft"]
        kv_heads = with_kv_replicas(c, model).n_kv_heads // model
        kv = c.n_layers * 2 * kv_heads * c.head_dim * nbytes
        flops += rows * tokens * (2 * weights / nbytes + 4 * c.n_layers * (c.n_heads // model) * c.head_dim
                                  * (slots + suffix))
        bytes_ += weights + prompts * kv * slots + rows * kv * suffix
        if model > 1:    # two all-reduces of the rows' activations per layer (ring: 2x the data)
            comm += c.n_layers * 2 * 2 * rows * tokens * c.d_model * nbytes * (model - 1) / model
    link = hw["link"] if model <= hw["host"] else hw["net"]
    times = dict(compute=flops / hw["flops"], memory=bytes_ / hw["hbm"], network=comm / link)
    return max(times["compute"], times["memory"]) + times["network"], max(times, key=times.get)


def project() -> None:
    config = tqjax.DecodeConfig(k=10, horizon=20, rollouts=1, max_new_tokens=128)
    T, H = 256, config.horizon
    for size, (llama, axes) in MODELS.items():
        configs = {"sft": llama, "baseline": llama, "reward": llama.replace(kind="reward")}
        print(f"\nPart 2: cost model (docs/design.md) + memory planner, {size} Llama x3 (SFT, baseline, reward) "
              f"bf16, k={config.k}, H={H}, M=1, prompt {T}, {config.max_new_tokens} new tokens. A PROJECTION, "
              f"not a measurement.")
        print(f"  per committed token: k·M·H = {config.k * H} baseline proposals (one token each, H in a row), "
              f"one reward pass over k·M·(H+1) = {config.k * (H + 1)} tokens, 3 commits; roofline per device = "
              f"max(FLOPs/peak, bytes/HBM) + TP all-reduces (over the host link, or the network when the "
              f"model axis spans hosts: one global mesh)")
        print(f"  {'hardware':<24} {'mesh':>8} {'params/dev':>11} {'batch/group':>12} {'total/dev':>10} "
              f"{'ms/token':>9} {'tokens/s':>9} {'rollouts bound by':>17}")
        for name, hw in PODS.items():
            for model in axes:
                if model > hw["chips"] or (size == "7B" and model > hw["host"]):
                    continue
                data = hw["chips"] // model
                budget = int(0.9 * hw["memory"])
                one = plan(configs, config, 1, T, (1, model), dtype="bfloat16")
                if one.total > budget:
                    print(f"  {name:<24} {str((data, model)):>8}  does not fit (needs "
                          f"{format_bytes(one.total)} per chip at batch 1 > 90% of {hw['memory'] / 1e9:.0f} GB)")
                    continue
                b = min(largest_batch(configs, config, T, budget, (1, model), dtype="bfloat16"), 1024)
                p = plan(configs, config, b, T, (1, model), dtype="bfloat16")
                S = T + config.max_new_tokens // 2        # mean committed length over the response
                propose, bound = iteration_time(configs, ("baseline",), b * config.k, b, S, H // 2, model, hw)
                read, _ = iteration_time(configs, ("reward",), b * config.k, b, S, H // 2, model, hw, tokens=H + 1)
                commit, _ = iteration_time(configs, ("sft", "baseline", "reward"), b, b, S, 0, model, hw)
                per_token = H * propose + read + commit
                rate = data * b / per_token
                print(f"  {name:<24} {str((data, model)):>8} {format_bytes(sum(p.params.values())):>11} {b:>12} "
                      f"{format_bytes(p.total):>10} {1e3 * per_token:9.1f} {rate:9.0f} {bound:>17}")
    print("  batch/group: largest batch one data-parallel group fits in 90% of a chip (capped at 1024); "
          "tokens/s = data groups x batch / (time per committed token). Data parallelism scales "
          "tokens/s linearly (no communication); the model axis is for fitting the params and "
          "costs two all-reduces per layer per token. Rooflines are upper bounds: expect perhaps "
          "half of them in practice. 'rollouts bound by' is the baseline's proposal step.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--skip-measure", action="store_true", help="print only the projection")
    args = parser.parse_args()
    if not args.skip_measure:
        measure(args.reps)
    project()


if __name__ == "__main__":
    main()
