"""`tqjax batch`: resume after kill -9 without loss or duplicates, 2 processes equal 1, bad inputs."""

import json
import os
import random
import re
import signal
import time
import types

import numpy as np
import pytest

from tests.jobs.conftest import PROMPTS, batch_args, finish, free_port, start_batch
from tqjax.cli.main import main
from tqjax.decoding import DecodeConfig
from tqjax.decoding.text_reader import ReaderContextError
from tqjax.io.prompts import PromptRecord
from tqjax.jobs import batch


def _assert_same(results, reference):
    ids = [r["id"] for r in results]
    assert sorted(ids) == sorted(reference), "every prompt id exactly once"
    for r in results:
        ref = reference[r["id"]]
        assert r["tokens"] == ref["tokens"], r["id"]
        assert r["index"] == ref["index"]
        np.testing.assert_allclose([r["reward"], r["kl"], r["logp_sft"]],
                                   [ref["reward"], ref["kl"], ref["logp_sft"]], rtol=1e-4, atol=1e-5)


def _lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


# ---- part files and the run loop, without JAX ---------------------------------------------------

def _write(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)


def test_torn_last_line_is_cut_and_corruption_refused(tmp_path):
    path = str(tmp_path / "part-00000.jsonl")
    good = b"".join(json.dumps({"id": i, "tokens": [i]}).encode() + b"\n" for i in range(3))
    _write(path, good + b'{"id": 3, "tok')
    records, size = batch.read_part(path)
    assert [r["id"] for r in records] == [0, 1, 2] and size == len(good)
    assert batch.repair(path) == len(b'{"id": 3, "tok')
    assert open(path, "rb").read() == good
    assert batch.repair(path) == 0

    _write(path, good + b'{"id": 3}')              # parses, but no newline: not known to be whole
    assert [r["id"] for r in batch.read_part(path)[0]] == [0, 1, 2]
    batch.repair(path)
    assert open(path, "rb").read() == good

    _write(path, good + b"\0\0\0\n\0\0")           # unsynced garbage after a crash
    batch.repair(path)
    assert open(path, "rb").read() == good

    _write(path, good + b"not json\n" + good)
    with pytest.raises(ValueError, match="corrupt"):
        batch.read_part(path)


def _fake_decode(fail_after=None):
    calls = []

    def decode_fn(values, indices):
        if fail_after is not None and len(calls) == fail_after:
            raise KeyboardInterrupt
        calls.append(list(indices))
        n = len(values)
        return types.SimpleNamespace(tokens=[[i % 61, 7] for i in indices], texts=None,
                                     rewards=np.asarray(indices, float), kl=np.zeros(n),
                                     logp_sft=np.zeros(n), log_ratio=np.zeros(n))
    decode_fn.calls = calls
    return decode_fn


def test_run_resumes_and_splits_over_processes(tmp_path):
    records = [PromptRecord(f"q{i}", prompt_ids=(3, 4)) for i in range(11)]
    out = str(tmp_path / "out")
    os.makedirs(out)
    with pytest.raises(KeyboardInterrupt):
        batch.run(records, _fake_decode(fail_after=2), out, batch_size=3)
    assert _lines(batch.part_path(out, 0)) == 6
    with open(batch.part_path(out, 0), "ab") as f:     # a torn write of the third batch
        f.write(b'{"id": "q6", "ind')

    # resumed with 2 processes: each skips what the first run finished, in any part
    fakes = {p: _fake_decode() for p in (0, 1)}
    summaries = [batch.run(records, fakes[p], out, batch_size=2, num_processes=2, process_id=p)
                 for p in (1, 0)]
    assert [s.skipped for s in summaries] == [3, 3] and [s.done for s in summaries] == [2, 3]
    assert fakes[0].calls == [[6, 8], [10]] and fakes[1].calls == [[7, 9]]
    results = batch.read_results(out)
    assert [r["id"] for r in results] == [r.id for r in records]
    assert [r["tokens"] for r in results] == [[i % 61, 7] for i in range(11)]
    assert {r["index"] % 2 for r in batch.read_part(batch.part_path(out, 1))[0]} == {1}

    fake = _fake_decode()
    again = batch.run(records, fake, out, batch_size=4)
    assert (again.done, again.skipped, fake.calls) == (0, 11, [])
    assert "0 prompts done, 11 skipped" in str(again)


