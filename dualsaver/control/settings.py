"""The settings file: one TOML file a whole fleet can share (`config/dualsaver.toml`).

    [migration]
    phase = "shadow-write"          # optional: omit it to follow the control store's phase record
    strict = false
    secondary_timeout = 5.0         # seconds; 0 or a negative number waits forever
    journal = ".dualsaver/journal.sqlite"
    canary_percent = 0              # read-switch: % of threads that read from new
    shadow_read_rate = 0.0          # shadow-write/backfill: fraction of reads compared with new
    write_behind = true             # shadow-write: new's copy written in the background
    circuit_cool_down = 5.0         # seconds a failed secondary is skipped (0: never skipped)
    status_file = ".dualsaver/status.json"   # where outcomes go when there is no control store

    [stores]
    old = "sqlite:///checkpoints.sqlite"
    new = "postgresql://dualsaver:${DUALSAVER_PG_PASSWORD}@localhost:5432/dualsaver"

    store_old = "sqlite:///store.sqlite"      # the long-term store (BaseStore), when it moves too
    store_new = "postgresql://..."

    [store.index]                   # the stores' semantic index (both sides, unless told apart)
    dims = 1536
    fields = ["text"]
    embed = "openai:text-embedding-3-small"   # or python:package.module:function

    [control]                       # the fleet's control store (PostgreSQL or Redis)
    url = "redis://localhost:6379/0"   # phase record, journal, backfill progress, evidence
    name = "default"                # several migrations can share one control store
    poll_interval = 2.0             # seconds between two reads of the phase

    [tiered]                        # TieredSaver (a permanent mode, not a migration)
    enabled = false                 # true: LangGraph Agent Server's factory builds a TieredSaver
    durable = "postgresql://..."    # the store of record ($DUALSAVER_DURABLE_URL)
    hot = "redis://..."             # the fast store ($DUALSAVER_HOT_URL)
    hot_ttl = 3600
    hot_timeout = 1.0

`[phase_record]` (url, name, poll_interval) is the older name of `[control]` and still read.

The file is found through `--config PATH` on the command line or `$DUALSAVER_SETTINGS`;
never implicitly, so a stray file in the working directory cannot change a phase.
`${NAME}` in a string is replaced by the environment variable NAME, which keeps passwords
out of the file. Unknown sections or keys are refused: a typo must not be silently ignored.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dualsaver.control.phase import Phase
from dualsaver.errors import InvalidPhaseError, SettingsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_SETTINGS = "DUALSAVER_SETTINGS"
ENV_CONTROL = "DUALSAVER_CONTROL_URL"  # the control store's URL without a settings file
ENV_RECORD = "DUALSAVER_PHASE_RECORD"  # its older name, still read
ENV_OLD_URL = "DUALSAVER_OLD_URL"
ENV_NEW_URL = "DUALSAVER_NEW_URL"
ENV_DURABLE_URL = "DUALSAVER_DURABLE_URL"  # TieredSaver's stores, without a settings file
ENV_HOT_URL = "DUALSAVER_HOT_URL"
ENV_STORE_OLD_URL = "DUALSAVER_STORE_OLD_URL"
ENV_STORE_NEW_URL = "DUALSAVER_STORE_NEW_URL"
INDEX_KEYS = {"dims": (int,), "fields": (list,), "embed": (str,), "distance_type": (str,)}
DEFAULT_POLL_INTERVAL = 2.0
DEFAULT_STATUS_FILE = ".dualsaver/status.json"


@dataclass(frozen=True)
class Settings:
    """Everything the library and the CLI read from a settings file (all optional)."""

    phase: str | None = None
    strict: bool = False
    secondary_timeout: float | None = 5.0
    journal: str | None = None
    canary_percent: float | None = None
    shadow_read_rate: float = 0.0
    write_behind: bool = True
    circuit_cool_down: float | None = 5.0
    status_file: str | None = None
    old_url: str | None = field(default=None, repr=False)
    new_url: str | None = field(default=None, repr=False)
    control_url: str | None = field(default=None, repr=False)
    control_name: str = "default"
    poll_interval: float = DEFAULT_POLL_INTERVAL
    hot_ttl: float | None = None  # TieredSaver: seconds a thread stays hot after its last write
    hot_timeout: float | None = 1.0  # TieredSaver: seconds a hot-store call may take
    tiered: bool = False  # the Agent Server factory builds a TieredSaver(durable, hot)
    durable_url: str | None = field(default=None, repr=False)
    hot_url: str | None = field(default=None, repr=False)
    store_old_url: str | None = field(default=None, repr=False)  # the long-term store being left
    store_new_url: str | None = field(default=None, repr=False)
    store_index: dict[str, Any] | None = None  # [store.index]: dims, fields, embed, distance_type
    path: str | None = None  # the file these came from

    @property
    def record_url(self) -> str | None:
        """The older name of `control_url` (deprecated)."""
        return self.control_url

    @property
    def record_name(self) -> str:
        """The older name of `control_name` (deprecated)."""
        return self.control_name

    def saver_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `DualSaver(old, new, **settings.saver_kwargs())`."""
        kwargs: dict[str, Any] = {
            "strict": self.strict,
            "secondary_timeout": self.secondary_timeout,
            "journal": self.journal,
            "write_behind": self.write_behind,
            "circuit_cool_down": self.circuit_cool_down,
            "control": self.control_url,
        }
        if self.canary_percent is not None:
            kwargs["canary_percent"] = self.canary_percent
        if self.shadow_read_rate:
            kwargs["shadow_read_rate"] = self.shadow_read_rate
        return kwargs

    def tiered_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `TieredSaver(durable, hot, **settings.tiered_kwargs())`."""
        return {
            "hot_ttl": self.hot_ttl, "hot_timeout": self.hot_timeout, "circuit_cool_down": self.circuit_cool_down,
            "journal": self.journal, "control": self.control_url,
        }


_settings_init = Settings.__init__


@functools.wraps(_settings_init)  # its signature, for help() and IDEs, stays the dataclass's
def _init_with_older_names(
    self: Settings, *args: Any, record_url: str | None = None, record_name: str | None = None, **kwargs: Any
) -> None:
    """`Settings(record_url=..., record_name=...)`, the older names of `control_url` and
    `control_name`, still work (deprecated); given, they win (so `replace` with one does too)."""
    if record_url is not None:
        kwargs["control_url"] = record_url
    if record_name is not None:
        kwargs["control_name"] = record_name
    _settings_init(self, *args, **kwargs)


Settings.__init__ = _init_with_older_names  # type: ignore[method-assign]


# section -> key -> (Settings field, type check)
SCHEMA: dict[str, dict[str, tuple[str, tuple[type, ...]]]] = {
    "migration": {
        "phase": ("phase", (str,)),
        "strict": ("strict", (bool,)),
        "secondary_timeout": ("secondary_timeout", (int, float)),
        "journal": ("journal", (str,)),
        "canary_percent": ("canary_percent", (int, float)),
        "shadow_read_rate": ("shadow_read_rate", (int, float)),
        "write_behind": ("write_behind", (bool,)),
        "circuit_cool_down": ("circuit_cool_down", (int, float)),
        "status_file": ("status_file", (str,)),
    },
    "stores": {
        "old": ("old_url", (str,)),
        "new": ("new_url", (str,)),
        "store_old": ("store_old_url", (str,)),
        "store_new": ("store_new_url", (str,)),
    },
    "store": {
        "index": ("store_index", (dict,)),
    },
    "control": {
        "url": ("control_url", (str,)),
        "name": ("control_name", (str,)),
        "poll_interval": ("poll_interval", (int, float)),
    },
    "tiered": {
        "hot_ttl": ("hot_ttl", (int, float)),
        "hot_timeout": ("hot_timeout", (int, float)),
        "enabled": ("tiered", (bool,)),
        "durable": ("durable_url", (str,)),
        "hot": ("hot_url", (str,)),
    },
}
ALIASES = {"phase_record": "control"}  # older section names, still read

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(text: str, where: str, environ: dict[str, str] | os._Environ[str] | None = None) -> str:
    """`${NAME}` replaced by $NAME; a missing variable is an error naming it (not its value)."""
    env = os.environ if environ is None else environ

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise SettingsError(f"{where}: environment variable ${{{name}}} is not set")
        return env[name]

    return _VAR.sub(sub, text)


def parse(data: dict[str, Any], source: str = "<settings>", environ: Any = None) -> Settings:
    """Settings from the parsed TOML `data`, validated key by key."""
    values: dict[str, Any] = {"path": source}
    for section, table in data.items():
        known = SCHEMA.get(ALIASES.get(section, section))
        if known is None:
            raise SettingsError(
                f"{source}: unknown section [{section}] (known: {', '.join(SCHEMA)})"
            )
        if not isinstance(table, dict):
            raise SettingsError(f"{source}: [{section}] must be a table")
        for key, value in table.items():
            if key not in known:
                raise SettingsError(
                    f"{source}: unknown key {section}.{key} (known: {', '.join(known)})"
                )
            name, types = known[key]
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                wanted = " or ".join(t.__name__ for t in types)
                raise SettingsError(f"{source}: {section}.{key} must be {wanted}")
            if isinstance(value, str):
                value = expand(value, f"{source}: {section}.{key}", environ)
            values[name] = value
    settings = Settings(**values)
    _validate(settings, source)
    return settings


def _validate(s: Settings, source: str) -> None:
    if s.phase is not None:
        try:
            Phase.parse(s.phase)
        except InvalidPhaseError as exc:
            raise SettingsError(f"{source}: migration.phase: {exc}") from None
    if s.canary_percent is not None and not 0 <= s.canary_percent <= 100:
        raise SettingsError(f"{source}: migration.canary_percent must be between 0 and 100")
    if not 0 <= s.shadow_read_rate <= 1:
        raise SettingsError(f"{source}: migration.shadow_read_rate must be between 0 and 1")
    if s.poll_interval <= 0:
        raise SettingsError(f"{source}: control.poll_interval must be positive")
    if s.circuit_cool_down is not None and s.circuit_cool_down <= 0:
        object.__setattr__(s, "circuit_cool_down", None)  # documented: 0 never skips
    if s.secondary_timeout is not None and s.secondary_timeout <= 0:
        object.__setattr__(s, "secondary_timeout", None)  # documented: <= 0 waits forever
    for key, value in (s.store_index or {}).items():
        if key not in INDEX_KEYS or not isinstance(value, INDEX_KEYS[key]) or isinstance(value, bool):
            raise SettingsError(f"{source}: store.index.{key}: unknown key or wrong type"
                                f" (known: {', '.join(INDEX_KEYS)})")
    if s.store_index is not None and "dims" not in s.store_index:
        raise SettingsError(f"{source}: store.index needs dims")
    if s.hot_ttl is not None and s.hot_ttl <= 0:
        raise SettingsError(f"{source}: tiered.hot_ttl must be a positive number of seconds")
    if s.hot_timeout is not None and s.hot_timeout <= 0:
        object.__setattr__(s, "hot_timeout", None)  # as secondary_timeout: <= 0 waits forever


def load(path: str | os.PathLike[str], environ: Any = None) -> Settings:
    """Read and validate one settings file."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError(f"settings file {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{p}: not valid TOML: {exc}") from None
    return parse(data, str(p), environ)


def current(path: str | os.PathLike[str] | None = None, environ: Any = None) -> Settings:
    """The settings in force: `path`, else `$DUALSAVER_SETTINGS`, else defaults.

    Without a file, `$DUALSAVER_CONTROL_URL` (or its older name `$DUALSAVER_PHASE_RECORD`),
    `$DUALSAVER_OLD_URL` and `$DUALSAVER_NEW_URL` still name the control store and the stores;
    with a file, they fill only what it leaves out.
    """
    env = os.environ if environ is None else environ
    chosen = path if path is not None else env.get(ENV_SETTINGS) or None
    settings = load(chosen, env) if chosen is not None else Settings()
    fill = {
        "control_url": env.get(ENV_CONTROL) or env.get(ENV_RECORD),
        "old_url": env.get(ENV_OLD_URL),
        "new_url": env.get(ENV_NEW_URL),
        "durable_url": env.get(ENV_DURABLE_URL),
        "hot_url": env.get(ENV_HOT_URL),
        "store_old_url": env.get(ENV_STORE_OLD_URL),
        "store_new_url": env.get(ENV_STORE_NEW_URL),
    }
    missing: dict[str, Any] = {k: v for k, v in fill.items() if v and getattr(settings, k) is None}
    return replace(settings, **missing) if missing else settings


def keys_read() -> set[str]:
    """Every `section.key` the code reads (tests compare the example file against it)."""
    return {f"{section}.{key}" for section, table in SCHEMA.items() for key in table}
