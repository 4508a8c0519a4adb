"""Keeping secrets out of text: every URL, message and log line that may hold a password
goes through here before anyone sees it. Imports nothing of ours.

- `redact(url)`: the URL with its password and every secret-named query value replaced by ``***``.
- `secrets_of(url)` / `scrub(message, url)`: the URL's password and secret-named query
  values, and a one-line message with them (raw and percent-encoded) masked, for driver
  errors that quote their connection string.
- `redact_text(text)`: every URL password and ``password=...`` style value in free text masked.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

MASK = "***"

# scheme://userinfo@host...: the userinfo ends at the last "@" before the path.
_AUTHORITY = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#]*)")
# A name that holds a secret, whatever prefixes it: libpq's `sslpassword`, redis-py's
# `sentinel_password`, an `auth_token`.
_SECRET_NAME = r"\w*?(?:password|passwd|pwd|secret|token|api[_-]?key)"
_QUERY_SECRET = re.compile(rf"(?i)([?&](?:{_SECRET_NAME}|pass)=)([^&#]*)")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_KEY_VALUE = re.compile(rf"(?i)\b({_SECRET_NAME})(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;'\"]+)")


def redact(url: str) -> str:
    """`url` with any password replaced by ``***``; safe to print and log."""
    text = str(url)
    match = _AUTHORITY.match(text)
    if match:
        authority = match.group("authority")
        if "@" in authority:
            userinfo, hostpart = authority.rsplit("@", 1)
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":" + MASK
            elif match.group("scheme").lower().startswith("redis"):
                userinfo = MASK  # redis://secret@host: a bare userinfo is the password
            authority = f"{userinfo}@{hostpart}"
        text = match.group("scheme") + authority + text[match.end() :]
    else:  # not a URL: a libpq key=value string ("host=db password=..."), say
        return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _QUERY_SECRET.sub(r"\1" + MASK, text)


def secrets_of(url: str) -> list[str]:
    """The password in `url` and the value of every query parameter named as a secret, so
    error messages can be scrubbed of them."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    found = [unquote(password)] if password else []
    return found + [unquote(m.group(2)) for m in _QUERY_SECRET.finditer(url) if m.group(2)]


def password_of(url: str) -> str | None:
    """The password in `url` (else its first secret query parameter), if any."""
    return next(iter(secrets_of(url)), None)


def scrub(message: object, url: str) -> str:
    """One line of `message` with the URL's secrets (raw and quoted) replaced by ``***``."""
    line = " ".join(str(message).split())  # one line, whatever the driver printed
    for found in secrets_of(url):
        for secret in {found, quote(found, safe="")}:
            line = line.replace(secret, MASK)
    return line


def redact_text(text: str) -> str:
    """`text` with URL passwords and `password=...` style values masked."""
    text = _URL.sub(lambda m: redact(m.group(0)), text)
    return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
