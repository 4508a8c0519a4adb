"""Serializers: naming them on the command line, and telling when two encode alike.

- `add_serde_arguments(parser)` / `serde_from_name(name)`: the `--old-serde/--new-serde`
  options shared by `dualsaver check`, `repair` and `backfill`; an unknown name is refused
  (`check_serde_names`), never read as the default.
- `serde_key(serde)`: a token equal for two serializers only when bytes one wrote decode to
  the same values through the other, so the backfill may copy stored bytes unchanged instead
  of decoding and re-encoding them. None means "not known to be safe": always re-encode.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

SERDES = ("default", "encrypted")


def add_serde_arguments(p: argparse.ArgumentParser) -> None:
    for side in ("old", "new"):
        p.add_argument(
            f"--{side}-serde",
            choices=SERDES,
            default="default",
            help=f"the {side} store's serializer: default (JsonPlus) or encrypted (AES,"
            " key from $LANGGRAPH_AES_KEY)",
        )


def check_serde_names(names: tuple[str, ...] | list[str]) -> None:
    """ValueError naming the first unknown serializer name (a typo must not fall back to the
    default serializer), before a store is opened or a process started."""
    for name in names:
        if name not in SERDES:
            raise ValueError(f"unknown serializer {name!r} (known: {', '.join(SERDES)})")


def serde_from_name(name: str) -> Any:
    """The serializer a store was written with ("default" or "encrypted"); None lets the
    saver use its default. ValueError for any other name."""
    check_serde_names([name])
    if name == "encrypted":
        from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

        if not os.environ.get("LANGGRAPH_AES_KEY"):
            raise ValueError("--*-serde encrypted needs the AES key in $LANGGRAPH_AES_KEY")
        return EncryptedSerializer.from_pycryptodome_aes()
    return None


def _allowlist(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    return tuple(sorted(map(repr, value)))


def serde_key(serde: Any) -> tuple | None:
    """Equal keys mean: pass stored (type, bytes) through unchanged.

    A plain `JsonPlusSerializer` (exactly that class, no custom ext hook) is keyed by its
    whole configuration, so two default serializers match while a stricter allow-list or
    pickle fallback on one side does not. Any other serializer (an encrypted one, a
    subclass, a wrapper) matches only itself: the very same object decodes what it wrote.
    """
    if serde is None:
        return None
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    if type(serde) is JsonPlusSerializer and not getattr(serde, "_custom_unpack_ext_hook", True):
        return (
            "jsonplus",
            bool(serde.pickle_fallback),
            _allowlist(getattr(serde, "_allowed_json_modules", None)),
            _allowlist(getattr(serde, "_allowed_msgpack_modules", None)),
        )
    return ("object", id(serde))