def _fake_continuous(fail_after=None):
    """A continuous decode: finishes prompts out of order (by a fixed shuffle), calling on_done."""
    calls = []

    def decode_fn(values, indices, on_done, on_error=None):
        calls.append(list(indices))
        order = sorted(range(len(values)), key=lambda b: (indices[b] * 7) % 5)
        for done, b in enumerate(order):
            if fail_after is not None and done == fail_after:
                raise KeyboardInterrupt
            i = indices[b]
            on_done(b, types.SimpleNamespace(tokens=[[i % 61, 7]], texts=None,
                                             rewards=np.asarray([i], float), kl=np.zeros(1),
                                             logp_sft=np.zeros(1), log_ratio=np.zeros(1)))
    decode_fn.calls = calls
    return decode_fn


def test_continuous_run_writes_each_prompt_as_it_finishes_and_resumes(tmp_path):
    records = [PromptRecord(f"q{i}", prompt_ids=(3, 4)) for i in range(11)]
    out = str(tmp_path / "out")
    os.makedirs(out)
    with pytest.raises(KeyboardInterrupt):
        batch.run(records, _fake_continuous(fail_after=4), out, batch_size=3, continuous=True)
    first = [r["id"] for r in batch.read_part(batch.part_path(out, 0))[0]]
    assert len(first) == 4 and len(set(first)) == 4
    with open(batch.part_path(out, 0), "ab") as f:     # a torn write
        f.write(b'{"id": "q9", "ind')
    fake = _fake_continuous()
    summary = batch.run(records, fake, out, batch_size=3, continuous=True)
    assert (summary.done, summary.skipped) == (7, 4)
    assert sorted(fake.calls[0]) == sorted(int(i[1:]) for i in {r.id for r in records} - set(first))
    results = batch.read_results(out)
    assert [r["id"] for r in results] == [r.id for r in records]
    assert [r["tokens"] for r in results] == [[i % 61, 7] for i in range(11)]


def test_a_prompt_that_fails_alone_gets_an_error_line_once(tmp_path):
    """``on_error(b, error)``: that prompt's line is an error record, the others are results; a
    rerun counts it as done (nothing redone, nothing repeated) and still reports it as failed."""
    records = [PromptRecord(f"q{i}", prompt_ids=(3, 4)) for i in range(5)]
    out = str(tmp_path / "out")
    os.makedirs(out)

    def decode_fn(values, indices, on_done, on_error):
        for b, i in enumerate(indices):
            if i == 3:
                on_error(b, ReaderContextError(b, "reward", 30, 24))
            else:
                on_done(b, types.SimpleNamespace(tokens=[[i, 7]], texts=None, rewards=None,
                                                 kl=np.zeros(1), logp_sft=np.zeros(1),
                                                 log_ratio=np.zeros(1)))

    summary = batch.run(records, decode_fn, out, batch_size=2, continuous=True)
    assert (summary.done, summary.skipped, summary.failed, summary.tokens) == (5, 0, 1, 8)
    assert "5 prompts done, 0 skipped (already in the output), 1 failed" in str(summary)
    results = batch.read_results(out)
    assert [r["id"] for r in results] == [r.id for r in records]
    assert results[3] == dict(id="q3", index=3, error="prompt id 'q3': the text TQParams.reward "
                              "reads is 30 of its tokens, longer than its context of 24 positions",
                              error_type="ReaderContextError")
    before = open(batch.part_path(out, 0), "rb").read()
    again = batch.run(records, _fake_continuous(), out, batch_size=2, continuous=True)
    assert (again.done, again.skipped, again.failed) == (0, 5, 1)
    assert open(batch.part_path(out, 0), "rb").read() == before


def test_results_of_another_input_are_refused(tmp_path):
    out = str(tmp_path / "out")
    os.makedirs(out)
    _write(batch.part_path(out, 0), b'{"id": "zzz", "tokens": []}\n')
    with pytest.raises(ValueError, match="'zzz', which is not in the input"):
        batch.run([PromptRecord("a", prompt_ids=(3,))], _fake_decode(), out, batch_size=1)


# ---- the command: inputs checked before anything is written -------------------------------------

