"""``tqjax batch``: decode a prompt file into OUTDIR on one or many processes; rerun to resume.

Every process runs the same command; each writes ``OUTDIR/part-{process:05d}.jsonl``. Inputs,
flags, models and OUTDIR are checked before anything is written (`tqjax.jobs.batch`). A prompt that
fails on its own during decoding (a reader's text outgrowing its context) gets an error line, the
others go on, and the process exits with `PARTIAL` (a warning on stderr counts them).
"""

from __future__ import annotations

import functools
import os
import sys

from tqjax.cli.options import (add_decode_flags, add_mesh_flag, add_model_flags, check_roles, checked, decode_config,
                                int_at_least, job_mesh, model_paths, reward_labels)
from tqjax.cli.plan import add_budget_flag, auto_batch

PARTIAL = 3     # exit status: every prompt has its line, but some lines are error records


def add_parser(sub) -> None:
    p = sub.add_parser("batch", help="resumable batch decoding of a prompt file (multi-process)",
                       epilog=f"exit status: 0 when every prompt of this process's share has a "
                              f"result; {PARTIAL} when all have a line but some are error records "
                              f"({{\"id\", \"index\", \"error\", \"error_type\"}}: a prompt "
                              f"that failed on its own, e.g. its reward text outgrew the reward "
                              f"model's context; a rerun keeps them); 2 for an error that stops "
                              f"the job")
    add_model_flags(p)
    p.add_argument("--input", required=True,
                   help="JSONL file of {\"id\", \"prompt\"}, {\"id\", \"prompt_ids\"} or "
                        "{\"id\", \"messages\"} lines")
    p.add_argument("--output", required=True,
                   help="output folder: part-*.jsonl (id, index, tokens, text, reward, kl, logp_sft, "
                        "log_ratio per line; id, index, error, error_type for a prompt that "
                        "failed) and job.json; rerun the same command to resume")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", default=0,
                   **checked(int_at_least(0, " (0: auto)")),
                   help="rows in flight: continuous batching, a finished prompt's row takes the "
                        "next prompt (default 0: the largest that fits --memory-budget)")
    add_budget_flag(p)
    add_mesh_flag(p)
    group = p.add_argument_group("processes (default: JAX_COORDINATOR_ADDRESS or cluster variables "
                                 "when set, else one process)")
    group.add_argument("--coordinator", help="HOST:PORT of process 0")
    group.add_argument("--num-processes", "--num_processes", dest="num_processes",
                       **checked(int_at_least(1)))
    group.add_argument("--process-id", "--process_id", dest="process_id",
                       **checked(int_at_least(0)))
    add_decode_flags(p)
    p.set_defaults(run=run)


def _validate_prompts(path, params, records, indices, config):
    """Tokenise and check this process's prompts against the models before any decoding."""
    from tqjax.api.decode import prepare
    from tqjax.decoding.text_reader import ReaderContextError

    for lo in range(0, len(indices), 1024):
        part = indices[lo:lo + 1024]
        try:
            prepare(params, [records[i].value for i in part], config, indices=part)
        except ReaderContextError as e:
            raise ValueError(f"{path}: prompt id {records[part[e.prompt]].id!r}: {e.detail}") from None
        except (ValueError, TypeError) as e:
            word, number, rest = (str(e).split(" ", 2) + ["", ""])[:3]   # "prompt 3 has ..."
            if word == "prompt" and number.isdigit() and int(number) < len(part):
                rid = records[part[int(number)]].id
                raise ValueError(f"{path}: prompt id {rid!r} {rest}") from None
            raise ValueError(f"{path}: {e}") from None


def run(args) -> int:
    from tqdm.auto import tqdm

    from tqjax.io.prompts import read_prompts
    from tqjax.jobs import batch, distributed
    from tqjax.parallel.multihost import spans_processes

    if args.batch_size < 0:
        raise ValueError(f"--batch-size must be >= 0 (0: auto), got {args.batch_size}")
    config = decode_config(args)
    records = read_prompts(args.input)
    paths = {role: os.path.abspath(path) for role, path in model_paths(args).items()}
    check_roles(config, paths)
    for role, path in paths.items():
        if not os.path.isdir(path):
            raise FileNotFoundError(f"--{role.replace('_', '-')} folder {path!r} does not exist")
    spec = batch.job_spec(args.input, paths, config, args.dtype)
    batch.check_job(args.output, spec)

    process_id, num_processes = distributed.initialize(
        args.coordinator, args.num_processes, args.process_id,
        auto=bool(os.environ.get("JAX_COORDINATOR_ADDRESS")))
    distributed.check_same(repr(sorted(spec.items())), "the job (input, models, decoding flags)")

    from tqjax.api.decode import Decoder, TQParams

    mesh = job_mesh(args)
    params = TQParams(**_load(paths, args.dtype, mesh, reward_labels(args)))
    lockstep = spans_processes(mesh)       # one global mesh: every process decodes every batch
    mine = list(range(len(records)) if lockstep else batch.share(len(records), num_processes, process_id))
    _validate_prompts(args.input, params, records, mine, config)
    batch.write_job(args.output, spec, process_id)
    # after job.json: the batch size and candidate chunk change memory, never the results
    batch_size, config = auto_batch(args, params, config, [records[i].value for i in mine],
                                    continuous=True)

    decode_fn = functools.partial(_decode, Decoder(params, config, mesh), batch_size)
    progress = functools.partial(_bar, tqdm, f"batch {config.method} [{process_id}/{num_processes}]")
    agree = functools.partial(distributed.check_same, what="the prompts left to decode")
    summary = batch.run(records, decode_fn, args.output, batch_size=batch_size,
                        num_processes=num_processes, process_id=process_id, progress=progress,
                        lockstep=lockstep, agree=agree, continuous=True)
    part = batch.part_path(args.output, process_id)
    print(f"tqjax batch: {summary}; wrote {part}", flush=True)
    if summary.failed:
        print(f"tqjax batch: warning: {summary.failed} of {summary.total} prompts failed; their "
              f"lines in {part} are error records (\"error\" says why); exit status {PARTIAL}",
              file=sys.stderr, flush=True)
    distributed.barrier("tqjax batch done")
    distributed.shutdown()
    return PARTIAL if summary.failed else 0


def _load(paths, dtype, mesh, labels):
    """The models placed on the job's mesh (this process's devices, or one mesh across hosts)."""
    import tqjax

    return {role: tqjax.load(path, dtype=dtype, mesh=mesh, reward_label=labels.get(role)) for role, path in paths.items()}


def _decode(decoder, batch_size, values, indices, on_done, on_error):
    """Continuous batching: ``batch_size`` rows in flight, ``on_done`` as each prompt finishes,
    ``on_error`` for a prompt that fails on its own (one `Decoder`: the params placed once, for
    every call in lockstep)."""
    return decoder.run(values, batch_size, indices=indices, on_done=on_done, on_error=on_error)


def _bar(tqdm, desc, total, initial):
    return tqdm(total=total, initial=initial, desc=desc, unit="prompt", dynamic_ncols=True)
