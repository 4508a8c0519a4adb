"""pgvector's `vector` / `halfvec` arrays as query parameters in binary, without the pgvector
package: a batch's embeddings travel as one binary array (each vector packed by `struct`, no
text to format on our side or to parse on the server's)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import cache
from typing import Any

from psycopg.adapt import Dumper
from psycopg.pq import Format

_ARRAY_HEAD = struct.Struct(">iiIii")  # dimensions (1), has nulls (0), element oid, length, lower bound
_EMPTY_HEAD = struct.Struct(">iiI")
_CODES = {"vector": ("f", 4), "halfvec": ("e", 2)}  # pgvector's element: float4, float2


class VectorArray:
    """The embeddings of a batch as one `vector[]` / `halfvec[]` parameter."""

    __slots__ = ("kind", "vectors")

    def __init__(self, kind: str, vectors: Sequence[Sequence[float]]) -> None:
        if kind not in _CODES:
            raise ValueError(f"no binary form for pgvector type {kind!r}")
        self.kind, self.vectors = kind, vectors


def pack(kind: str, vectors: Sequence[Sequence[float]], element_oid: int) -> bytes:
    """PostgreSQL's binary array of pgvector values (each: int16 dims, int16 unused, the floats)."""
    if not vectors:
        return _EMPTY_HEAD.pack(0, 0, element_oid)
    code, size = _CODES[kind]
    parts = [_ARRAY_HEAD.pack(1, 0, element_oid, len(vectors), 1)]
    for v in vectors:
        dims = len(v)
        parts.append(struct.pack(f">iHH{dims}{code}", 4 + dims * size, dims, 0, *v))
    return b"".join(parts)


@cache
def dumper(element_oid: int, array_oid: int) -> type[Dumper]:
    """A psycopg dumper of `VectorArray` for the database whose pgvector types have these oids."""

    class VectorArrayDumper(Dumper):
        format = Format.BINARY
        oid = array_oid

        def dump(self, obj: Any) -> bytes:
            return pack(obj.kind, obj.vectors, element_oid)

    return VectorArrayDumper


TYPE_OIDS_SQL = "SELECT t.oid, t.typarray FROM pg_type t WHERE t.oid = to_regtype(%s)"
