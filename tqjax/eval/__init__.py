"""Evaluation: metrics, side-by-side method comparison, intervals and paired tests, validation choice, plot."""

from tqjax.eval.compare import (Method, forwards_per_token, markdown_table, matched_bon_n, paired_markdown, run,
                                summarise, summary_row)
from tqjax.eval.metrics import coherence, diversity, perplexity, win_indicators, win_rates
from tqjax.eval.select import choose, select, split_list, split_stream
from tqjax.eval.stats import bootstrap_ci, paired_test, sign_flip_p

__all__ = ["Method", "bootstrap_ci", "choose", "coherence", "diversity", "forwards_per_token", "markdown_table",
           "matched_bon_n", "paired_markdown", "paired_test", "perplexity", "run", "select", "sign_flip_p", "split_list",
           "split_stream", "summarise", "summary_row", "win_indicators", "win_rates"]
