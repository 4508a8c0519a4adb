"""Serializers: naming them on the command line, and telling when two encode alike.

- `add_serde_arguments(parser)` / `serde_from_name(name)`: the `--old-serde/--new-serde`
  options shared by `dualsaver check`, `repair` and `backfill`; an unknown name is refused
  (`check_serde_names`), never read as the default.
- `serde_key(serde)`: a token equal for two serializers only when bytes one wrote decode to
  the same values through the other, so the backfill may copy stored bytes unchanged instead
  of decoding and re-encoding them (and, for two encrypted stores under one key, instead of
  decrypting and encrypting them). None means "not known to be safe": always re-encode.
- `plaintext(serde)`: what the check's byte path digests of stored bytes (`Plaintext`): an
  encrypted store's values decrypted, so it compares by bytes with a plain one.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
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

    - A plain `JsonPlusSerializer` (exactly that class, no custom ext hook) is keyed by its
      whole configuration, so two default serializers match while a stricter allow-list or
      pickle fallback on one side does not.
    - LangGraph's `EncryptedSerializer` (exactly that class) over such a serializer is keyed
      by that serializer's key and its cipher's (`_cipher_key`): two stores opened with
      serializers of their own under one AES key match, and their ciphertext is copied as
      it is.
    - Any other serializer (a subclass, a wrapper) matches only itself: the very same object
      decodes what it wrote.
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
    if (inner := _encrypted_jsonplus(serde)) is not None and (cipher := _cipher_key(serde.cipher)) is not None:
        return ("encrypted", inner, cipher)
    return ("object", id(serde))


def _encrypted_jsonplus(serde: Any) -> tuple | None:
    """For LangGraph's `EncryptedSerializer` (exactly that class) over a plain JsonPlus
    serializer, that serializer's key; else None."""
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    if type(serde) is not EncryptedSerializer:
        return None
    inner = serde_key(serde.serde)
    return inner if inner is not None and inner[0] == "jsonplus" else None


# Ciphers seen, each with the number of its class: ciphers that decrypt what each other
# encrypts share one. Weak references: a cipher holds its key, which is not kept longer here.
_ciphers: list[tuple[weakref.ref[Any], int]] = []
_ciphers_lock = threading.Lock()
_cipher_numbers = itertools.count(1)


def _cipher_key(cipher: Any) -> int | None:
    """A number equal for two ciphers (LangGraph's `CipherProtocol`) when each decrypts what
    the other encrypts: found out once a cipher, by a random probe sent both ways against one
    cipher of each class seen (an authenticated cipher such as AES-EAX, LangGraph's default,
    refuses a probe under another key or mode). None for a cipher that cannot be weakly
    referenced: it matches only itself."""
    with _ciphers_lock:
        _ciphers[:] = [(ref, n) for ref, n in _ciphers if ref() is not None]
        for ref, n in _ciphers:
            if ref() is cipher:
                return n
        try:
            entry = weakref.ref(cipher)
        except TypeError:
            return None
        classes = {n: ref() for ref, n in reversed(_ciphers)}  # one cipher of each class seen
        number = next((n for n, known in classes.items() if _each_decrypts_the_other(known, cipher)), None)
        number = next(_cipher_numbers) if number is None else number
        _ciphers.append((entry, number))
        return number


def _each_decrypts_the_other(a: Any, b: Any) -> bool:
    probe = os.urandom(32)
    try:
        return b.decrypt(*a.encrypt(probe)) == probe and a.decrypt(*b.encrypt(probe)) == probe
    except Exception:  # a MAC that does not verify, a cipher name the other does not know
        return False


@dataclass(frozen=True, slots=True)
class Plaintext:
    """How the check's byte path reads a store's stored (type, bytes): `open` gives the bytes
    its serializer wrote before any encryption, and `key` is the `serde_key` of the serializer
    that wrote them.

    LangGraph's `EncryptedSerializer` stores "msgpack+aes" and ciphertext. Opening decrypts it
    with the store's own cipher: the very step its `loads_typed` takes before its inner
    serializer decodes the plaintext. So when that inner serializer is a plain JsonPlus one,
    equal plaintext decodes alike on both sides, and an encrypted store compares by bytes with
    a plain one (or with one encrypted under another key). Decryption fails loudly on
    tampered bytes (the check then reads the thread decoded, which reports it). Any other
    serializer's stored bytes are their own plaintext.

    Two stores whose ciphers are of one class (`_cipher_key`: each decrypts what the other
    encrypts) hold the same ciphertext where a backfill copied it as it was: what one store's
    cipher decrypted, the other's finds in `_opened` instead of decrypting it again (AES-EAX
    costs about 150 us a value)."""

    key: tuple | None
    cipher: Any = None  # the EncryptedSerializer's cipher; None: nothing to decrypt
    cipher_class: int | None = None  # `_cipher_key`'s number for it: plaintexts shared in `_opened`

    def open(self, typed: tuple[str, bytes]) -> tuple[str, bytes]:
        tag, data = typed
        if self.cipher is None or "+" not in tag:
            return typed  # EncryptedSerializer reads an unencrypted value as its inner serializer does
        inner_tag, cipher_name = tag.split("+", 1)
        if self.cipher_class is None:
            return inner_tag, self.cipher.decrypt(cipher_name, data)
        seen = (self.cipher_class, tag, bytes(data))
        if (opened := _opened.get(seen)) is None:
            opened = self.cipher.decrypt(cipher_name, data)
            if len(_opened) >= OPENED_KEPT:
                _opened.clear()
            _opened[seen] = opened
        return inner_tag, opened


# Plaintexts decrypted lately, by (cipher class, stored tag, ciphertext): a check reads a batch
# of threads from one store and then from the other, and this holds about a batch's writes.
OPENED_KEPT = 8192
_opened: dict[tuple[int, str, bytes], bytes] = {}


@contextlib.contextmanager
def plaintexts_forgotten() -> Iterator[None]:
    """Forget the plaintexts `Plaintext.open` kept, once the block (a check) is over: decrypted
    conversation values do not outlive the check that read them."""
    try:
        yield
    finally:
        _opened.clear()


def plaintext(serde: Any) -> Plaintext:
    """A store's `Plaintext`: decrypting for an `EncryptedSerializer` (exactly that class) over a
    plain JsonPlus serializer, the stored bytes as they are for any other."""
    if (inner := _encrypted_jsonplus(serde)) is not None:
        return Plaintext(inner, serde.cipher, _cipher_key(serde.cipher))
    return Plaintext(serde_key(serde))
