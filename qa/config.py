"""The user's config file, ``qa.toml``, as defaults beneath the environment.

Precedence, first wins: a command-line option, then its environment variable, then
``qa.toml``, then qa's built-in default. The file lives in the user config directory
(``~/.config/qa/qa.toml`` on Linux; ``$QA_CONFIG`` names another)::

    index_dir = "~/notes/qa-index"   # QA_INDEX_DIR
    model = "e5-small"               # QA_MODEL
    store = "faiss"                  # QA_STORE
    top_k = 3                        # QA_TOP_K
    color = false                    # NO_COLOR
    log = false                      # QA_LOG (qa log's record of questions)

The file only fills in environment variables that are not set, so every command and
every library path sees one set of settings, read in one place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

CONFIG_ENV = "QA_CONFIG"
TOP_K_ENV = "QA_TOP_K"
LOG_ENV = "QA_LOG"

# key in qa.toml -> (environment variable, type the value must have)
SETTINGS: dict[str, tuple[str, type]] = {
    "index_dir": ("QA_INDEX_DIR", str),
    "model": ("QA_MODEL", str),
    "store": ("QA_STORE", str),
    "top_k": (TOP_K_ENV, int),
    "color": ("NO_COLOR", bool),
    "log": (LOG_ENV, bool),
}


class ConfigError(Exception):
    """The config file can't be used; the message is one line naming the file."""


def config_path() -> Path:
    """Return where qa looks for ``qa.toml`` (``$QA_CONFIG`` wins)."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    from platformdirs import user_config_path

    return user_config_path("qa") / "qa.toml"


def read_config(path: Path) -> dict:
    """Return the settings of a ``qa.toml`` (empty when there is none), checked against :data:`SETTINGS`.

    Raises :class:`ConfigError` for a file that isn't TOML, an unknown key, or a value of
    the wrong type.
    """
    try:
        import tomllib
    except ImportError:  # Python 3.10: no TOML reader in the standard library
        return {}
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for key, value in data.items():
        if key not in SETTINGS:
            raise ConfigError(f"{path}: unknown setting {key!r} (known: {', '.join(SETTINGS)})")
        kind = SETTINGS[key][1]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: {key} must be a {kind.__name__}")
    return data


def apply_config(settings: dict, environ: MutableMapping[str, str]) -> None:
    """Set the environment variable of each setting that ``environ`` does not set already."""
    for key, value in settings.items():
        variable = SETTINGS[key][0]
        if variable in environ:
            continue
        if key == "color":
            if not value:
                environ[variable] = "1"
        elif key == "log":
            environ[variable] = "1" if value else "0"
        else:
            environ[variable] = str(value)
