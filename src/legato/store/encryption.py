"""Encryption at rest for saved blocks (Fernet: AES-128-CBC with an HMAC-SHA256, from
``cryptography``).

The key is ``LEGATO_ENCRYPTION_KEY``, else the file ``LEGATO_ENCRYPTION_KEY_FILE``, else
``LEGATO_HOME/encryption.key``, which is made (mode 0600) the first time a block is saved. A server
encrypts with its own key; clients of a server never need it. Everything that writes blocks
straight into one database (server replicas, embedded clients on a shared PostgreSQL) must share
the key: a document encrypted with another key is reported as such, never returned garbled.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError

_lock = threading.Lock()
_ciphers: dict[tuple[Any, ...], Cipher] = {}


class Cipher:
    def __init__(self, key: bytes, source: str) -> None:
        # lazy: cryptography costs ~40 ms to import, paid only by processes that use blocks
        from cryptography.fernet import Fernet

        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"The block encryption key from {source} is not a valid key (32 url-safe "
                "base64-encoded bytes). Make one with `legato block generate-key`.") from None
        self.source = source

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def decrypt(self, token: str, what: str) -> str:
        from cryptography.fernet import InvalidToken  # lazy, as in __init__

        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            raise ConfigurationError(
                f"Cannot decrypt {what} with the block encryption key from {self.source}: it "
                "was saved with another key. Set LEGATO_ENCRYPTION_KEY (or "
                "LEGATO_ENCRYPTION_KEY_FILE) to the key of whoever saved it.") from None


def generate_key() -> str:
    from cryptography.fernet import Fernet  # lazy, as in Cipher

    return Fernet.generate_key().decode("ascii")


def get_cipher(settings: Any) -> Cipher:
    """The cipher for these settings (made once per key source)."""
    key_id = (settings.encryption_key, settings.encryption_key_file, settings.home)
    cipher = _ciphers.get(key_id)
    if cipher is None:
        with _lock:
            cipher = _ciphers.get(key_id)
            if cipher is None:
                cipher = _ciphers[key_id] = _load(settings)
    return cipher


def _load(settings: Any) -> Cipher:
    if settings.encryption_key:
        return Cipher(settings.encryption_key.strip().encode(), "LEGATO_ENCRYPTION_KEY")
    if settings.encryption_key_file:
        path = Path(settings.encryption_key_file).expanduser()
        try:
            return Cipher(path.read_bytes().strip(), str(path))
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot read the block encryption key file {path} (LEGATO_ENCRYPTION_KEY_FILE):"
                f" {exc.strerror or exc}.") from None
    path = Path(settings.home) / "encryption.key"
    try:
        return Cipher(path.read_bytes().strip(), str(path))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigurationError(f"Cannot read the block encryption key file {path}: "
                                 f"{exc.strerror or exc}.") from None
    tmp = path.with_name(f".encryption.key.{os.getpid()}.{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(generate_key() + "\n")
        # a hard link appears whole or not at all: two processes making the key at once agree
        # on whichever linked first
        os.link(tmp, path)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigurationError(f"Cannot create the block encryption key file {path}: "
                                 f"{exc.strerror or exc}. Set LEGATO_ENCRYPTION_KEY instead."
                                 ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return Cipher(path.read_bytes().strip(), str(path))


def reset_ciphers() -> None:
    _ciphers.clear()
