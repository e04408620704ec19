"""The bearer token a server requires: read from the operator's ``--token-file``, or, for a server on
a network address given none, this machine's token, created once per user.

The machine token is the first line of ``$XDG_CONFIG_HOME/std_daq/token`` (``~/.config/std_daq/token``),
mode 0600 in a 0700 folder, like the token a notebook server creates for itself. Every server and
coordinator the same user starts on this machine shares it: the coordinator sends it to its receiver
hosts when it is given no ``--hosts-token-file``. Remote users need a copy (``STD_DAQ_TOKEN``)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

MIN_TOKEN_LENGTH = 16
_log = logging.getLogger("daq_server.serve.tokens")


def read_token(path: Path) -> str:
    """The token: the file's first line; ValueError if unreadable, too short, or open to other users (as
    ssh refuses a private key that others may read: whoever can read the token can drive the DAQ)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the token file {path}: {error}") from None
    if mode & 0o077:
        raise ValueError(
            f"the token file {path} may be read or written by other users (mode {mode:04o}); run chmod 600 {path}"
        )
    token = text.splitlines()[0].strip() if text.strip() else ""
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"the token in {path} must be at least {MIN_TOKEN_LENGTH} characters on its first line")
    return token


def machine_token_path() -> Path:
    """Where this user's machine token lives (it may not exist yet)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "std_daq" / "token"


def existing_machine_token() -> str | None:
    """This user's machine token if one was created; None otherwise."""
    path = machine_token_path()
    return read_token(path) if path.exists() else None


def machine_token() -> tuple[str, Path, bool]:
    """This user's machine token, created if missing: (token, its file, whether it was created now).

    Two servers starting together agree: the new file is written aside and linked into place, and the
    one that finds a token already there reads that one. ValueError if it can be neither read nor made."""
    path = machine_token_path()
    if path.exists():
        return read_token(path), path, False
    aside = path.with_name(f".token.{secrets.token_hex(8)}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with os.fdopen(os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "w") as file:
            file.write(secrets.token_hex(24) + "\n")
        os.link(aside, path)
        created = True
    except FileExistsError:
        created = False
    except OSError as error:
        raise ValueError(
            f"cannot create this machine's token {path}: {error.strerror}; give --token-file FILE"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            aside.unlink()
    return read_token(path), path, created


__all__ = ["existing_machine_token", "machine_token", "machine_token_path", "read_token"]
