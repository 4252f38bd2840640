"""A fast GGUF header reader for packaging.

Why our own: the `gguf` package's reader builds numpy views of every array (the 49k-entry vocabulary of
SmolLM2 alone) and takes ~2.4 s; packaging only needs the scalar key-values, short arrays and the tensor
shapes. This reader mmaps the file, skips long arrays by length arithmetic (string arrays need one
length read per element) and never touches tensor data, so a multi-GB file is read in tens of ms.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from dmr.errors import CorruptModelError, ModelFileNotFoundError, NotAModelFileError

#: Arrays longer than this are skipped, as DMR's GGUF extraction does.
MAX_ARRAY = 50

_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_STRING = 8
_ARRAY = 9
_FLOAT32 = 6

# ggml type -> (elements per block, bytes per block); ggml.c type_traits.
_GGML_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 36),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
}

# llama_ftype -> name, as gguf-parser-go prints general.file_type.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
}


@dataclass
class GGUFHeader:
    version: int
    #: Key-values; arrays longer than MAX_ARRAY are left out. float32 values stay tagged (see format_value).
    kv: dict[str, Any] = field(default_factory=dict)
    n_parameters: int = 0
    tensor_bytes: int = 0
    #: Keys of the arrays left out for their length (Ollama's /api/show lists them as null).
    skipped: list[str] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        return str(self.kv.get("general.architecture", ""))

    @property
    def context_length(self) -> int | None:
        value = self.kv.get(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def file_type(self) -> str:
        ft = self.kv.get("general.file_type")
        if isinstance(ft, int):
            return FILE_TYPES.get(ft, f"unknown({ft})")
        return ""


class Float32(float):
    """A float read from a GGUF float32 field: printed with float32's shortest representation."""


class _Cursor:
    __slots__ = ("buf", "max_array", "pos")

    def __init__(self, buf: mmap.mmap, max_array: int = MAX_ARRAY) -> None:
        self.buf = buf
        self.pos = 0
        self.max_array = max_array

    def unpack(self, fmt: str, size: int) -> Any:
        if self.pos + size > len(self.buf):
            raise CorruptModelError("GGUF header is truncated")
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def u32(self) -> int:
        return int(self.unpack("<I", 4))

    def u64(self) -> int:
        return int(self.unpack("<Q", 8))

    def string(self) -> str:
        n = self.u64()
        if self.pos + n > len(self.buf):
            raise CorruptModelError("GGUF string runs past the end of the file")
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.u64()  # not `self.pos += self.u64()`: that adds to the position read before the length
        self.pos += n

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype = self.u32()
            count = self.u64()
            if count > self.max_array:
                self.skip_array(etype, count)
                return _SKIPPED
            return [self.value(etype) for _ in range(count)]
        scalar = _SCALARS.get(vtype)
        if scalar is None:
            raise CorruptModelError(f"unknown GGUF value type {vtype}")
        v = self.unpack(*scalar)
        return Float32(v) if vtype == _FLOAT32 else v

    def skip_array(self, etype: int, count: int) -> None:
        if etype == _STRING:
            for _ in range(count):
                self.skip_string()
        elif etype == _ARRAY:
            for _ in range(count):
                inner = self.u32()
                self.skip_array(inner, self.u64())
        else:
            scalar = _SCALARS.get(etype)
            if scalar is None:
                raise CorruptModelError(f"unknown GGUF array type {etype}")
            self.pos += scalar[1] * count
        if self.pos > len(self.buf):
            raise CorruptModelError("GGUF array runs past the end of the file")


_SKIPPED = object()


def read_header(path: str | Path, max_array: int = MAX_ARRAY) -> GGUFHeader:
    """Read key-values and tensor shapes of one GGUF file (no tensor data); arrays longer than `max_array`
    are skipped (their keys listed in `skipped`)."""
    p = Path(path)
    try:
        f = p.open("rb")
    except FileNotFoundError as exc:
        raise ModelFileNotFoundError(f"{p}: no such file") from exc
    except IsADirectoryError as exc:
        raise NotAModelFileError(f"{p} is a directory, not a GGUF file") from exc
    with f:
        size = p.stat().st_size
        if size < 24:
            raise NotAModelFileError(f"{p} is not a GGUF file (too short)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != b"GGUF":
                raise NotAModelFileError(f"{p} is not a GGUF file (bad magic)")
            cur = _Cursor(buf, max_array)
            cur.pos = 4
            version = cur.u32()
            if version not in (2, 3):
                raise CorruptModelError(f"{p}: unsupported GGUF version {version}")
            n_tensors = cur.u64()
            n_kv = cur.u64()
            header = GGUFHeader(version=version)
            for _ in range(n_kv):
                key = cur.string()
                value = cur.value(cur.u32())
                if value is not _SKIPPED:
                    header.kv[key] = value
                else:
                    header.skipped.append(key)
            params = 0
            nbytes = 0
            for _ in range(n_tensors):
                cur.skip_string()
                n_dims = cur.u32()
                if n_dims > 8:
                    raise CorruptModelError(f"{p}: tensor with {n_dims} dimensions")
                n = 1
                for _ in range(n_dims):
                    n *= cur.u64()
                ttype = cur.u32()
                cur.u64()  # data offset
                params += n
                block, bsize = _GGML_TYPES.get(ttype, (1, 0))
                nbytes += n // block * bsize
            header.n_parameters = params
            header.tensor_bytes = nbytes
            return header


def format_value(value: Any) -> str:
    """Stringify a GGUF value the way DMR's config does (Go's %v; arrays joined with ", ")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Float32):
        return _format_float32(float(value))
    if isinstance(value, float):
        return _format_go_float(repr(value))
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def _format_float32(value: float) -> str:
    # Shortest decimal that round-trips through float32, like Go's FormatFloat(f, 'g', -1, 32).
    if value != value or value in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(value)]
    packed = struct.pack("<f", value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if struct.pack("<f", float(text)) == packed:
            return _format_go_float(text)
    return _format_go_float(repr(value))


def _format_go_float(shortest: str) -> str:
    """Python's shortest digits -> Go's %v layout: exponent form below 1e-4 or from 1e21, 2-digit exponent."""
    d = Decimal(shortest)
    if d == 0:
        return "0"
    sign, digits, exp = d.normalize().as_tuple()
    assert isinstance(exp, int)
    sci = len(digits) + exp - 1
    text = "".join(map(str, digits))
    prefix = "-" if sign else ""
    if sci < -4 or sci >= 21:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if sci < 0 else '+'}{abs(sci):02d}"
    return prefix + format(abs(d.normalize()), "f")
