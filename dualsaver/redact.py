"""Keeping secrets out of text: every URL, message and log line that may hold a password
goes through here before anyone sees it. Imports nothing of ours.

- `redact(url)`: the URL with its password replaced by ``***`` (authority and query).
- `password_of(url)` / `scrub(message, url)`: the URL's password, and a one-line message with
  it (raw and percent-encoded) masked, for driver errors that quote their connection string.
- `redact_text(text)`: every URL password and ``password=...`` style value in free text masked.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

MASK = "***"

# scheme://userinfo@host...: the userinfo ends at the last "@" before the path.
_AUTHORITY = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#]*)")
_QUERY_PASSWORD = re.compile(r"(?i)([?&](?:password|pass|pwd)=)[^&#]*")
_QUERY_PASSWORD_VALUE = re.compile(r"(?i)[?&](?:password|pass|pwd)=([^&#]*)")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_KEY_VALUE = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;'\"]+)"
)


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
    return _QUERY_PASSWORD.sub(r"\1" + MASK, text)


def password_of(url: str) -> str | None:
    """The password in `url`, if any, so error messages can be scrubbed of it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        return unquote(password)
    match = _QUERY_PASSWORD_VALUE.search(url)
    return unquote(match.group(1)) if match and match.group(1) else None


def scrub(message: object, url: str) -> str:
    """One line of `message` with the URL's password (raw and quoted) replaced by ``***``."""
    line = " ".join(str(message).split())  # one line, whatever the driver printed
    password = password_of(url)
    if password:
        for secret in {password, quote(password, safe="")}:
            line = line.replace(secret, MASK)
    return line


def redact_text(text: str) -> str:
    """`text` with URL passwords and `password=...` style values masked."""
    text = _URL.sub(lambda m: redact(m.group(0)), text)
    return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
