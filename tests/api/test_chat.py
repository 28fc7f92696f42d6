"""Chat prompts: rendered exactly as transformers' ``apply_chat_template(messages,
add_generation_prompt=True, tokenize=True)`` renders them, then decoded like any prompt."""

import numpy as np
import pytest
import transformers

import tqjax
from tests.api.chat_helpers import CONVERSATIONS, STYLES, chat_tokenizer, save_chat_models
from tqjax.decoding import engine
from tqjax.api.decode import prepare, prompt_ids
from tqjax.io.chat import render_chat

CONFIG = tqjax.DecodeConfig(method="tq", k=3, horizon=2, max_new_tokens=5)
ACCEPTED = [(style, i) for style in STYLES for i in range(len(CONVERSATIONS))
            if not (style == "mistral" and CONVERSATIONS[i][0]["role"] == "system")]


@pytest.fixture(scope="module")
def sft_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat_sft")
    return {style: save_chat_models(root / style, style)["sft"] for style in STYLES}


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    folders = save_chat_models(tmp_path_factory.mktemp("chat_llama3"), "llama3",
                               roles=("sft", "baseline", "reward"))
    return tqjax.TQParams(**{role: tqjax.load(folder) for role, folder in folders.items()})


def reference_ids(tokenizer, messages):
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(encoded["input_ids"])


@pytest.mark.parametrize("style, i", ACCEPTED)
def test_ids_equal_transformers_apply_chat_template(sft_folders, style, i):
    messages = CONVERSATIONS[i]
    reference = transformers.AutoTokenizer.from_pretrained(sft_folders[style], local_files_only=True)
    model = tqjax.load(sft_folders[style])
    expected = reference_ids(reference, messages)
    assert prompt_ids(model.tokenizer, messages).tolist() == expected
    assert render_chat(model.tokenizer, messages) == expected
    assert expected == reference_ids(chat_tokenizer(style), messages)   # the template survived tqjax.save


def test_templates_render_as_published(sft_folders):
    user = [{"role": "user", "content": "How are you today?"}]
    render = {style: transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
              .apply_chat_template(user, add_generation_prompt=True, tokenize=False)
              for style, folder in sft_folders.items()}
    assert render["zephyr"] == "<|user|>\nHow are you today?</s>\n<|assistant|>\n"
    assert render["llama3"] == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                                "How are you today?<|eot_id|><|start_header_id|>assistant"
                                "<|end_header_id|>\n\n")
    assert render["mistral"] == "<s>[INST] How are you today? [/INST]"


@pytest.mark.parametrize("style", ["llama3", "mistral"])
def test_bos_written_by_the_template_is_not_added_twice(sft_folders, style):
    model = tqjax.load(sft_folders[style])
    bos = model.tokenizer.bos_token_id
    assert model.tokenizer.encode("How are you today?")[0] == bos    # plain encode() adds one
    ids = prompt_ids(model.tokenizer, CONVERSATIONS[0]).tolist()
    assert ids[0] == bos and ids.count(bos) == 1


def test_decoding_messages_equals_decoding_their_ids(params):
    conversations = [CONVERSATIONS[0], CONVERSATIONS[2]]
    ids = [reference_ids(params.sft.tokenizer, m) for m in conversations]
    from_messages = tqjax.decode(params, conversations, CONFIG)
    from_ids = tqjax.decode(params, ids, CONFIG)
    assert from_messages.tokens == from_ids.tokens
    assert from_messages.texts == from_ids.texts
    for field in ("rewards", "kl", "logp_sft", "log_ratio"):
        np.testing.assert_array_equal(getattr(from_messages, field), getattr(from_ids, field))


