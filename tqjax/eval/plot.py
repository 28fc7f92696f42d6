"""The reward-vs-KL frontier plot (matplotlib, the optional ``plot`` extra).

Two panels with the same axes: the methods run with the learned reward model, and the same methods
run with the gold reward as their reward model. Every point carries its 95% interval on both axes;
the α / N labels are placed one by one where they overlap no other label and no marker.
"""

from __future__ import annotations

GOLD = " (gold RM)"
ANCHOR_MARKERS = "XPsD^v"
COLORS = {"args": "C0", "cd": "C1", "tq": "C2", "bon": "C4", "tq-indirect": "C5"}
KL_TICKS = (0, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# Label offsets (points) tried in order, nearest first: (dx, dy, horizontal alignment).
OFFSETS = [(dx * r, dy * r, ha) for r in (1, 2, 3, 4) for dx, dy, ha in
           ((4, 4, "left"), (4, -11, "left"), (-4, 4, "right"), (-4, -11, "right"),
            (0, 8, "center"), (0, -16, "center"), (8, -3, "left"), (-8, -3, "right"))]


def _panel(name: str) -> int:
    return 1 if name.endswith(GOLD) else 0


def _err(rows: list, key: str) -> list:
    """Interval bars ``[[below], [above]]`` of ``key`` (never negative)."""
    return [[max(0.0, r[key] - r["ci"][key][0]) for r in rows], [max(0.0, r["ci"][key][1] - r[key]) for r in rows]]


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _place_labels(ax, renderer, items: list, markers: list) -> list:
    """Annotate ``items`` ((text, (x, y), color)) greedily: each takes the first offset whose box
    overlaps no earlier label, marker or the axes' edge; failing that, the least overlapping one
    with a leader line. Returns the label boxes in display pixels."""
    from matplotlib.transforms import Bbox

    frame = ax.get_window_extent(renderer)
    placed = []
    for text, xy, color in items:
        best = None
        for dx, dy, ha in OFFSETS:
            ann = ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", ha=ha, fontsize=7, color=color)
            box = ann.get_window_extent(renderer)
            box = Bbox.from_extents(box.x0 - 1, box.y0 - 1, box.x1 + 1, box.y1 + 1)
            cost = sum(_overlap(box, other) for other in placed + markers)
            cost += box.width * box.height - _overlap(box, frame)
            ann.remove()
            if best is None or cost < best[0]:
                best = (cost, dx, dy, ha, box)
            if cost == 0:
                break
        cost, dx, dy, ha, box = best
        arrow = None if cost == 0 and abs(dx) + abs(dy) < 20 else dict(arrowstyle="-", lw=0.5, color=color, alpha=0.6)
        ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", ha=ha, fontsize=7, color=color,
                    arrowprops=arrow)
        placed.append(box)
    return placed


def frontier_plot(points: dict, path: str, anchors: dict | None = None, chosen: dict | None = None,
                  y: str = "gold_reward", ylabel: str = "gold reward r (mean over prompts)") -> list[list[tuple]]:
    """Draw the frontier to ``path``; return each panel's label boxes (pixels) for checking overlaps.

    ``points``: method -> list of {"param": "alpha" | "N", "value", "kl", y, "ci": {"kl": [lo, hi],
    y: [lo, hi]}}; methods named "... (gold RM)" go to the second panel. ``anchors``: name -> a
    point without param/value (sft, baseline: both panels; others by their name). ``chosen``:
    method -> the value chosen on validation, ringed.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    except ImportError as e:
        raise ImportError("the frontier plot needs matplotlib: pip install 'tqjax[plot]'") from e
    anchors, chosen = anchors or {}, chosen or {}
    two = any(_panel(m) for m in list(points) + list(anchors))
    fig, axes = plt.subplots(1, 2 if two else 1, figsize=(11 if two else 6.5, 5.2), sharex=True, sharey=True,
                             squeeze=False, dpi=120)
    axes = axes[0]
    colors, handles, ring = {}, {}, None
    labels = [[] for _ in axes]
    marker_xy = [[] for _ in axes]
    for method, rows in points.items():
        rows = sorted(rows, key=lambda r: r["value"])
        base = method.replace(GOLD, "")
        color = colors.setdefault(base, COLORS.get(base, f"C{6 + len(colors)}"))
        ax, k = axes[_panel(method)], _panel(method)
        xs, ys = [r["kl"] for r in rows], [r[y] for r in rows]
        ax.errorbar(xs, ys, xerr=_err(rows, "kl"), yerr=_err(rows, y), fmt="-o", color=color, ms=4, lw=1.4,
                    elinewidth=0.8, capsize=2, alpha=0.9)
        handles[base] = Line2D([], [], color=color, marker="o", ms=4, label=base)
        symbol = "α" if rows[0]["param"] == "alpha" else "N"
        labels[k] += [(f"{symbol}={r['value']:g}", (r["kl"], r[y]), color) for r in rows]
        marker_xy[k] += [(x_, y_, 6) for x_, y_ in zip(xs, ys)]
        if method in chosen:
            pick = next(r for r in rows if r["value"] == chosen[method])
            ax.scatter([pick["kl"]], [pick[y]], s=160, facecolors="none", edgecolors="black", lw=1.2, zorder=4)
            marker_xy[k].append((pick["kl"], pick[y], 10))
            ring = Line2D([], [], ls="", marker="o", ms=11, mfc="none", mec="black", label="chosen on validation")
    for (name, p), marker in zip(anchors.items(), ANCHOR_MARKERS):
        panels = [_panel(name)] if name.endswith(GOLD) or "bon" in name else list(range(len(axes)))
        for k in panels:
            ax = axes[k]
            ax.errorbar([p["kl"]], [p[y]], xerr=_err([p], "kl"), yerr=_err([p], y), fmt=marker, color="black", ms=8,
                        elinewidth=0.8, capsize=2, zorder=3)
            labels[k].append((name.replace(GOLD, ""), (p["kl"], p[y]), "black"))
            marker_xy[k].append((p["kl"], p[y], 8))
        handles[name.replace(GOLD, "")] = Line2D([], [], ls="", marker=marker, color="black", ms=8,
                                                 label=name.replace(GOLD, ""))
    if ring is not None:
        handles["chosen"] = ring
    titles = ["learned reward model", "gold reward r as the reward model"]
    for k, ax in enumerate(axes):
        ax.set_xscale("symlog", linthresh=1.0)
        ax.xaxis.set_major_locator(FixedLocator(KL_TICKS))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("Σ_t KL(π_alg ‖ π_sft) per response (symlog)")
        ax.set_title(titles[k] if two else "reward vs KL")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(ylabel)
    fig.legend(handles=list(handles.values()), loc="lower center", ncol=min(len(handles), 8), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    from matplotlib.transforms import Bbox
    for k, ax in enumerate(axes):
        centres = ax.transData.transform([m[:2] for m in marker_xy[k]]) if marker_xy[k] else []
        dots = [Bbox.from_extents(px - r, py - r, px + r, py + r) for (px, py), (_, _, r) in zip(centres, marker_xy[k])]
        placed = _place_labels(ax, renderer, labels[k], dots)
        boxes.append([tuple(float(v) for v in (b.x0, b.y0, b.x1, b.y1)) for b in placed])
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return boxes
