"""Which depth of SmolLM2 should the real task's reward model r keep? A linear probe at every depth.

For each of the 4,000 polarity sentences of the real task (``tqjax sentiment setup``), the residual
stream at the last token after each block of SmolLM2-135M-Instruct is kept; a logistic regression
(features standardised on the training sentences, L2 weight chosen on the 400 validation
sentences) is fitted at every ``--every``-th depth, and its validation and test accuracies are
printed. ``tqjax sentiment train`` keeps the depth whose probe does best on validation
(`TrainRecipe.reward_layers`), fine-tunes the top blocks below it, and starts its head from a probe.

    .venv/bin/python benchmarks/rm_depth.py [--cache ~/.cache/tqjax] [--every 3]   # ~8 min, 2 cores
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.optimize import minimize

import tqjax
from tqjax.models.model import causal_blocks
from tqjax.models.transformer import embed
from tqjax.sentiment.data import read_splits
from tqjax.sentiment.setup import SentimentPaths
from tqjax.sentiment.judge import example_texts
from tqjax.sentiment.train import _encode as encode, check_cache

L2S = (1e-3, 1e-2, 1e-1)


def last_token_streams(model, texts, batch: int = 32) -> np.ndarray:
    """float32 ``[N, L, D]``: the residual stream at each text's last token after every block."""
    config = model.config

    @jax.jit
    def run(params, tokens_BT, lengths_B):
        pos_BT = jnp.broadcast_to(jnp.arange(tokens_BT.shape[1]), tokens_BT.shape)
        x_BTD, out = embed(config, params, tokens_BT, pos_BT), []
        for layer in range(config.n_layers):
            x_BTD = causal_blocks(config, jax.tree.map(lambda a: a[layer:layer + 1], params["layers"]), x_BTD, layer)
            out.append(jnp.take_along_axis(x_BTD, (lengths_B - 1)[:, None, None], axis=1)[:, 0])
        return jnp.stack(out, 1)

    tokens_NT, lengths_N = encode(model.tokenizer, texts)
    order = np.argsort(lengths_N)
    out = np.zeros((len(texts), config.n_layers, config.d_model), np.float32)
    for lo in range(0, len(texts), batch):
        rows = order[lo:lo + batch]
        cut = -(-int(lengths_N[rows].max()) // 16) * 16          # a few shapes only
        padded = np.concatenate([rows, np.full(batch - len(rows), rows[0])])
        x = run(model.params, jnp.asarray(tokens_NT[padded, :cut]), jnp.asarray(lengths_N[padded]))
        out[rows] = np.asarray(x)[:len(rows)]
    return out


def probe(train_ND, y_train, l2: float):
    """A standardised L2 logistic regression with a bias: the score function of new rows."""
    mu, sd = train_ND.mean(0), train_ND.std(0) + 1e-6
    x_ND, signs_N = jnp.asarray((train_ND - mu) / sd), jnp.asarray(2.0 * y_train - 1)

    def objective(w):
        return jnp.mean(jnp.logaddexp(0.0, -signs_N * (x_ND @ w[:-1] + w[-1]))) + l2 * jnp.sum(w[:-1] ** 2)

    w = np.asarray(minimize(objective, jnp.zeros(x_ND.shape[1] + 1), method="BFGS", options=dict(maxiter=300)).x)
    return lambda rows_ND: ((rows_ND - mu) / sd) @ w[:-1] + w[-1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default="~/.cache/tqjax")
    p.add_argument("--every", type=int, default=3, help="probe every EVERY-th depth")
    a = p.parse_args(argv)
    paths = check_cache(os.path.expanduser(a.cache))
    model, splits = tqjax.load(paths.checkpoint), read_splits(SentimentPaths(os.path.expanduser(a.cache)).sentences_csv)
    start = time.perf_counter()
    streams, labels = {}, {}
    for name in ("train", "val", "test"):
        examples = getattr(splits, name)
        streams[name] = last_token_streams(model, example_texts(examples))
        labels[name] = np.asarray([e.label for e in examples])
    print(f"# Linear probes of SmolLM2's last-token residual stream, {len(labels['train'])} training sentences "
          f"(features {time.perf_counter() - start:.0f} s)\n")
    print("| after block | validation | test | L2 |\n|---:|---:|---:|---:|")
    accuracy = lambda f, name, d: float(np.mean((f(streams[name][:, d]) > 0) == (labels[name] == 1)))  # noqa: E731
    for depth in range(a.every, model.config.n_layers + 1, a.every):
        fits = {l2: probe(streams["train"][:, depth - 1], labels["train"], l2) for l2 in L2S}
        l2 = max(fits, key=lambda k: accuracy(fits[k], "val", depth - 1))
        print(f"| {depth} | {accuracy(fits[l2], 'val', depth - 1):.3f} | {accuracy(fits[l2], 'test', depth - 1):.3f} "
              f"| {l2:g} |", flush=True)


if __name__ == "__main__":
    main()
