"""Any saver by factory: ``python:package.module:factory`` as a store URL.

This is how a checkpointer dualsaver has no adapter for is migrated (MongoDB, DynamoDB,
Firestore, Cosmos DB savers from PyPI, or an in-house one): the application already knows
how to build it, so the URL names the function that does. ``factory()`` may return

- a saver (a `BaseCheckpointSaver`),
- a context manager of one (``SomeSaver.from_conn_string(...)``), entered here and exited
  when the store is closed,
- an async context manager of one (for `aopen_saver`; `open_saver` refuses it),
- or, from an ``async def`` factory, any of these once awaited (`aopen_saver` only).

A target's saver gets its own ``setup()`` (when it has one), as every other target does; a
source is used as it comes.

A factory saver is read and written through its public API only (`PublicNativeStore`), even
when dualsaver knows its class: that is the contract a factory URL makes, and the results and
reports say so (the copy is approximate: `CheckpointTuple` carries no write `task_path` and
no stored `idx`, so the writes of parallel branches may be reordered). A saver dualsaver has
a native adapter for is better opened by its own URL scheme, for exact copies.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from dualsaver.errors import StoreURLError, describe_error
from dualsaver.stores._public import PublicNativeStore


def load_factory(target: str) -> Any:
    """The callable named ``package.module:factory``."""
    module_name, _, name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        where = (" (looked on sys.path; the dualsaver command adds the current directory, elsewhere set"
                 " PYTHONPATH)" if isinstance(exc, ModuleNotFoundError) else "")
        raise StoreURLError(
            f"cannot open python:{target}: cannot import {module_name} ({describe_error(exc)}){where}"
        ) from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise StoreURLError(f"cannot open python:{target}: {module_name} has no callable {name!r}")
    return factory


def _checked(target: str, made: Any) -> Any:
    if not isinstance(made, BaseCheckpointSaver):
        raise StoreURLError(
            f"cannot open python:{target}: the factory gave a {type(made).__name__}, not a checkpoint saver"
        )
    if getattr(made, "native_store", None) is None:  # a saver's own adapter wins
        public = PublicNativeStore(made)
        # attached to the factory's saver: what `native_for` asks for first
        made.native_store = made.anative_store = lambda: public  # type: ignore[attr-defined]
    return made


def _no_serde(target: str, serde: Any) -> None:
    if serde is not None:
        raise StoreURLError(f"cannot open python:{target}: a factory builds its saver, serializer included")


@contextmanager
def open_factory_saver(target: str, *, serde: Any = None, setup: bool = False) -> Iterator[Any]:
    """The saver ``factory()`` returns, or enters (a context manager), until exit; with
    `setup`, its ``setup()`` first."""
    _no_serde(target, serde)
    made = load_factory(target)()
    with ExitStack() as stack:
        if inspect.isawaitable(made) or (hasattr(made, "__aenter__") and not hasattr(made, "__enter__")):
            if inspect.iscoroutine(made):
                made.close()
            raise StoreURLError(f"cannot open python:{target}: its factory is async; open it with aopen_saver")
        if hasattr(made, "__enter__") and not isinstance(made, BaseCheckpointSaver):
            made = stack.enter_context(made)
        saver = _checked(target, made)
        if setup and callable(getattr(saver, "setup", None)):
            saver.setup()
        yield saver


@asynccontextmanager
async def aopen_factory_saver(target: str, *, serde: Any = None, setup: bool = False) -> AsyncIterator[Any]:
    """The saver ``factory()`` returns (awaited, if it must be), or enters, until exit."""
    _no_serde(target, serde)
    made = load_factory(target)()
    if inspect.isawaitable(made):
        made = await made
    async with AsyncExitStack() as stack:
        if not isinstance(made, BaseCheckpointSaver):
            if hasattr(made, "__aenter__"):
                made = await stack.enter_async_context(made)
            elif hasattr(made, "__enter__"):
                made = stack.enter_context(made)
        saver = _checked(target, made)
        if setup and callable(getattr(saver, "setup", None)):
            done = saver.setup()  # the official async savers' setup is a coroutine
            if inspect.isawaitable(done):
                await done
        yield saver
