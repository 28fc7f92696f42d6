"""Per-prompt summaries with intervals, the Markdown tables, and the two-panel frontier plot."""

import numpy as np
import pytest

from tqjax.eval.compare import markdown_table, paired_markdown, selected_name, summarise, summary_row
from tqjax.eval.plot import frontier_plot
from tqjax.eval.stats import paired_test


def fake_run(gold, kl, seconds=2.0):
    P = len(gold)
    return dict(tokens=[[5] * 4] * P, texts=["good food good service"] * P, rewards=np.asarray(gold) + 1.0,
                kl=np.asarray(kl, np.float64), gold=np.asarray(gold, np.float64), seconds=seconds)


def test_summary_has_a_bracketing_interval_for_every_mean():
    sft = fake_run([0.0, 1.0, 0.5, 2.0], [0.0] * 4)
    tq = fake_run([1.0, 1.0, 2.5, 3.0], [1.0, 2.0, 3.0, 4.0])
    table = summarise({"sft": sft, "tq": tq}, coherence=lambda r: np.full(4, 0.25))
    row = table["tq"]
    assert row["win_rate_vs_sft"] == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert table["sft"]["win_rate_vs_sft"] == 0.5 and table["sft"]["ci"]["win_rate_vs_sft"] == [0.5, 0.5]
    for key in ("gold_reward", "reward", "kl", "win_rate_vs_sft", "win_tie_rate_vs_sft", "diversity", "coherence",
                "length"):
        lo, hi = row["ci"][key]
        assert lo <= row[key] <= hi, key
    assert row["tokens_per_s"] == 8.0 and "tokens_per_s" not in row["ci"]


def test_markdown_shows_intervals_the_validation_row_and_the_paired_table():
    sft = fake_run([0.0, 1.0, 0.5, 2.0], [0.0] * 4)
    tq = fake_run([1.0, 1.0, 2.5, 3.0], [1.0, 2.0, 3.0, 4.0])
    table = summarise({"sft": sft, "tq": tq}, coherence=lambda r: np.zeros(4))
    pick = dict(param="alpha", value=2.0, test=summary_row(tq, np.zeros(4), sft))
    md = markdown_table(table, {"tq": pick}, coherence_label="coherence (SFT stand-in)")
    lines = md.splitlines()
    assert "coherence (SFT stand-in)" in lines[0]
    assert lines[3].startswith("| tq |") and lines[4].startswith("| tq @ α=2 (val) |")
    assert "+1.88 [" in lines[3]
    assert selected_name("bon", dict(param="N", value=64)) == "bon @ N=64 (val)"
    paired = [dict(a="tq", b="sft", **paired_test(tq["gold"], sft["gold"]))]
    md = paired_markdown(paired)
    assert "| tq | sft | +1.00 [" in md and md.endswith("| 3 / 1 / 0 | 0.25 |")


def points(values, param="alpha", shift=0.0):
    return [dict(param=param, value=v, kl=0.2 * v + shift, gold_reward=1.0 + 0.05 * v,
                 ci=dict(kl=[0.15 * v + shift, 0.25 * v + shift], gold_reward=[0.8, 1.3 + 0.05 * v])) for v in values]


def overlaps(a, b):
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_frontier_plot_has_two_panels_and_no_colliding_labels(tmp_path):
    alphas = [0.5, 1, 2, 4, 8]
    frontier = {"tq": points(alphas), "cd": points(alphas, shift=0.05),
                "args": points(alphas, shift=0.1), "bon": points([4, 16, 64], param="N"),
                "tq (gold RM)": points(alphas), "cd (gold RM)": points(alphas, shift=0.02)}
    anchor = dict(kl=0.0, gold_reward=1.0, ci=dict(kl=[0.0, 0.0], gold_reward=[0.9, 1.1]))
    path = tmp_path / "frontier.png"
    baseline = {**anchor, "kl": 1.5, "ci": dict(kl=[1.2, 1.9], gold_reward=[0.9, 1.1])}
    boxes = frontier_plot(frontier, str(path), {"sft": anchor, "baseline": baseline},
                          chosen={"tq": 2, "bon": 64})
    assert path.stat().st_size > 10_000
    assert len(boxes) == 2
    assert len(boxes[0]) == 3 * 5 + 3 + 2 and len(boxes[1]) == 2 * 5 + 2      # α / N labels + anchors
    for panel in boxes:
        assert not any(overlaps(a, b) for i, a in enumerate(panel) for b in panel[i + 1:])


def test_frontier_plot_without_gold_rm_rows_has_one_panel(tmp_path):
    boxes = frontier_plot({"tq": points([1, 2])}, str(tmp_path / "f.png"))
    assert len(boxes) == 1 and len(boxes[0]) == 2
