"""The master key file: 32 random bytes kept *outside* the database, for sealing API secrets.

HMAC signed logins need the server to hold each key's secret, yet a copy of the database alone
must never yield a usable credential. So the secret is stored sealed with AES-256-GCM under a
master key that lives in its own file (by default the database path + ``.key``), created with
mode 0600 on first use. Each sealed secret is bound to its key id (GCM associated data), so a
sealed blob copied onto another row does not open.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12  # GCM's standard nonce, random per seal: 2^-32 collision risk after 2^32 seals
_VERSION = b"\x01"


class KeyFileError(Exception):
    """The key file cannot be used (unreadable, wrong size, missing directory); says why."""


class SealError(Exception):
    """A sealed blob does not open with this master key (another key file, or tampered)."""


class MasterKey:
    """AES-256-GCM with one key: ``seal`` and ``open`` small values bound to a context."""

    def __init__(self, key: bytes, path: Path) -> None:
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"the key file {path} must hold {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.path = path

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context)

    def open(self, blob: bytes, context: bytes) -> bytes:
        if blob[:1] != _VERSION or len(blob) < 1 + _NONCE_BYTES + 16:
            raise SealError("not a sealed value of this version")
        nonce, body = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, context)
        except InvalidTag:
            raise SealError(f"does not open with the key file {self.path}") from None


def load_master_key(path: Path, *, create: bool) -> MasterKey | None:
    """Read the key file; if it is missing, create it (``create``) or return None."""
    try:
        return _read(path)
    except FileNotFoundError:
        if not create:
            return None
    if not path.parent.is_dir():
        raise KeyFileError(f"cannot create the key file {path}: its directory does not exist")
    # Written under a temporary name, then linked into place: two processes creating it at once
    # end up with the same key, and nobody ever reads a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            log.info("created the key file %s", path)
    except OSError as exc:
        raise KeyFileError(f"cannot create the key file {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> MasterKey:
    try:
        info = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"the key file {path} is not a regular file")
    if info.st_mode & 0o077:
        log.warning(
            "the key file %s can be read by other users (mode %o): chmod 600 it",
            path,
            stat.S_IMODE(info.st_mode),
        )
    return MasterKey(data, path)
