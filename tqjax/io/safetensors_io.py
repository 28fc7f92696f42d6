"""A strict, allocation-safe safetensors reader (numpy memory maps, header validated first)."""

from __future__ import annotations

import json
import math
import os
import struct

import ml_dtypes
import numpy as np

from tqjax.io.errors import CheckpointError

MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def read_header(path: str) -> tuple[dict, int]:
    """The tensor table of a safetensors file and the byte offset where its data starts."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header length)")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > min(size - 8, MAX_HEADER_BYTES):
            raise CheckpointError(
                f"{path}: corrupt safetensors header length {header_len} (file has {size} bytes); "
                "the file is truncated or not safetensors")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    data_start, data_size = 8 + header_len, size - 8 - header_len
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = DTYPES[info["dtype"]], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has a corrupt or unsupported entry {info!r}") from None
        expected = math.prod(shape) * np.dtype(dtype).itemsize
        if not 0 <= begin <= end <= data_size or end - begin != expected:
            raise CheckpointError(
                f"{path}: tensor {name!r} lies outside the file or has the wrong size "
                f"(offsets {begin}..{end}, {data_size} data bytes, needs {expected}); the file is truncated or corrupt")
    return header, data_start


def read_tensors(path: str) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, as read-only numpy arrays backed by a memory map."""
    header, data_start = read_header(path)
    if not header:
        return {}
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        out[name] = data[begin:end].view(DTYPES[info["dtype"]]).reshape(info["shape"])
    return out
