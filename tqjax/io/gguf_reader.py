"""The GGUF container: metadata and tensor table parsed in one pass, tensor bytes memory-mapped.

gguf's own ``GGUFReader`` builds a numpy view for every string of the file (a 49k-token vocabulary
and its merges are ~100k of them: about 20 s for SmolLM2-135M on a 2-core machine); this reads
the same layout (GGUF versions 2 and 3, little-endian) with ``struct`` from an ``mmap`` in well
under a second, and takes the type enums and block sizes from the ``gguf`` package. Any read past
the end of the file or malformed field is a `CheckpointError` that says the file is corrupt or
truncated.
"""

from __future__ import annotations

import dataclasses
import mmap
import struct

import numpy as np

from tqjax.io.errors import CheckpointError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
# GGUF value type -> struct format of a scalar (8 string, 9 array)
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One tensor of the table: ``shape`` in numpy order, ``data`` its raw bytes (uint8)."""

    name: str
    qtype: object          # gguf.GGMLQuantizationType
    shape: tuple
    data: np.ndarray


class _Cursor:
    def __init__(self, buf, path: str):
        self.buf, self.pos, self.path = buf, 0, path

    def unpack(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise CheckpointError(f"{self.path}: corrupt or truncated GGUF file (the header ends at byte {len(self.buf)})")
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return values if len(fmt) > 1 else values[0]

    def string(self) -> str:
        n = self.unpack("Q")
        if self.pos + n > len(self.buf):
            raise CheckpointError(f"{self.path}: corrupt or truncated GGUF file (a string of {n} bytes at byte "
                                  f"{self.pos} passes the end of the file, {len(self.buf)} bytes)")
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CheckpointError(f"{self.path}: corrupt GGUF file (a string is not UTF-8: {e})") from None

    def value(self, kind: int):
        if kind in SCALARS:
            return self.unpack(SCALARS[kind])
        if kind == 8:
            return self.string()
        if kind == 9:
            item, count = self.unpack("IQ")
            if item in SCALARS and item != 7:
                dtype = np.dtype("<" + SCALARS[item])
                end = self.pos + count * dtype.itemsize
                if end > len(self.buf):
                    raise CheckpointError(f"{self.path}: corrupt or truncated GGUF file (an array of {count} values "
                                          f"passes the end of the file)")
                values = np.frombuffer(self.buf, dtype, count, self.pos).tolist()
                self.pos = end
                return values
            return [self.value(item) for _ in range(count)]
        raise CheckpointError(f"{self.path}: corrupt GGUF file (unknown metadata value type {kind} at byte {self.pos})")


def read_gguf(path: str) -> tuple[dict, list[Tensor]]:
    """``(metadata, tensors)`` of a GGUF file; the tensors' ``data`` map the file (read-only)."""
    import gguf

    with open(path, "rb") as f:
        if f.read(4) != MAGIC:
            f.seek(0)
            raise CheckpointError(f"{path}: not a GGUF file (starts with {f.read(4)!r}, expected {MAGIC!r})")
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as e:
            raise CheckpointError(f"{path}: corrupt or truncated GGUF file ({e})") from None
    cur = _Cursor(buf, path)
    cur.pos = 4
    version, n_tensors, n_kv = cur.unpack("IQQ")
    if version not in VERSIONS:
        raise CheckpointError(f"{path}: GGUF version {version} is not supported (tqjax reads versions 2 and 3; "
                              "a big-endian file also shows up here)")
    meta = {}
    for _ in range(n_kv):
        key = cur.string()
        meta[key] = cur.value(cur.unpack("I"))
    table = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.unpack("I")
        if n_dims > 8:
            raise CheckpointError(f"{path}: corrupt GGUF file (tensor {name} has {n_dims} dimensions)")
        dims = tuple(cur.unpack("Q") for _ in range(n_dims))
        kind, offset = cur.unpack("IQ")
        try:
            qtype = gguf.GGMLQuantizationType(kind)
        except ValueError:
            raise CheckpointError(f"{path}: corrupt or truncated GGUF file (tensor {name} has unknown ggml type id "
                                  f"{kind})") from None
        table.append((name, qtype, tuple(reversed(dims)), offset))
    align = int(meta.get("general.alignment", 32))
    start = -(-cur.pos // align) * align
    tensors = []
    for name, qtype, shape, offset in table:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        if shape and shape[-1] % block:
            raise CheckpointError(f"{path}: corrupt GGUF file (tensor {name} rows of {shape[-1]} are not whole "
                                  f"{qtype.name} blocks of {block})")
        nbytes = int(np.prod(shape, dtype=np.int64)) // block * size
        begin = start + offset
        if begin + nbytes > len(buf):
            raise CheckpointError(f"{path}: corrupt or truncated GGUF file (tensor {name} needs bytes up to "
                                  f"{begin + nbytes}, the file has {len(buf)})")
        data = np.frombuffer(buf, np.uint8, nbytes, begin)
        tensors.append(Tensor(name, qtype, shape, data))
    return meta, tensors
