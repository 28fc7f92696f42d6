"""Evaluation: metrics, side-by-side method comparison, frontier plot."""

from tqjax.eval.compare import Method, forwards_per_token, markdown_table, matched_bon_n, run, summarise
from tqjax.eval.metrics import coherence, diversity, win_rates

__all__ = ["Method", "coherence", "diversity", "forwards_per_token", "markdown_table", "matched_bon_n",
           "run", "summarise", "win_rates"]
