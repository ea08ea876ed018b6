"""Which indexes this user's qa wrote: manifests signed with a per-user secret key.

The threat (``docs/RELIABILITY.md``, "Threat model"): whoever can write an index
directory can rewrite its manifest and every checksum in it, and a manifest names
the paths qa reads to keep the index fresh. A forged one made a victim's plain
``qa ask`` read ``~/.ssh/id_ed25519``, store it in the index and print it. So qa
signs each manifest it writes with HMAC-SHA256 under a key only this user can read
(32 random bytes, mode 0600, in the user state directory, made on first write), and
refreshes or extends an index from the paths its manifest names only when the
signature is this user's. Any other index is answered from as it is, read-only.

No import of anything heavy here.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from qa.paths import state_dir

KEY_FILE = "index-signing.key"
KEY_BYTES = 32


class SigningKeyError(OSError):
    """The key file exists but can't be trusted: not a regular file of the right size,
    readable by others, or owned by someone else."""


def key_path() -> Path:
    """Return where this user's signing key lives."""
    return state_dir() / KEY_FILE


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_size != KEY_BYTES or info.st_mode & 0o077
                or info.st_uid != os.getuid()):
            raise SigningKeyError(errno.EPERM, "not a private key file of this user (want mode 0600, 32 bytes)",
                                  str(path))
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise SigningKeyError(errno.EIO, "key file changed while read", str(path))
    return key


def signing_key(create: bool) -> bytes | None:
    """Return this user's signing key; with ``create``, make it if there is none yet.

    Takes whether to create it (writers do, readers don't: an index can't be this
    user's before the user has a key). Returns None when there is no key and
    ``create`` is false. The key is created exclusively (``O_EXCL``, ``O_NOFOLLOW``,
    mode 0600, its folder 0700), so a planted link or a second writer can't swap it.
    Raises ``OSError`` when it can't be read or made (then nothing is trusted).
    """
    path = key_path()
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            return None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:  # another qa made it first
        return _read_key(path)
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    return _read_key(path)


def sign(manifest_bytes: bytes) -> str:
    """Return the hex HMAC-SHA256 of a manifest under this user's key (made if needed)."""
    key = signing_key(create=True)
    return hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()


def is_signed_by_me(manifest_bytes: bytes, signature: str | None) -> bool:
    """Return True when ``signature`` is this user's HMAC of ``manifest_bytes``.

    False for a missing signature, no key, or a key that can't be read safely.
    """
    if not signature:
        return False
    try:
        key = signing_key(create=False)
    except OSError:
        return False
    if key is None:
        return False
    return hmac.compare_digest(hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest(), signature)
