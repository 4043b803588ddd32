"""Reader for CTranslate2's `model.bin` binary format (no ctranslate2 dependency).

Layout (little endian, as written by `ctranslate2.specs.ModelSpec._serialize`)::

    u32 binary_version                      # 6 for current converters
    str spec_name, u32 spec_revision        # version >= 2
    u32 num_variables, then per variable:
        str name, u8 rank, u32 shape[rank],
        u8 dtype_id (version >= 4, else float32), u32 num_bytes, bytes data
    u32 num_aliases, then per alias: str alias, str target   # version >= 3

where `str` is a u16 length (including a trailing NUL) followed by the UTF-8 bytes and the NUL. Quantized
weights are stored as int8/int16 arrays next to a float `<name>_scale` variable; `dequantize` undoes that.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# Order of ctranslate2's DataType enum (include/ctranslate2/types.h); numpy lacks bfloat16: read as uint16.
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_NUMPY_DTYPES = {
    "float32": np.float32,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "float16": np.float16,
    "bfloat16": np.uint16,
}


class _Cursor:
    """Sequential little-endian reads over a byte buffer."""

    def __init__(self, data: bytes | memoryview):
        self.data = memoryview(data)
        self.offset = 0

    def unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def string(self) -> str:
        (length,) = self.unpack("H")
        text = bytes(self.data[self.offset : self.offset + length - 1]).decode("utf-8")
        self.offset += length
        return text

    def take(self, num_bytes: int) -> memoryview:
        if self.offset + num_bytes > len(self.data):
            raise ValueError(f"truncated CTranslate2 model: need {num_bytes} bytes at offset {self.offset}")
        chunk = self.data[self.offset : self.offset + num_bytes]
        self.offset += num_bytes
        return chunk


def read_ctranslate2_model(
    source: str | Path | bytes | memoryview, prefix: str | None = None
) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse a CTranslate2 `model.bin` (a path or its bytes) into `(header, variables)`.

    `header` holds binary_version, spec_name, spec_revision and aliases `{alias: target}`; `variables` maps
    names such as "encoder/conv1/weight" to arrays in their stored dtype (bfloat16, which numpy lacks, is
    widened to float32). The arrays are read-only views into the data (reading costs no copies; they keep
    it in memory while any of them lives). `prefix` keeps only variables (and aliases) whose name starts
    with it. Scalars are 0-d arrays.
    """
    data = Path(source).read_bytes() if isinstance(source, str | Path) else source
    cursor = _Cursor(data)
    (version,) = cursor.unpack("I")
    if not 1 <= version <= 6:
        raise ValueError(f"not a CTranslate2 model.bin, or an unsupported binary version ({version})")
    header: dict = {"binary_version": version, "spec_name": None, "spec_revision": None, "aliases": {}}
    if version >= 2:
        header["spec_name"] = cursor.string()
        (header["spec_revision"],) = cursor.unpack("I")

    variables: dict[str, np.ndarray] = {}
    (num_variables,) = cursor.unpack("I")
    for _ in range(num_variables):
        name = cursor.string()
        (rank,) = cursor.unpack("B")
        shape = cursor.unpack("I" * rank)
        dtype = DTYPES[cursor.unpack("B")[0]] if version >= 4 else "float32"
        (num_bytes,) = cursor.unpack("I") if version >= 4 else (int(np.prod(shape)) * 4,)
        chunk = cursor.take(num_bytes)
        if prefix is None or name.startswith(prefix):
            array = np.frombuffer(chunk, dtype=_NUMPY_DTYPES[dtype]).reshape(shape)
            variables[name] = _bfloat16_to_float32(array) if dtype == "bfloat16" else array

    if version >= 3:
        (num_aliases,) = cursor.unpack("I")
        for _ in range(num_aliases):
            alias, target = cursor.string(), cursor.string()
            if prefix is None or alias.startswith(prefix):
                header["aliases"][alias] = target
    return header, variables


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 values held as uint16 bits -> float32 (bfloat16 is the top half of a float32)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def dequantize(variables: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Float32 value of `name`, undoing int8/int16 quantization by `<name>_scale` (per row) if present."""
    array = variables[name]
    scale = variables.get(f"{name}_scale")
    if scale is None or not np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32)
    scale = scale.astype(np.float32)
    if scale.ndim == 1 and array.ndim >= 2:
        scale = scale.reshape(-1, *([1] * (array.ndim - 1)))
    return array.astype(np.float32) / scale
