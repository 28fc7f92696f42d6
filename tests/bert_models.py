"""Random tiny BERT encoders (transformers' BertModel) with a word-level vocabulary, for encoder tests."""

from __future__ import annotations

import json
import os

import torch
import transformers

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("the a was is not very good bad great awful food service room screen battery story game staff "
         "review of my on thoughts quick sushi bar hotel phone earbuds racing wireless airport motel shower "
         "and but it too really so quite fine poor loved hated slow fast clean dirty loud quiet cheap price "
         "would again never always . , : !").split()
VOCAB = SPECIAL + WORDS[:61 - len(SPECIAL)]      # 61 entries, a prime like the decoder tests


def build(seed: int = 0, pooler: bool = True, act: str = "gelu", max_positions: int = 64):
    """A random BertModel with every parameter perturbed (biases and norms included)."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=max_positions, hidden_act=act)
    model = transformers.BertModel(config, add_pooling_layer=pooler)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def save(model, path, pooling: str | None = None, max_seq_length: int | None = None, lowercase: bool = False) -> str:
    """Save ``model`` with a WordPiece vocabulary; with ``pooling`` ("cls" / "mean") as a
    sentence-transformers folder."""
    path = str(path)
    model.save_pretrained(path, safe_serialization=True)
    with open(os.path.join(path, "vocab.txt"), "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    transformers.BertTokenizerFast(vocab_file=os.path.join(path, "vocab.txt"), do_lower_case=True).save_pretrained(path)
    if pooling is not None:
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                   {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
        json.dump(modules, open(os.path.join(path, "modules.json"), "w"))
        os.makedirs(os.path.join(path, "1_Pooling"), exist_ok=True)
        json.dump({"word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls",
                   "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
                   "pooling_mode_mean_sqrt_len_tokens": False},
                  open(os.path.join(path, "1_Pooling", "config.json"), "w"))
        json.dump({"max_seq_length": max_seq_length or 64, "do_lower_case": lowercase},
                  open(os.path.join(path, "sentence_bert_config.json"), "w"))
    return path
