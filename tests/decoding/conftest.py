"""Fixtures shared by the decoding tests: enumerable toys and random tiny transformers."""

from __future__ import annotations

import pytest

from tests.decoding.decode_helpers import PROMPTS, TQParams, toy_params, transformer_params, with_eos


@pytest.fixture(scope="session")
def toys():
    """(TQParams of sft/baseline/reward toys with EOS = 4, a second reward toy)."""
    return toy_params()


@pytest.fixture(scope="session", params=["llama", "gpt2"])
def tiny(request):
    """(arch, TQParams of random tiny transformers, a second reward model), EOS chosen so that
    some rows end early: the token greedy SFT emits third for the first test prompt. Llama and
    GPT-2 by default; a test names the architectures it runs on with
    ``@pytest.mark.parametrize("tiny", [...], indirect=True)`` (``"neox"`` too)."""
    from tqjax.api.decode import decode
    from tqjax.decoding import DecodeConfig
    params, rbl = transformer_params(request.param)
    out = decode(params, PROMPTS, DecodeConfig(method="sft", max_new_tokens=4))
    eos = out.tokens[0][min(2, len(out.tokens[0]) - 1)]
    params = TQParams(*(with_eos(m, eos) for m in (params.sft, params.baseline, params.reward)))
    return request.param, params, with_eos(rbl, eos)


@pytest.fixture(scope="session")
def prompts():
    return [list(p) for p in PROMPTS]
