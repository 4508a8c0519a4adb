"""The libpq calls of a tiered read's probe that psycopg makes with the GIL let go, made
holding it: the probe then waits for no other thread.

psycopg's C implementation releases the GIL (`with nogil`) around PQsendQueryPrepared,
PQsendQueryParams and PQisBusy, and around PQconsumeInput in its fetch. On a nonblocking
connection (psycopg's are) none of them waits: they copy into libpq's buffer and make one
nonblocking send, or parse what is buffered. But each release puts the caller at the back
of the GIL's queue, behind threads that hold it for as long as they compute (a replica's
request threads decoding hot answers). A probe let it go five times. bench_tiered, 8
threads reading 171 KiB states from Redis: the hot read alone 3.9 ms (p50); with the probe
as psycopg makes its calls 6.1 ms (1.58x); with them made here 4.7 ms (1.21x).

The library is the one psycopg loaded: the file this process mapped, opened again, so the
loader hands back that same library (`ctypes.PyDLL` calls keep the GIL). Where it cannot
be named for certain (no /proc/self/maps, or more than one libpq loaded) `library()` is
None and the probe makes psycopg's calls.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Sequence
from typing import Any

from psycopg import errors, pq

MAPS = "/proc/self/maps"


@functools.cache
def library() -> ctypes.PyDLL | None:
    """The libpq psycopg uses, its calls holding the GIL; None when it cannot be named."""
    try:
        with open(MAPS) as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps if "/libpq" in line}
    except OSError:
        return None
    paths = {p for p in paths if os.path.basename(p).startswith(("libpq.so", "libpq-"))}
    if len(paths) != 1:
        return None
    try:
        lib = ctypes.PyDLL(paths.pop())  # a file replaced since it was loaded reads "... (deleted)"
    except OSError:
        return None
    if lib.PQlibVersion() != pq.version():  # not the library psycopg reports: leave it
        return None
    text = ctypes.c_char_p
    lib.PQisBusy.argtypes = [ctypes.c_void_p]
    lib.PQsendQueryPrepared.argtypes = [ctypes.c_void_p, text, ctypes.c_int, ctypes.POINTER(text),
                                        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.PQsendQueryParams.argtypes = [ctypes.c_void_p, text, ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(text),
                                      ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    return lib


def _pointer(pgconn: Any) -> int:
    ptr = pgconn.pgconn_ptr
    if ptr is None:
        raise errors.OperationalError("the connection is closed")
    return int(ptr)


def _texts(args: Sequence[bytes | None]) -> Any:
    return (ctypes.c_char_p * len(args))(*args)


def send_query_prepared(pgconn: Any, name: bytes, args: Sequence[bytes | None]) -> None:
    """`pgconn.send_query_prepared(name, args)` (text parameters and results)."""
    if (lib := library()) is None:
        return pgconn.send_query_prepared(name, args)
    if lib.PQsendQueryPrepared(_pointer(pgconn), name, len(args), _texts(args), None, None, 0) != 1:
        raise errors.OperationalError(f"sending prepared query failed: {pq.error_message(pgconn)}")


def send_query_params(pgconn: Any, sql: bytes, args: Sequence[bytes | None]) -> None:
    """`pgconn.send_query_params(sql, args)` (text parameters and results)."""
    if (lib := library()) is None:
        return pgconn.send_query_params(sql, args)
    if lib.PQsendQueryParams(_pointer(pgconn), sql, len(args), None, _texts(args), None, None, 0) != 1:
        raise errors.OperationalError(f"sending query and params failed: {pq.error_message(pgconn)}")


def is_busy(pgconn: Any) -> bool:
    """`pgconn.is_busy()`: whether the result read so far is still incomplete."""
    if (lib := library()) is None:
        return bool(pgconn.is_busy())
    return bool(lib.PQisBusy(_pointer(pgconn)))
