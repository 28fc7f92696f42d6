"""The config policy itself: every field transformers' forward can read is either read or ignored."""

import dataclasses
import inspect
import re

import pytest
import transformers
from transformers import CONFIG_MAPPING

from tqjax.io import hf_config

TYPES = sorted(hf_config.ARCH)
MODELING = {"gemma3_text": "gemma3"}     # the modeling file a type lives in


def classified(model_type: str) -> set:
    return hf_config.READ[model_type] | hf_config.IGNORED_ALL | hf_config.IGNORED.get(model_type, set())


@pytest.mark.parametrize("model_type", TYPES)
def test_every_config_field_is_read_or_ignored(model_type):
    """A field a new transformers version adds to the config class fails here until it is classified."""
    fields = {f.name for f in dataclasses.fields(CONFIG_MAPPING[model_type])}
    assert fields - classified(model_type) == set()


@pytest.mark.parametrize("model_type", TYPES)
def test_every_attribute_the_modeling_file_reads_is_classified(model_type):
    """Also attributes read with getattr(config, ...) that are not dataclass fields (e.g. Phi-3's head_dim)."""
    module = getattr(transformers.models, MODELING.get(model_type, model_type))
    source = inspect.getsource(getattr(module, f"modeling_{MODELING.get(model_type, model_type)}"))
    read = set(re.findall(r"config\.([a-z_][a-z0-9_]*)\b(?!\()", source))
    read |= set(re.findall(r"getattr\(\s*(?:self\.)?config,\s*\"([a-z_]+)\"", source))
    read = {CONFIG_MAPPING[model_type].attribute_map.get(a, a) for a in read}   # GPT-2's aliases
    if model_type == "gemma3_text":     # the multimodal wrapper's own fields (refused by model_type)
        read -= {"text_config", "vision_config", "image_token_id", "mm_tokens_per_image"}
    assert read - classified(model_type) - {"num_labels"} == set()


def test_no_stale_entries():
    """Every field named as read exists in transformers' config class or is read through getattr."""
    for model_type in TYPES:
        fields = {f.name for f in dataclasses.fields(CONFIG_MAPPING[model_type])}
        extra = hf_config.READ[model_type] - fields - {"head_dim"}
        assert extra == set(), (model_type, extra)
