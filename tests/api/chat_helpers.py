"""Offline chat tokenizers (byte-level BPE, Zephyr-, Llama-3- and Mistral-style Jinja templates)
and tiny random models saved with them."""

from __future__ import annotations

import jax
import tokenizers
import transformers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

import tqjax
from tests.decoding.decode_helpers import spread
from tqjax.models import ModelConfig, init_model

# The published templates, verbatim (HuggingFaceH4/zephyr-7b-beta, Meta-Llama-3-8B-Instruct,
# Mistral-7B-Instruct-v0.1).
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
          "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' "
          "+ message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ "
          "'<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and "
          "add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
          "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
          "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
          "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
           "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
           "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ "
           "'[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
           "{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and "
           "assistant roles are supported!') }}{% endif %}{% endfor %}")

STYLES = {   # template, bos, eos, other special tokens, whether plain encode() prepends the bos
    "zephyr": (ZEPHYR, "<s>", "</s>", ["<|user|>", "<|assistant|>", "<|system|>"], False),
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|eot_id|>",
               ["<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"], True),
    "mistral": (MISTRAL, "<s>", "</s>", ["[INST]", "[/INST]"], True),
}

CORPUS = ["You are a helpful assistant.", "Write a short review of the pizza place.",
          "The food was great and the service was quick!", "How are you today?",
          "I am fine, thank you. And you?", "Tell me about the sushi bar, in two sentences."] * 4

CONVERSATIONS = [
    [{"role": "user", "content": "Write a short review of the pizza place."}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "How are you today?  "}],
    [{"role": "user", "content": "How are you today?"},
     {"role": "assistant", "content": "I am fine, thank you."},
     {"role": "user", "content": "Tell me about the sushi bar — in two sentences."}],
]


def chat_tokenizer(style: str, template: str | None = "default") -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (~300 ids) with ``style``'s special tokens and chat template
    (``template=None``: none)."""
    default, bos, eos, specials, add_bos = STYLES[style]
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", bos, eos, *specials],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B:1", special_tokens=[(bos, tok.token_to_id(bos))])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                                pad_token="<pad>")
    fast.chat_template = default if template == "default" else template
    return fast


def save_chat_models(root, style: str, roles=("sft",), seed: int = 0) -> dict:
    """Random tiny Llamas sharing ``style``'s tokenizer, saved with `tqjax.save` under
    ``root/<role>``; returns role -> folder. Roles whose name starts with "reward" are reward models."""
    tokenizer = chat_tokenizer(style)
    folders = {}
    for i, role in enumerate(roles):
        kind = "reward" if role.startswith("reward") else "lm"
        config = ModelConfig.tiny("llama", kind=kind, vocab_size=len(tokenizer),
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        k_init, k_spread = jax.random.split(jax.random.key(seed + i))
        model = spread(init_model(config, k_init, tokenizer=tokenizer), k_spread)
        folders[role] = str(root / role)
        tqjax.save(model, folders[role])
    return folders
