"""Batch jobs over a prompt file that survive being killed (docs/design.md, "Scale").

Process ``p`` of ``N`` owns the prompts whose line index ``i`` has ``i % N == p`` and appends their
results to ``OUTDIR/part-{p:05d}.jsonl``. A batch counts as done once its lines are written,
flushed and fsynced; a rerun skips every id already in a complete line of any part file, cuts a
torn last line off its own part, and redoes those prompts. Each prompt's random key is its line
index, so the results do not depend on ``N``, the batch size or where a run stopped. A prompt that
fails on its own (the continuous ``on_error``) gets an error line (`tqjax.io.prompts.error_line`)
instead of a result: it counts as done, so a rerun neither redoes nor repeats it.
``OUTDIR/job.json`` records what the job is, so a rerun cannot mix two jobs in one folder.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
import time
from typing import Callable, Sequence

from tqjax.io.prompts import error_line, result_line

JOB_FILE = "job.json"
# DecodeConfig fields that change memory and speed, never a result: a resume may change them
RESULT_NEUTRAL = ("candidate_chunk", "diagnostics")
PART = re.compile(r"part-(\d{5,})\.jsonl$")


def part_path(outdir: str, process: int) -> str:
    return os.path.join(outdir, f"part-{process:05d}.jsonl")


def share(count: int, num_processes: int, process_id: int) -> range:
    """The line indices process ``process_id`` decodes: ``process_id, process_id + N, ...``."""
    return range(process_id, count, num_processes)


# ---- what the job is ----------------------------------------------------------------------------

def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def job_spec(input_path: str, models: dict, config, dtype=None) -> dict:
    """The description of a job that job.json holds: input (path and hash), model folders, config."""
    return dict(input=os.path.abspath(input_path), input_sha256=file_sha256(input_path),
                models={role: os.path.abspath(path) for role, path in sorted(models.items())},
                dtype=None if dtype is None else str(dtype),
                config={k: v for k, v in dataclasses.asdict(config).items() if k not in RESULT_NEUTRAL})


def _differences(old, new, prefix=""):
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} there, {new!r} now"]


def check_job(outdir: str, spec: dict) -> bool:
    """Whether ``outdir`` already holds this job; raises if it holds another one. Writes nothing."""
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise FileExistsError(f"output {outdir!r} exists and is not a folder")
    path = os.path.join(outdir, JOB_FILE)
    if not os.path.exists(path):
        parts = glob.glob(os.path.join(outdir, "part-*.jsonl"))
        if parts:
            raise ValueError(f"{outdir!r} holds part files but no {JOB_FILE}; it is not a tqjax batch "
                             f"job folder this command can resume; use a new --output")
        return False
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    diff = _differences(old, json.loads(json.dumps(spec)))
    if diff:
        raise ValueError(f"{outdir!r} holds another job ({path} disagrees with this command: "
                         f"{'; '.join(diff)}); rerun the original command to resume it, or use a "
                         f"new --output")
    return True


def write_job(outdir: str, spec: dict, process_id: int = 0) -> None:
    """Create ``outdir`` and write job.json atomically (every process may do it, same content)."""
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, JOB_FILE)
    tmp = f"{path}.{process_id}.tmp"
    with open(tmp, "w") as f:
        json.dump(spec, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---- part files ---------------------------------------------------------------------------------

def _parse(line: bytes):
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) and "id" in obj else None


def read_part(path: str) -> tuple[list, int]:
    """``(records, good_bytes)``: the complete records of a part file and the length they span.

    A record is complete when its line parses and ends in a newline. Bytes after the last complete
    record are a torn write (kill or crash mid-batch); a broken line followed by good ones is
    corruption, and raises.
    """
    with open(path, "rb") as f:
        data = f.read()
    records, good, broken = [], 0, None
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        obj = _parse(data[pos:end])
        if obj is None:
            broken = pos if broken is None else broken
        elif broken is not None:
            raise ValueError(f"{path}: line at byte {broken} is not a result record, but complete "
                             f"records follow it; the file is corrupt (not a torn last write)")
        else:
            records.append(obj)
            good = end + 1
        pos = end + 1
    return records, good


def repair(path: str) -> int:
    """Cut a torn tail off a part file (fsynced); returns the number of bytes removed."""
    if not os.path.exists(path):
        return 0
    _, good = read_part(path)
    size = os.path.getsize(path)
    if good < size:
        with open(path, "r+b") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
    return size - good


def done_ids(outdir: str, owner: Callable[[int], bool] = lambda part: True,
             failed: set | None = None) -> set:
    """Ids with a complete record in any part file; parts ``owner(part)`` are repaired first.
    ``failed``: a set that the ids of error records are added to.

    Other parts may be growing (another process is writing them): only their complete lines count.
    """
    seen = {}
    for path in sorted(glob.glob(os.path.join(outdir, "part-*.jsonl"))):
        match = PART.search(os.path.basename(path))
        if match is None:
            continue
        if owner(int(match.group(1))):
            repair(path)
        records, _ = read_part(path)
        for obj in records:
            key = _key(obj["id"])
            if key in seen:
                raise ValueError(f"id {obj['id']!r} is in {seen[key]} and in {path}; "
                                 f"were two jobs writing into {outdir!r} at once?")
            seen[key] = path
            if failed is not None and "error" in obj:
                failed.add(key)
    return set(seen)


def _key(rid):
    return (type(rid).__name__, rid)


# ---- the run ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Summary:
    """What one process did: prompts decoded now, prompts skipped as already done, tokens, time;
    ``failed``: prompts of its share whose line is an error record (written now or before)."""

    process_id: int
    num_processes: int
    total: int
    done: int = 0
    skipped: int = 0
    tokens: int = 0
    seconds: float = 0.0
    failed: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        failed = f", {self.failed} failed (an error line each)" if self.failed else ""
        return (f"process {self.process_id}/{self.num_processes}: {self.done} prompts done, "
                f"{self.skipped} skipped (already in the output){failed}, {self.total} in its "
                f"share; {self.tokens} tokens in {self.seconds:.1f} s "
                f"({self.tokens_per_s:.1f} tokens/s)")


def pending(records: Sequence, outdir: str, num_processes: int = 1, process_id: int = 0,
            everyone: bool = False):
    """``(todo, skipped, failed)``: this process's ``(index, record)`` pairs without a result yet
    (with ``everyone``, those of every process: all of them decode every batch on one global
    mesh), how many of its pairs have one, and the indices of those whose line is an error record.

    Repairs this process's part (and, on process 0, parts of processes that no longer exist),
    and checks every stored id is one of ``records``.
    """
    owner = lambda part: part == process_id or (process_id == 0 and part >= num_processes)
    failed = set()
    done = done_ids(outdir, owner, failed)
    unknown = done - {_key(r.id) for r in records}
    if unknown:
        name, rid = sorted(unknown, key=str)[0]
        raise ValueError(f"{outdir!r} holds a result for id {rid!r}, which is not in the input; "
                         f"it belongs to another job")
    mine = [(i, records[i]) for i in (range(len(records)) if everyone
                                       else share(len(records), num_processes, process_id))]
    todo = [(i, r) for i, r in mine if _key(r.id) not in done]
    return todo, len(mine) - len(todo), [i for i, r in mine if _key(r.id) in failed]


def run(records: Sequence, decode_fn: Callable, outdir: str, *, batch_size: int,
        num_processes: int = 1, process_id: int = 0, progress: Callable | None = None,
        lockstep: bool = False, agree: Callable[[str], None] | None = None,
        continuous: bool = False) -> Summary:
    """Decode this process's unfinished share of ``records`` into its part file.

    records: `PromptRecord`s, in input order (their position is the prompt's global index).
    decode_fn(values, indices) -> `DecodeOutput`: values are prompt strings, token-id lists or
    message lists, indices their global indices (folded into the keys). progress(total, initial)
    -> a tqdm-like bar (``update(n)``, ``close()``), or None.

    lockstep: the processes share one global mesh, so every process decodes every batch of all
    the unfinished prompts together, and each writes only the rows it owns (``share``): a prompt
    is still written once, by the same process as without lockstep. ``agree(text)`` raises unless
    every process passed the same text (`tqjax.jobs.distributed.check_same`): the processes must
    agree on what is left before the first collective.

    continuous: one call ``decode_fn(values, indices, on_done, on_error)`` decodes everything
    left with continuous batching (``batch_size`` rows in flight) and calls ``on_done(b, output)``
    as prompt ``b`` finishes, with a `DecodeOutput` of that prompt alone, or ``on_error(b, error)``
    when prompt ``b`` failed on its own (the others go on); its line (a result, or an error line)
    is written and fsynced then, so a kill loses only the prompts in flight.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    todo, skipped, failed = pending(records, outdir, num_processes, process_id, everyone=lockstep)
    if lockstep:
        if agree is not None:
            agree(",".join(str(i) for i, _ in todo))
        owned = lambda i: i % num_processes == process_id
        skipped = len(share(len(records), num_processes, process_id)) - sum(owned(i) for i, _ in todo)
    else:
        owned = lambda i: True
    summary = Summary(process_id, num_processes, total=sum(owned(i) for i, _ in todo) + skipped,
                      skipped=skipped, failed=sum(map(owned, failed)))
    bar = progress(summary.total, skipped) if progress else None
    start = time.perf_counter()
    try:
        with open(part_path(outdir, process_id), "ab") as f:
            def write(lines):
                f.write("".join(json.dumps(line) + "\n" for line in lines).encode())
                f.flush()
                os.fsync(f.fileno())
                summary.done += len(lines)
                summary.failed += sum("error" in line for line in lines)
                summary.tokens += sum(len(line.get("tokens", ())) for line in lines)
                if bar is not None:
                    bar.update(len(lines))

            if continuous and todo:
                def on_done(b, out):
                    i, r = todo[b]
                    write([result_line(r.id, out, 0, index=i)] if owned(i) else [])

                def on_error(b, error):
                    i, r = todo[b]
                    write([error_line(r.id, error, index=i)] if owned(i) else [])

                decode_fn([r.value for _, r in todo], [i for i, _ in todo], on_done, on_error)
            for lo in range(0, len(todo) if not continuous else 0, batch_size):
                batch = todo[lo:lo + batch_size]
                out = decode_fn([r.value for _, r in batch], [i for i, _ in batch])
                write([result_line(r.id, out, b, index=i) for b, (i, r) in enumerate(batch)
                       if owned(i)])
    finally:
        summary.seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
    return summary


def read_results(outdir: str) -> list[dict]:
    """Every complete record of a job folder, in input order (by ``index``)."""
    records = []
    for path in sorted(glob.glob(os.path.join(outdir, "part-*.jsonl"))):
        records += read_part(path)[0]
    return sorted(records, key=lambda r: r.get("index", 0))
