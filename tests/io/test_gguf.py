"""llama.cpp GGUF files: logits and token ids against transformers' own GGUF loading, and bad files."""


import gguf
import numpy as np
import pytest
import torch
import transformers

import tqjax
from tqjax.cli.main import main as cli
from tqjax.io.chat import render_chat
from tests.io import gguf_files as G

Q = gguf.GGMLQuantizationType
IDS = np.array([[5, 17, 99, 200, 3, 44, 250, 7, 1, 2, 300, 359], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 100, 101]])
TEXTS = ["Hello world", "The year 2024 had 365 days; pi is 3.14159.", "  leading spaces and\ttabs\n\nnewlines  ",
         "Ünïcödé téxt, 日本語のテキスト", "emoji 🙂🚀👩‍👩‍👧 mixed", "<|im_start|>user\nhi there<|im_end|>\n",
         "code: def f(x): return x ** 2  # comment", "it's, they're, we'll, I'd"]


@pytest.fixture(scope="module")
def tok():
    return G.bpe()


@pytest.fixture(scope="module")
def llama(tok):
    return G.hf_model("llama", tok.get_vocab_size())


def torch_logits(model, ids=IDS):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy()


def hf_gguf(path):
    folder, name = G.folder_and_name(path)
    return transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)


def test_f32_llama_matches_the_original_model(llama, tok, tmp_path):
    path = G.write(tmp_path / "m.gguf", llama, tok)
    model = tqjax.load(path)
    c = model.config
    assert (c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.mlp_dim) == (360, 256, 2, 4, 2, 64, 512)
    assert (c.bos_token_id, c.eos_token_id, c.pad_token_id, c.tie_embeddings) == (1, (2,), 2, False)
    assert model.params["embed_VD"].dtype == np.float32
    np.testing.assert_allclose(np.asarray(tqjax.logits(model, IDS)), torch_logits(llama), atol=1e-4)


@pytest.mark.parametrize("qtype", [Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q6_K], ids=lambda q: q.name)
def test_quantized_types_match_transformers(llama, tok, tmp_path, qtype):
    path = G.write(tmp_path / f"m-{qtype.name}.gguf", llama, tok, qtype=qtype)
    ours = np.asarray(tqjax.logits(tqjax.load(path), IDS))
    np.testing.assert_allclose(ours, torch_logits(hf_gguf(path)), atol=1e-4)
    if qtype in (Q.F16, Q.BF16, Q.Q8_0):      # close to the unquantised model too
        np.testing.assert_allclose(ours, torch_logits(llama), atol=0.2)


