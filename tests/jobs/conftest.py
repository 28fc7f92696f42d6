"""Tiny random models on disk, a prompt file, and `tqjax batch` run as a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import tqjax
from tqjax.models import ModelConfig, init_model

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = 24
DECODE_FLAGS = ("--k", "2", "--horizon", "2", "--max-new-tokens", "4")


def write_job_files(root, lm=ModelConfig.tiny("llama")):
    """Folders of an SFT, baseline and reward model of config ``lm``, and a 24-prompt JSONL file."""
    for seed, (role, config) in enumerate((("sft", lm), ("baseline", lm),
                                           ("reward", lm.replace(kind="reward")))):
        tqjax.save(init_model(config, jax.random.key(seed)), str(root / role))
    rng = np.random.default_rng(0)
    with open(root / "prompts.jsonl", "w") as f:
        for i in range(PROMPTS):
            ids = rng.integers(3, 61, size=int(rng.integers(2, 7))).tolist()
            f.write(json.dumps({"id": f"p{i}", "prompt_ids": ids}) + "\n")
    return root


@pytest.fixture(scope="session")
def job_files(tmp_path_factory):
    """Folders of a tiny SFT, baseline and reward model, and a 24-prompt JSONL file."""
    return write_job_files(tmp_path_factory.mktemp("batch_job"))


def batch_args(files, output, *extra):
    return ["batch", "--sft", str(files / "sft"), "--baseline", str(files / "baseline"),
            "--reward", str(files / "reward"), "--input", str(files / "prompts.jsonl"),
            "--output", str(output), *DECODE_FLAGS, *extra]


def subprocess_env(devices=1, multiprocess=False):
    """The environment of a `tqjax batch` subprocess. Processes of a multi-process job (gloo CPU
    collectives) keep their compiled programs apart from the test process's: an executable cached
    by a differently configured CPU client must never be read by another one."""
    env = dict(os.environ)
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_COMPILATION_CACHE_DIR"):
        env.pop(name, None)
    compile_flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env.update(XLA_FLAGS=" ".join(compile_flags + [f"--xla_force_host_platform_device_count={devices}"]),
               JAX_PLATFORMS="cpu",
               TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
    if os.environ.get("TQJAX_TEST_CACHE") == "1":       # opt-in, as in tests/conftest.py
        cache = ROOT / (".jax_cache_multiprocess" if multiprocess else ".jax_cache")
        env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1.0")
    return env


def start_batch(files, output, *extra, log, devices=1):
    """`python -m tqjax.cli.main batch ...` in the background, stdout and stderr to ``log``, on
    ``devices`` virtual CPU devices."""
    return subprocess.Popen([sys.executable, "-m", "tqjax.cli.main", *batch_args(files, output, *extra)],
                            cwd=ROOT, env=subprocess_env(devices, "--coordinator" in extra),
                            stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)


def finish(proc, log, timeout=180):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    text = Path(log).read_text()
    assert proc.returncode == 0, f"tqjax batch exited with {proc.returncode}:\n{text[-3000:]}"
    return text


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reference_run(files, tmp_path_factory) -> dict:
    """Results of one uninterrupted single-process, single-device run, by id."""
    out = tmp_path_factory.mktemp("reference") / "out"
    log = out.parent / "log.txt"
    finish(start_batch(files, out, "--batch-size", "4", log=log), log)
    from tqjax.jobs import read_results
    results = read_results(str(out))
    assert len(results) == PROMPTS
    return {r["id"]: r for r in results}


@pytest.fixture(scope="session")
def reference(job_files, tmp_path_factory):
    return reference_run(job_files, tmp_path_factory)
