"""`tqjax batch` on one mesh across two processes (4 CPU devices each): the same tokens as one
process on one device, and every prompt written exactly once, also after a kill."""

import os
import signal
import time

import pytest

from tests.jobs.conftest import PROMPTS, finish, free_port, reference_run, start_batch, write_job_files
from tqjax.jobs import batch
from tqjax.models import ModelConfig


@pytest.fixture(scope="module")
def wide_files(tmp_path_factory):
    """Like ``job_files``, with 8 query heads (2 kv heads) so that a model axis of 8 divides them."""
    return write_job_files(tmp_path_factory.mktemp("wide_job"),
                           ModelConfig.tiny("llama", n_heads=8, n_kv_heads=2))


@pytest.fixture(scope="module")
def wide_reference(wide_files, tmp_path_factory):
    return reference_run(wide_files, tmp_path_factory)


def _run_pair(job_files, out, tmp_path, mesh, *extra):
    flags = ["--batch-size", "4", "--mesh", mesh, "--coordinator", f"127.0.0.1:{free_port()}",
             "--num-processes", "2", *extra]
    procs = [start_batch(job_files, out, *flags, "--process-id", str(p), log=tmp_path / f"log{p}.txt",
                         devices=4) for p in (0, 1)]
    return procs


def _assert_same(results, reference):
    assert sorted(r["id"] for r in results) == sorted(reference)            # each prompt once
    for r in results:
        expected = reference[r["id"]]
        assert r["tokens"] == expected["tokens"], r["id"]
        assert abs(r["reward"] - expected["reward"]) < 1e-4


@pytest.mark.parametrize("mesh", ["2,4", "1,8"])
def test_one_mesh_across_two_processes_equals_one_device(wide_files, wide_reference, tmp_path, mesh):
    out = tmp_path / "out"
    procs = _run_pair(wide_files, out, tmp_path, mesh)
    logs = [finish(proc, tmp_path / f"log{p}.txt", timeout=300) for p, proc in enumerate(procs)]
    for p, text in enumerate(logs):
        assert f"process {p}/2: {PROMPTS // 2} prompts done, 0 skipped" in text
        # each process wrote exactly the prompts it owns
        assert {r["index"] % 2 for r in batch.read_part(batch.part_path(str(out), p))[0]} == {p}
    _assert_same(batch.read_results(str(out)), wide_reference)


def test_global_mesh_resumes_after_a_kill(job_files, reference, tmp_path):
    out = tmp_path / "out"
    part0 = batch.part_path(str(out), 0)
    procs = _run_pair(job_files, out, tmp_path, "2,4")
    deadline = time.monotonic() + 240
    while (not os.path.exists(part0) or os.path.getsize(part0) == 0) and time.monotonic() < deadline \
            and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    written = sum(len(batch.read_part(batch.part_path(str(out), p))[0])
                  for p in (0, 1) if os.path.exists(batch.part_path(str(out), p)))
    assert 0 < written < PROMPTS, f"killed with {written} of {PROMPTS} written"
    procs = _run_pair(job_files, out, tmp_path, "2,4")
    logs = [finish(proc, tmp_path / f"log{p}.txt", timeout=300) for p, proc in enumerate(procs)]
    assert sum(int(t.split(" prompts done, ")[1].split(" skipped")[0]) for t in logs) == written
    _assert_same(batch.read_results(str(out)), reference)
