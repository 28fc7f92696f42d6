"""Tiny configs that switch on every feature of the newer families at once, for the cache tests."""

import math

from tqjax.models import ModelConfig

# Gemma 2 and 3 together: (1 + w) norms, sqrt(d) embedding scale, tanh GeGLU, sandwich norms, q/k
# norms (Gemma 3, Qwen3), a score scale, both soft caps, sliding and full layers alternating with a
# window of 4 (shorter than every test sequence), and a local RoPE base for the sliding layers.
GEMMA = ModelConfig.tiny("llama", n_layers=3, norm_offset=1.0, embed_scale=True, activation="gelu_new",
                         sandwich_norms=True, qk_norm=True, attn_scale=12 ** -0.5, attn_softcap=5.0,
                         final_softcap=3.0, sliding_window=4, layer_types=("sliding", "full", "sliding"),
                         rope_theta=1e6, rope_scaling=("linear", 8.0), rope_local_theta=1e4, tie_embeddings=True)

# Phi-3.5 style: every layer windowed (5), longrope whose original context (8) the tests pass, so
# tokens before and after it rotate with different factors.
PHI3 = ModelConfig.tiny("llama", sliding_window=5, rope_scaling=(
    "longrope", (1.0, 1.5, 2.0, 1.1), (3.0, 4.0, 5.0, 6.0), 8, math.sqrt(1 + math.log(16) / math.log(8))))

FAMILIES = {"gemma": GEMMA, "phi3": PHI3}
