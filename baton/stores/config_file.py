"""config.toml on disk: the I/O side of baton.core.settings.

Invariants:
- A missing config file is the same as an empty one; a file that is not valid
  TOML is refused (ConfigError naming the path and the line), never ignored.
- write_config replaces the file atomically, mode 0600, and writes only what
  read_config gives back unchanged (flat str / int / float keys).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from baton.core.errors import ConfigError
from baton.core.knobs import resolve_settings
from baton.core.settings import Settings
from baton.stores.files import PRIVATE_FILE, atomic_write
from baton.stores.home import HomePaths

CONFIG_KNOB = "config.toml"
HEADER = (
    '# baton settings (docs/DESIGN.md, "Settings").\n'
    "# BATON_* environment variables and command-line flags override these.\n"
)

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def read_config(path: Path) -> dict[str, object]:
    """The parsed TOML at ``path``; {} if there is no such file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(CONFIG_KNOB, f"{path} is not valid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(CONFIG_KNOB, f"cannot read {path}: {err.strerror}") from None


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(key: str, value: object) -> str:
    if isinstance(value, bool):  # a bool is an int in Python, not in our settings
        raise TypeError(f"{key}: cannot write {value!r}; only str, int and float")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, int | float):
        return repr(value)  # repr of a float is valid TOML, inf and nan included
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(_toml_string(v) for v in value) + "]"
    raise TypeError(f"{key}: cannot write {value!r}; only str, int, float and lists of str")


def render_config(values: Mapping[str, object]) -> bytes:
    """A commented TOML document of ``values``.

    Keys must be bare TOML keys and values str, int, float or a list of str (TypeError/ValueError
    otherwise: that is a caller's mistake, not a configuration one).
    """
    lines = [HEADER]
    for key, value in values.items():
        if not _BARE_KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a bare TOML key")
        lines.append(f"{key} = {_toml_value(key, value)}\n")
    return "".join(lines).encode("utf-8")


def write_config(path: Path, values: Mapping[str, object]) -> None:
    """Replace ``path`` with render_config(values), atomically and 0600."""
    atomic_write(path, render_config(values), PRIVATE_FILE)


def load_settings(
    home: Path, env: Mapping[str, str], flags: Mapping[str, object | None]
) -> Settings:
    """Settings for the node whose home is ``home``: its config.toml, then env, then flags."""
    config = HomePaths(home).config
    return resolve_settings(read_config(config), env, flags, source_name=str(config))
