"""Read the key/value header of a GGUF file without touching its tensors.

`gguf.GGUFReader` parses every tensor and token array up front (seconds for a 150k-token
vocabulary); `codey model info` only needs the scalar keys, so arrays are skipped, not decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gguf import GGUFValueType, LlamaFileType

from codey.errors import ModelCorrupt

_MAGIC = b"GGUF"
_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}  # fmt: skip


@dataclass(frozen=True)
class ArrayInfo:
    """An array value, summarised: its element type and length."""

    element_type: str
    length: int


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    tensor_count: int
    metadata: dict[str, object]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def block_count(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.block_count")
        return int(value) if isinstance(value, int) else None

    @property
    def quantisation(self) -> str:
        file_type = self.metadata.get("general.file_type")
        if not isinstance(file_type, int):
            return "unknown"
        try:
            return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
        except ValueError:
            return f"file type {file_type}"

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return str(value) if value is not None else None


def read_header(path: Path) -> GGUFHeader:
    """Parse the header of the GGUF file at `path`; ModelCorrupt if it is not one."""
    try:
        with path.open("rb") as f:
            if f.read(4) != _MAGIC:
                raise ModelCorrupt(f"{path} is not a GGUF file (wrong magic bytes).")
            version, tensor_count, kv_count = struct.unpack("<IQQ", _read(f, 20))
            metadata: dict[str, object] = {}
            for _ in range(kv_count):
                key = _read_string(f)
                metadata[key] = _read_value(f, GGUFValueType(_unpack(f, "<I")))
    except (struct.error, ValueError, EOFError, UnicodeDecodeError) as exc:
        raise ModelCorrupt(f"{path} has a damaged GGUF header: {exc}") from exc
    return GGUFHeader(version, tensor_count, metadata)


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError("file ends inside the header")
    return data


def _unpack(f: BinaryIO, fmt: str) -> int:
    return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]


def _read_string(f: BinaryIO) -> str:
    return _read(f, _unpack(f, "<Q")).decode("utf-8")


def _read_value(f: BinaryIO, kind: GGUFValueType) -> object:
    if kind is GGUFValueType.STRING:
        return _read_string(f)
    if kind is GGUFValueType.ARRAY:
        element = GGUFValueType(_unpack(f, "<I"))
        length = _unpack(f, "<Q")
        _skip_array(f, element, length)
        return ArrayInfo(element.name.lower(), length)
    fmt = _SCALARS[kind]
    return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]


def _skip_array(f: BinaryIO, element: GGUFValueType, length: int) -> None:
    if element in _SCALARS:
        f.seek(struct.calcsize(_SCALARS[element]) * length, 1)
        return
    for _ in range(length):
        if element is GGUFValueType.STRING:
            f.seek(_unpack(f, "<Q"), 1)
        else:
            _read_value(f, element)
