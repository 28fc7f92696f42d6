"""The word-level tokenizer: one word, one token; fixed special ids; offline save and load."""

import transformers

from tqjax.world import generator as g
from tqjax.world.tokenizer import train_tokenizer, world_tokenizer


def test_special_ids_and_size():
    tok = world_tokenizer()
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert len(tok) == len(g.vocabulary()) + 4
    assert sorted(tok.get_vocab().values()) == list(range(len(tok)))


def test_every_word_is_one_token_and_decoding_round_trips():
    tok = world_tokenizer()
    for text in g.sample_texts(300, seed=2):
        ids = tok(text).input_ids
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert tok.convert_ids_to_tokens(ids[1:]) == text.split()
        assert tok.unk_token_id not in ids
        assert tok.decode(ids[1:]) == text
        assert tok.decode(ids, skip_special_tokens=True) == text.removesuffix(" <eos>")


def test_punctuation_and_case_are_split_and_unknown_words_are_unk():
    tok = world_tokenizer()
    toks = tok.convert_ids_to_tokens(tok("The Pizza was GOOD!! zyzzyva,",
                                         add_special_tokens=False).input_ids)
    assert toks == ["the", "pizza", "was", "good", "!", "!", "<unk>", ","]


def test_training_is_deterministic_and_uses_the_given_texts():
    texts = ["b a a . <eos>", "c a b"]
    tok = train_tokenizer(texts)
    assert tok.get_vocab() == train_tokenizer(texts).get_vocab()
    assert tok.convert_ids_to_tokens(list(range(len(tok)))) == [
        "<pad>", "<bos>", "<eos>", "<unk>", "a", "b", ".", "c"]


def test_save_and_load_with_auto_tokenizer(tmp_path):
    tok = world_tokenizer(save_dir=tmp_path)
    assert (tmp_path / "tokenizer.json").exists()
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = g.sample_texts(1, seed=9)[0]
    assert loaded(text).input_ids == tok(text).input_ids
    assert (loaded.pad_token, loaded.bos_token, loaded.eos_token, loaded.unk_token) == (
        "<pad>", "<bos>", "<eos>", "<unk>")
    batch = loaded(["the food was good", "the food"], padding=True).input_ids
    assert batch[1][-1] == loaded.pad_token_id == 0