def _fails(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err


@pytest.mark.parametrize("change, message", [
    (lambda f, a: a + ["--k", "0"], "k must be >= 1"),
    (lambda f, a: a + ["--batch-size", "-1"], "--batch-size must be >= 0"),
    (lambda f, a: [x.replace(str(f / "reward"), str(f / "nope")) for x in a], "--reward folder"),
    (lambda f, a: a + ["--coordinator", "127.0.0.1:1234"], "--num-processes, --process-id missing"),
    (lambda f, a: a + ["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
     "--coordinator must be HOST:PORT"),
    (lambda f, a: a + ["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be in [0, 2)"),
])
def test_bad_flags_fail_before_writing(job_files, tmp_path, capsys, change, message):
    out = tmp_path / "out"
    _fails(capsys, change(job_files, batch_args(job_files, out)), message)
    assert not out.exists()


@pytest.mark.parametrize("lines, message", [
    ('{"id": 1, "prompt_ids": [5]}\n{"id": 1, "prompt_ids": [6]}\n', "duplicate id 1"),
    ('{"id": 1, "prompt_ids": [5]}\n{"id": 2, "prompt_ids": [6\n', ":2: not valid JSON"),
    ('{"id": 1, "prompt_ids": [5]}\n{"id": 2, "prompt_ids": [6, 99]}\n',
     "prompt id 2 has token ids outside the vocabulary"),
])
def test_bad_prompts_fail_before_writing(job_files, tmp_path, capsys, lines, message):
    prompts, out = tmp_path / "prompts.jsonl", tmp_path / "out"
    prompts.write_text(lines)
    args = [str(prompts) if x == str(job_files / "prompts.jsonl") else x for x in batch_args(job_files, out)]
    _fails(capsys, args, message)
    assert not out.exists()


def test_resume_into_another_jobs_folder_is_refused(job_files, tmp_path, capsys):
    out = tmp_path / "out"
    args = batch_args(job_files, out)
    spec = batch.job_spec(str(job_files / "prompts.jsonl"),
                          {r: str(job_files / r) for r in ("sft", "baseline", "reward")},
                          DecodeConfig(k=2, horizon=2, max_new_tokens=4))
    batch.write_job(str(out), spec)
    before = sorted(os.listdir(out))
    _fails(capsys, args + ["--alpha", "2"], "config.alpha: 1.0 there, 2.0 now")
    assert sorted(os.listdir(out)) == before


# ---- the command as subprocesses ----------------------------------------------------------------

def test_resume_after_sigkill_loses_and_repeats_nothing(job_files, reference, tmp_path):
    """`tqjax batch` decodes with continuous batching (2 rows in flight) and writes each prompt as
    it finishes; a SIGKILL mid-run, and a torn last line, lose and repeat nothing."""
    out, log = tmp_path / "out", tmp_path / "log.txt"
    part = batch.part_path(str(out), 0)
    target = random.randint(1, PROMPTS - 8)
    proc = start_batch(job_files, out, "--batch-size", "2", log=log)
    deadline = time.monotonic() + 180
    while _lines(part) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = _lines(part)
    assert proc.returncode == -signal.SIGKILL and target <= written < PROMPTS, (
        f"killed with {written} of {PROMPTS} lines written (wanted {target}):\n{log.read_text()[-2000:]}")

    data = open(part, "rb").read()                     # as if the kill had torn the last write
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    _write(part, data[:last + (len(data) - last) // 2])

    text = finish(start_batch(job_files, out, "--batch-size", "2", log=log), log)
    assert f"{PROMPTS - written + 1} prompts done, {written - 1} skipped" in text
    _assert_same(batch.read_results(str(out)), reference)


def test_two_processes_equal_one(job_files, reference, tmp_path):
    out = tmp_path / "out"
    flags = ["--batch-size", "4", "--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    procs = [start_batch(job_files, out, *flags, "--process-id", str(p), log=tmp_path / f"log{p}.txt")
             for p in (0, 1)]
    logs = [finish(proc, tmp_path / f"log{p}.txt") for p, proc in enumerate(procs)]
    for p, text in enumerate(logs):
        assert f"process {p}/2: {PROMPTS // 2} prompts done, 0 skipped" in text
        assert {r["index"] % 2 for r in batch.read_part(batch.part_path(str(out), p))[0]} == {p}
    _assert_same(batch.read_results(str(out)), reference)


# ---- a reward model with its own tokenizer ------------------------------------------------------

TQ_FLAGS = ("--k", "3", "--horizon", "3", "--rollouts", "2", "--max-new-tokens", "4", "--seed", "3",
            "--rollout-temperature", "1.0", "--stop-token-ids", "201")      # test_cross's TQ


@pytest.fixture(scope="module")
def cross_job(tmp_path_factory):
    """`cross_params` models on disk, the reward model's context cut to OVERFLOW_CONTEXT, and a
    prompt file of OVERFLOW (only "b"'s rollouts outgrow the reward model's context)."""
    import tqjax
    from tests.decoding.cross_helpers import OVERFLOW, OVERFLOW_CONTEXT, cross_params

    root = tmp_path_factory.mktemp("cross_job")
    params, _ = cross_params()
    reward = params.reward.replace(config=params.reward.config.replace(max_positions=OVERFLOW_CONTEXT))
    for role, model in (("sft", params.sft), ("baseline", params.baseline), ("reward", reward)):
        tqjax.save(model, str(root / role))
    with open(root / "prompts.jsonl", "w") as f:
        for rid, text in zip("abc", OVERFLOW):
            f.write(json.dumps({"id": rid, "prompt": text}) + "\n")
    return root


def _cross_args(files, output, prompts="prompts.jsonl"):
    return ["batch", "--sft", str(files / "sft"), "--baseline", str(files / "baseline"),
            "--reward", str(files / "reward"), "--input", str(files / prompts),
            "--output", str(output), "--batch-size", "3", *TQ_FLAGS]


def test_prompt_past_the_readers_context_is_an_error_line(cross_job, tmp_path, capsys):
    """A prompt whose reward text outgrows the reward model's context mid-decode: its line is an
    error record naming it, the other prompts of its batch are decoded as without it, the exit
    status is 3 with a warning; a rerun decodes and writes nothing, and exits 3 again."""
    import tqjax
    from tqjax.cli.batch import PARTIAL

    out = tmp_path / "out"
    assert main(_cross_args(cross_job, out)) == PARTIAL == 3
    captured = capsys.readouterr()
    assert "3 prompts done, 0 skipped (already in the output), 1 failed" in captured.out
    assert "tqjax batch: warning: 1 of 3 prompts failed" in captured.err
    results = batch.read_results(str(out))
    assert [r["id"] for r in results] == ["a", "b", "c"]
    error = results[1]
    assert error["error_type"] == "ReaderContextError" and "tokens" not in error
    assert re.fullmatch(r"prompt id 'b': the text TQParams.reward reads is \d+ of its tokens, "
                        r"longer than its context of 24 positions", error["error"]), error

    params = tqjax.TQParams(*(tqjax.load(str(cross_job / r)) for r in ("sft", "baseline", "reward")))
    config = DecodeConfig(method="tq", k=3, horizon=3, rollouts=2, max_new_tokens=4, seed=3,
                          rollout_temperature=1.0, stop_token_ids=(201,))
    failed = []
    want = tqjax.decode(params, [json.loads(x)["prompt"] for x in open(cross_job / "prompts.jsonl")],
                        config, batch_size=3, on_error=lambda i, e: failed.append(i))
    assert failed == [1]
    for r, j in ((results[0], 0), (results[2], 1)):
        assert r["tokens"] == want.tokens[j] and r["text"] == want.texts[j]
        np.testing.assert_allclose([r["reward"], r["kl"]], [want.rewards[j], want.kl[j]], atol=1e-5)

    part = batch.part_path(str(out), 0)
    before = open(part, "rb").read()
    assert main(_cross_args(cross_job, out)) == PARTIAL
    captured = capsys.readouterr()
    assert "0 prompts done, 3 skipped (already in the output), 1 failed" in captured.out
    assert open(part, "rb").read() == before


def test_prompt_already_past_the_readers_context_fails_before_writing(cross_job, tmp_path, capsys):
    """A prompt whose own text is longer than the reward model's context: refused before any
    decoding or writing, naming it by its id."""
    (cross_job / "long.jsonl").write_text(
        json.dumps({"id": "a", "prompt": "how are you"}) + "\n" +
        json.dumps({"id": "z", "prompt": "write a short review of the pizza place"}) + "\n")
    out = tmp_path / "out"
    _fails(capsys, _cross_args(cross_job, out, "long.jsonl"),
           "long.jsonl: prompt id 'z': the text TQParams.reward reads is 30 of its tokens, "
           "longer than its context of 24 positions")
    assert not out.exists()