def test_reader_agrees_with_gguf_package(llama, tok, tmp_path):
    from tqjax.io.gguf import dequantize
    from tqjax.io.gguf_reader import read_gguf

    path = G.write(tmp_path / "m.gguf", llama, tok, qtype=Q.Q4_K)
    meta, tensors = read_gguf(path)
    reader = gguf.GGUFReader(path)
    assert meta == {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert [t.name for t in tensors] == [t.name for t in reader.tensors]
    for ours, theirs in zip(tensors, reader.tensors):
        expected = gguf.quants.dequantize(theirs.data, theirs.tensor_type)
        np.testing.assert_array_equal(dequantize(ours), expected)


def test_qwen2_has_biases_and_no_row_permutation(tok, tmp_path):
    qwen = G.hf_model("qwen2", tok.get_vocab_size(), seed=1)
    path = G.write(tmp_path / "q.gguf", qwen, tok, arch="qwen2", pre="qwen2")
    model = tqjax.load(path)
    assert model.config.qkv_bias
    ours = np.asarray(tqjax.logits(model, IDS))
    np.testing.assert_allclose(ours, torch_logits(qwen), atol=1e-4)
    np.testing.assert_allclose(ours, torch_logits(hf_gguf(path)), atol=1e-4)


def test_no_output_tensor_means_tied_embeddings(tok, tmp_path):
    tied = G.hf_model("llama", tok.get_vocab_size(), tied=True, seed=2)
    model = tqjax.load(G.write(tmp_path / "t.gguf", tied, tok, qtype=Q.Q8_0))
    assert model.config.tie_embeddings and "head_DV" not in model.params
    np.testing.assert_allclose(np.asarray(tqjax.logits(model, IDS)), torch_logits(tied), atol=0.2)


def test_dtype_casts(llama, tok, tmp_path):
    model = tqjax.load(G.write(tmp_path / "m.gguf", llama, tok, qtype=Q.Q4_0), dtype="bfloat16")
    assert model.params["layers"]["q_DNH"].dtype == np.dtype("bfloat16")


@pytest.mark.parametrize("pre,digits", [("smollm", True), ("gpt2", False)])
def test_token_ids_match_transformers_gguf_tokenizer(llama, tmp_path, pre, digits):
    source = G.bpe(digits=digits)
    path = G.write(tmp_path / "m.gguf", llama, source, pre=pre)
    ours = tqjax.load(path).tokenizer
    folder, name = G.folder_and_name(path)
    theirs = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == theirs.encode(text), text
        assert ids == source.encode(text).ids, text     # the tokenizer the file was written from
        assert ours.decode(ids) == text
    assert (ours.bos_token, ours.eos_token, ours.pad_token, ours.unk_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>")
    chat = [{"role": "user", "content": "What is 2+2? 🙂"}]
    assert render_chat(ours, chat) == theirs.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)["input_ids"]


def test_add_bos_token_and_end_of_turn_stop_id(llama, tok, tmp_path):
    path = G.write(tmp_path / "m.gguf", llama, tok, add_bos=True, extra_meta={"tokenizer.ggml.eot_token_id": 0})
    model = tqjax.load(path)
    assert model.tokenizer.encode("hi")[0] == 1
    assert model.config.eos_token_id == (0, 2)


def test_convert_command_writes_a_tqjax_checkpoint(llama, tok, tmp_path):
    path = G.write(tmp_path / "m.gguf", llama, tok, qtype=Q.Q4_1)
    assert cli(["convert", path, str(tmp_path / "out")]) == 0
    gguf_model, saved = tqjax.load(path), tqjax.load(str(tmp_path / "out"))
    assert saved.config == gguf_model.config
    np.testing.assert_array_equal(np.asarray(tqjax.logits(saved, IDS)), np.asarray(tqjax.logits(gguf_model, IDS)))
    for text in TEXTS:
        assert saved.tokenizer.encode(text) == gguf_model.tokenizer.encode(text)
    assert saved.tokenizer.chat_template == G.TEMPLATE


# ---- bad files ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good(llama, tok, tmp_path_factory):
    return G.write(tmp_path_factory.mktemp("good") / "good.gguf", llama, tok, qtype=Q.Q8_0)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tqjax.load(str(tmp_path / "nothing.gguf"))


@pytest.mark.parametrize("keep", [0.5, 0.999, 0.01])
def test_truncated_file(good, tmp_path, keep):
    data = open(good, "rb").read()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(tqjax.CheckpointError, match="corrupt or truncated GGUF file"):
        tqjax.load(str(path))


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(tqjax.CheckpointError, match="not a GGUF file"):
        tqjax.load(str(path))


def test_unknown_ggml_type_id(good, tmp_path):
    data = bytearray(open(good, "rb").read())
    name = b"blk.0.ffn_up.weight"
    at = data.index(name) + len(name)
    n_dims = int.from_bytes(data[at:at + 4], "little")
    type_at = at + 4 + 8 * n_dims
    data[type_at:type_at + 4] = (99).to_bytes(4, "little")
    path = tmp_path / "bad.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(tqjax.CheckpointError, match="corrupt or truncated GGUF file.*99"):
        tqjax.load(str(path))


def test_unsupported_quantization_type(llama, tok, tmp_path):
    tensors = G.gguf_tensors(llama, "llama")
    rows, cols = tensors["blk.0.ffn_up.weight"].shape
    tensors["blk.0.ffn_up.weight"] = (np.zeros((rows, cols // 32 * 18), np.uint8), Q.IQ4_NL)
    path = G.write(tmp_path / "iq.gguf", llama, tok, tensors=tensors)
    with pytest.raises(tqjax.UnsupportedModelError, match="blk.0.ffn_up.weight has ggml type IQ4_NL"):
        tqjax.load(path)


def test_unsupported_architecture(llama, tok, tmp_path):
    path = G.write(tmp_path / "f.gguf", llama, tok, arch="falcon")
    with pytest.raises(tqjax.UnsupportedModelError, match="unsupported GGUF architecture 'falcon'"):
        tqjax.load(path)


def test_unhandled_architecture_setting(llama, tok, tmp_path):
    path = G.write(tmp_path / "moe.gguf", llama, tok, extra_meta={"llama.expert_count": 8})
    with pytest.raises(tqjax.UnsupportedModelError, match="unhandled llama setting.*llama.expert_count"):
        tqjax.load(path)


def test_missing_tensor_is_named(llama, tok, tmp_path):
    path = G.write(tmp_path / "m.gguf", llama, tok, drop=("blk.1.ffn_up.weight",))
    with pytest.raises(tqjax.CheckpointError, match=r"missing tensor\(s\): blk.1.ffn_up.weight"):
        tqjax.load(path)


def test_unexpected_tensor_is_named(llama, tok, tmp_path):
    tensors = dict(G.gguf_tensors(llama, "llama"), **{"rope_freqs.weight": np.ones(32, np.float32)})
    path = G.write(tmp_path / "m.gguf", llama, tok, tensors=tensors)
    with pytest.raises(tqjax.UnsupportedModelError, match="unexpected tensor rope_freqs.weight"):
        tqjax.load(path)


def test_unknown_pre_tokenizer(llama, tok, tmp_path):
    path = G.write(tmp_path / "m.gguf", llama, tok, pre="some-new-model")
    with pytest.raises(tqjax.UnsupportedModelError, match="tokenizer.ggml.pre='some-new-model' is not supported"):
        tqjax.load(path)


def test_sentencepiece_vocabulary_is_refused(llama, tok, tmp_path):
    path = G.write(tmp_path / "m.gguf", llama, tok, model_type="llama")
    with pytest.raises(tqjax.UnsupportedModelError, match="tokenizer model 'llama' is not supported"):
        tqjax.load(path)
