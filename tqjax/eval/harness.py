"""The evaluation run shared by `tqjax eval` (the world task) and `tqjax sentiment eval` (the real task).

Each method decodes the test prompts once at its fixed config; a method with a swept value (α of
tq / cd / args, N of best-of-N) also decodes the test and the validation prompts at every value.
`run_methods` does the decoding, method by method (a `RunStore` keeps each finished method so that
a rerun skips it); `summarise_runs` turns the results into the table, the frontier and the
validation choice; `paired_tests` compares named methods prompt by prompt; `plot_frontier` draws.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Callable

import numpy as np

from tqjax.decoding.decode_plan import CANDIDATE_METHODS
from tqjax.eval.compare import Method, prompt_metrics, run, selected_name, summarise, summary_row
from tqjax.eval.select import select


def method_table(direct, indirect, config) -> dict[str, Method]:
    """The seven rows of a comparison, by name: ``sft`` and ``baseline`` (greedy), ``bon``
    (compute-matched best-of-N, `matched_bon_n`), ``args``, ``cd``, ``tq`` with the TQParams
    ``direct``, and ``tq-indirect`` (``transfer="indirect"``) with ``indirect`` (without a
    baseline_reward model its r_BL is the implicit β·log(ρ_BL/π_sft))."""
    from tqjax.decoding.decode_plan import matched_bon_n

    return {
        "sft": Method("sft", direct, config.replace(method="sft", temperature=0.0)),
        "baseline": Method("baseline", direct, config.replace(method="baseline", temperature=0.0)),
        "bon": Method("bon", direct, config.replace(method="bon", n=matched_bon_n(config), temperature=1.0)),
        "args": Method("args", direct, config.replace(method="args")),
        "cd": Method("cd", direct, config.replace(method="cd")),
        "tq": Method("tq", direct, config.replace(method="tq")),
        "tq-indirect": Method("tq-indirect", indirect, config.replace(method="tq", transfer="indirect")),
    }


def sweep_values(method: Method, alphas: list, bon_ns: list) -> tuple[str, list]:
    """(param, values) swept for ``method``: α for tq / cd / args (not indirect tq), N for best-of-N."""
    config = method.config
    if config.method in CANDIDATE_METHODS:
        return "alpha", (list(alphas) if config.transfer != "indirect" else [])
    return "N", (list(bon_ns) if config.method == "bon" else [])


def run_swept(method: Method, test: list, val: list, batch_size: int, gold, alphas: list, bon_ns: list,
              key: str, samples: list | None = None, warmup: bool = True) -> dict:
    """One method's record: ``result`` (its fixed config on test; with ``samples``, prompts decoded
    as the warm-up, their responses under ``result["warmup"]``; without ``samples`` and ``warmup``,
    no warm-up, so its ``seconds`` include compiling), ``param``, ``sweep`` (value -> result on test)
    and ``validation`` (value -> {key: mean, "kl": mean} on the validation prompts), and
    ``wall_s``, the whole wall time (compilation and warm-up included)."""
    start = time.perf_counter()
    result = run(method, test, batch_size, gold, warmup=samples or warmup)
    param, values = sweep_values(method, alphas, bon_ns)
    sweep, validation = {}, {}
    for value in values:
        cfg = method.config.replace(alpha=value) if param == "alpha" else method.config.replace(n=value)
        swept = Method(method.name, method.params, cfg)
        sweep[value] = result if cfg == method.config else run(swept, test, batch_size, gold, warmup=False)
        if val:
            rv = prompt_metrics(run(swept, val, batch_size, gold, warmup=False), [np.nan] * len(val))
            validation[value] = {key: float(np.nanmean(rv[key])), "kl": float(np.mean(rv["kl"]))}
    return dict(result=result, param=param, sweep=sweep, validation=validation,
                wall_s=time.perf_counter() - start)


def run_methods(methods: list[Method], test: list, val: list, batch_size: int, gold, alphas: list, bon_ns: list,
                key: str, store: "RunStore | None" = None, context: str = "", samples: list | None = None,
                log: Callable[[str], None] = print, warmup: bool = True) -> dict:
    """Method name -> `run_swept` record, in order. With a ``store``, a method whose record is there
    for the same prompts, config, sweep and ``context`` (e.g. the model folders) is read back, not
    decoded; each new record is saved as soon as its method finishes. ``samples``, ``warmup``:
    `run_swept`."""
    records = {}
    for m in methods:
        tag = fingerprint(m, test, val, alphas, bon_ns, key, f"{context}|samples={samples}")
        record = store.load(m.name, tag) if store else None
        if record is not None:
            log(f"{m.name}: finished in an earlier run ({record['wall_s']:.0f}s), read from {store.folder}")
        else:
            record = run_swept(m, test, val, batch_size, gold, alphas, bon_ns, key, samples, warmup)
            if store:
                store.save(m.name, tag, record)
            swept = f", swept {record['param']} over {list(record['sweep'])}" if record["sweep"] else ""
            log(f"{m.name}: done in {record['result']['seconds']:.1f}s{swept} ({record['wall_s']:.0f}s wall in all)")
        records[m.name] = record
    return records


def summarise_runs(records: dict, coherence, key: str, extra=None) -> dict:
    """``table`` (`summarise`), ``frontier`` (method -> a summary row per swept value, on test),
    ``validation`` (method -> value -> validation means), ``selected`` (`select`, with ``param``) and
    ``test_runs`` (method -> value -> result). ``extra(result)``: more per-prompt metrics."""
    results = {name: rec["result"] for name, rec in records.items()}
    table = summarise(results, coherence, extra=extra)
    frontier, validation, test_runs = {}, {}, {}
    for name, rec in records.items():
        for value, r in rec["sweep"].items():
            test_runs.setdefault(name, {})[value] = r
            point = dict(param=rec["param"], value=value, **summary_row(r, coherence(r), results.get("sft"),
                                                                       extra=extra))
            frontier.setdefault(name, []).append(point)
        if rec["validation"]:
            validation[name] = rec["validation"]
    tests_by_value = {name: {p["value"]: p for p in points} for name, points in frontier.items()}
    selected = select(validation, tests_by_value, key) if validation else {}
    for name, pick in selected.items():
        pick["param"] = frontier[name][0]["param"]
    return dict(table=table, frontier=frontier, validation=validation, selected=selected, test_runs=test_runs)


def paired_tests(scores: dict, summary: dict, groups: list[tuple[str, list[str]]], metric: str) -> list[dict]:
    """`tqjax.eval.stats.paired_test` of each group's method A against each of its methods B on
    ``scores`` (name -> per-prompt ``[P]``), first at the fixed configs, then with every method at
    its validation-chosen value (rows named by `selected_name`)."""
    from tqjax.eval.stats import paired_test

    def pairs(s, a, others):
        return [dict(a=a, b=b, metric=metric, **paired_test(s[a], s[b])) for b in others if b in s and b != a]

    out = []
    for a, pool in groups:
        if a in scores:
            out += pairs(scores, a, pool)
    chosen = {n: selected_name(n, p) for n, p in summary["selected"].items()}
    if chosen:
        scores = dict(scores)
        scores.update({chosen[n]: summary["test_runs"][n][p["value"]]["gold"] for n, p in summary["selected"].items()})
        for a, pool in groups:
            if a in chosen:
                out += pairs(scores, chosen[a], [chosen.get(b, b) for b in pool])
    return out


def selection_report(summary: dict, key: str) -> dict:
    """The ``selected`` part of eval.json: per method, the chosen value, its scores and the criterion."""
    return {n: dict(param=p["param"], value=p["value"], validation=p["validation"], test=p["test"],
                    criterion=f"highest mean {key} on the validation prompts (ties: lower KL)")
            for n, p in summary["selected"].items()}


def validation_report(summary: dict) -> dict:
    return {n: [dict(value=v, **s) for v, s in per.items()] for n, per in summary["validation"].items()}


def plot_frontier(summary: dict, path: str, key: str, ylabel: str, anchor_names=("sft", "baseline", "bon",
                                                                                 "bon (gold RM)")) -> bool:
    """Draw `tqjax.eval.plot.frontier_plot` of the summary to ``path``; False when nothing was swept."""
    from tqjax.eval.plot import frontier_plot

    frontier, table = summary["frontier"], summary["table"]
    if not frontier:
        return False
    anchors = {n: table[n] for n in anchor_names if n in table and n not in frontier}
    frontier_plot(frontier, path, anchors, {n: p["value"] for n, p in summary["selected"].items()}, y=key,
                  ylabel=ylabel)
    return True


def fingerprint(method: Method, test: list, val: list, alphas: list, bon_ns: list, key: str, context: str) -> str:
    """SHA-256 of everything a method's record depends on (prompts hashed, never stored)."""
    text = json.dumps(dict(name=method.name, config=dataclasses.asdict(method.config), test=test, val=val,
                           alphas=list(alphas), bon_ns=list(bon_ns), key=key, context=context),
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


_ARRAYS = ("rewards", "kl", "gold", "logp_sft")


def _result_json(r: dict) -> dict:
    out = {k: (np.asarray(v).tolist() if k in _ARRAYS else v) for k, v in r.items()}
    out["tokens"] = [np.asarray(t).tolist() for t in r["tokens"]]
    return out


def _result_back(r: dict) -> dict:
    return {k: (np.asarray(v, np.float64) if k in _ARRAYS else v) for k, v in r.items()}


class RunStore:
    """Finished methods' records as ``FOLDER/<method>.json`` (with the `fingerprint` they were run
    under), written under a temporary name and renamed; a record of another fingerprint is ignored."""

    def __init__(self, folder: str):
        self.folder = folder

    def _path(self, name: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return os.path.join(self.folder, f"{safe}.json")

    def load(self, name: str, tag: str) -> dict | None:
        path = self._path(name)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            saved = json.load(f)
        if saved.get("fingerprint") != tag:
            return None
        rec = saved["record"]
        kind = float if rec["param"] == "alpha" else int
        return dict(rec, result=_result_back(rec["result"]),
                    sweep={kind(v): _result_back(r) for v, r in rec["sweep"].items()},
                    validation={kind(v): s for v, s in rec["validation"].items()})

    def save(self, name: str, tag: str, record: dict) -> None:
        os.makedirs(self.folder, exist_ok=True)
        rec = dict(record, result=_result_json(record["result"]),
                   sweep={str(v): _result_json(r) for v, r in record["sweep"].items()},
                   validation={str(v): s for v, s in record["validation"].items()})
        path = self._path(name)
        with open(path + ".partial", "w") as f:
            json.dump(dict(fingerprint=tag, record=rec), f)
        os.replace(path + ".partial", path)
