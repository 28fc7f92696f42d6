"""Chat prompts: lists of ``{"role", "content"}`` messages, rendered as transformers renders them.

A chat prompt becomes token ids exactly as ``tokenizer.apply_chat_template(messages,
add_generation_prompt=True, tokenize=True)`` makes them: the tokenizer's Jinja chat template
renders the conversation followed by the assistant's turn header, and the text is tokenised
without adding special tokens again (a template that wants a BOS writes it itself).
"""

from __future__ import annotations

from collections.abc import Mapping


def is_messages(prompt) -> bool:
    """Whether ``prompt`` is meant as a chat prompt (a list or tuple holding a dict)."""
    return isinstance(prompt, (list, tuple)) and any(isinstance(m, Mapping) for m in prompt)


def check_messages(messages) -> list[dict]:
    """``messages`` as a list of dicts; ValueError naming the first message that is not
    ``{"role": str, "content": str, ...}`` (other keys pass through to the template)."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"expected a non-empty list of {{\"role\", \"content\"}} objects, "
                         f"got {messages!r:.80}")
    for j, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"message {j} must be an object with \"role\" and \"content\", "
                             f"got {type(message).__name__}")
        if not isinstance(message.get("role"), str) or not message["role"]:
            raise ValueError(f"message {j} has no \"role\" (a non-empty string), got "
                             f"{message.get('role')!r}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"message {j} (role {message['role']!r}) needs a \"content\" string, "
                             f"got {type(message.get('content')).__name__}")
    return [dict(m) for m in messages]


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer, messages) -> list[int]:
    """Token ids of ``messages`` with ``tokenizer``'s chat template and the generation prompt.

    Raises ValueError when the tokenizer is None or has no chat template, when a message is
    malformed, and when the template itself refuses the conversation (its message is kept).
    """
    messages = check_messages(messages)
    if tokenizer is None:
        raise ValueError("there is no tokenizer to render chat messages with")
    if not has_chat_template(tokenizer):
        raise ValueError(f"the tokenizer ({type(tokenizer).__name__}) has no chat template (no "
                         f"\"chat_template\" in tokenizer_config.json, no chat_template.jinja)")
    from jinja2 import TemplateError

    try:
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    except (TemplateError, ValueError, TypeError, KeyError) as e:   # e.g. raise_exception() in the template
        raise ValueError(f"the chat template failed: {type(e).__name__}: {e}") from e
    ids = encoded["input_ids"] if isinstance(encoded, Mapping) else encoded   # transformers 5: BatchEncoding
    return [int(t) for t in ids]