def test_mixed_batch_of_strings_ids_and_messages(params):
    tokenizer = params.sft.tokenizer
    text, ids, messages = "Write a short review of the pizza place.", [1, 40, 41, 42], CONVERSATIONS[1]
    mixed = tqjax.decode(params, [text, ids, messages], CONFIG)
    as_ids = tqjax.decode(params, [tokenizer.encode(text), ids, reference_ids(tokenizer, messages)], CONFIG)
    assert mixed.tokens == as_ids.tokens
    np.testing.assert_array_equal(mixed.rewards, as_ids.rewards)
    _, token_lists = prepare(params, [text, ids, messages], CONFIG)
    assert token_lists[2].tolist() == reference_ids(tokenizer, messages)


def _without_engine(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the engine ran before the prompts were checked")
    monkeypatch.setattr(engine, "decode_arrays", refuse)


USER = {"role": "user", "content": "How are you today?"}


@pytest.mark.parametrize("prompt, error, message", [
    ([{"content": "hi"}], ValueError, 'prompt 1 (chat messages): message 0 has no "role"'),
    ([USER, {"role": "", "content": "hi"}], ValueError, 'message 1 has no "role" (a non-empty string)'),
    ([{"role": "user", "content": ["hi"]}], ValueError,
     "prompt 1 (chat messages): message 0 (role 'user') needs a \"content\" string, got list"),
    ([{"role": "user"}], ValueError, 'message 0 (role \'user\') needs a "content" string, got NoneType'),
    ([USER, 7], ValueError, 'message 1 must be an object with "role" and "content", got int'),
    (USER, TypeError, "prompt 1 is a single message (a dict); a chat prompt is a list of messages"),
    ([], ValueError, "prompt 1 is empty"),
])
def test_malformed_messages(params, monkeypatch, prompt, error, message):
    _without_engine(monkeypatch)
    with pytest.raises(error) as info:
        tqjax.decode(params, [CONVERSATIONS[0], prompt], CONFIG)
    assert message in str(info.value)


def test_no_chat_template(params, monkeypatch):
    _without_engine(monkeypatch)
    plain = params.sft.replace(tokenizer=chat_tokenizer("llama3", template=None))
    with pytest.raises(ValueError) as info:
        tqjax.decode(tqjax.TQParams(plain, params.baseline, params.reward), ["a string", CONVERSATIONS[0]], CONFIG)
    assert str(info.value) == ("prompt 1 is a list of chat messages but the SFT model's tokenizer "
                               "has no chat template; pass a string or token ids instead")
    with pytest.raises(ValueError, match="tokenizer .* has no chat template"):
        render_chat(plain.tokenizer, CONVERSATIONS[0])


def test_no_tokenizer(params, monkeypatch):
    _without_engine(monkeypatch)
    bare = tqjax.TQParams(params.sft.replace(tokenizer=None), params.baseline, params.reward)
    with pytest.raises(ValueError) as info:
        tqjax.decode(bare, [[5, 6], CONVERSATIONS[0]], CONFIG)
    assert str(info.value) == ("prompt 1 is a list of chat messages but the SFT model has no "
                               "tokenizer to render it with; pass a string or token ids instead")
    with pytest.raises(ValueError, match="there is no tokenizer"):
        render_chat(None, CONVERSATIONS[0])


def test_template_that_refuses_the_conversation(sft_folders, monkeypatch):
    _without_engine(monkeypatch)
    sft = tqjax.load(sft_folders["mistral"])
    with pytest.raises(ValueError) as info:
        tqjax.decode(tqjax.TQParams(sft), [CONVERSATIONS[1]], CONFIG.replace(method="sft"))
    assert str(info.value) == ("prompt 0 (chat messages): the chat template failed: TemplateError: "
                               "Conversation roles must alternate user/assistant/user/assistant/...")


def test_render_takes_a_plain_id_list_too():
    class Transformers4Tokenizer:   # apply_chat_template(tokenize=True) returned list[int] before v5
        chat_template = "{{ messages }}"

        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            assert add_generation_prompt and tokenize and messages == CONVERSATIONS[0]
            return [3, 4, 5]

    assert render_chat(Transformers4Tokenizer(), CONVERSATIONS[0]) == [3, 4, 5]
