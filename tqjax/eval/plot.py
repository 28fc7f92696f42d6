"""The gold-reward-vs-KL frontier plot (matplotlib, the optional ``plot`` extra)."""

from __future__ import annotations


def frontier_plot(points: dict, path: str, anchors: dict | None = None) -> None:
    """``points``: method -> list of (alpha, kl, gold reward); ``anchors``: name -> (kl, gold)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("the frontier plot needs matplotlib: pip install 'tqjax[plot]'") from e
    fig, ax = plt.subplots(figsize=(6, 4.2))
    colors = {}
    for method, rows in points.items():
        rows = sorted(rows)
        base = method.replace(" (gold RM)", "")
        color = colors.setdefault(base, f"C{len(colors)}")
        style = "--" if "gold RM" in method else "-"
        ax.plot([r[1] for r in rows], [r[2] for r in rows], style, marker="o", color=color, label=method)
        for alpha, kl, gold in rows:
            ax.annotate(f"α={alpha:g}", (kl, gold), textcoords="offset points", xytext=(3, 3), fontsize=7)
    for (name, (kl, gold)), marker in zip((anchors or {}).items(), "XPsD^v"):
        ax.scatter([kl], [gold], marker=marker, s=70, color="black", label=name, zorder=3)
    ax.set_xlabel("Σ_t KL(π_alg ‖ π_sft) per response")
    ax.set_ylabel("gold reward r (mean)")
    ax.set_title("gold reward vs KL, embedded review task")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
