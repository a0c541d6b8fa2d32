"""API keys: which the server accepts, and checking a request's ``Authorization`` header.

Keys are kept only as SHA-256 digests (from ``LEGATO_SERVER_API_KEYS`` or a file of digests) and
compared in constant time. A key is never logged, nor echoed in an error.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_key_digests(settings: Any) -> frozenset[str]:
    digests: set[str] = set()
    if settings.server_api_keys:
        digests.update(hash_key(k.strip()) for k in settings.server_api_keys.split(",") if k.strip())
    path: Path | None = settings.server_api_keys_file
    if path is not None:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot read the API keys file {path} ({exc.strerror}); fix "
                "LEGATO_SERVER_API_KEYS_FILE or unset it."
            ) from None
        for n, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip().lower()
            if not line:
                continue
            if len(line) != 64 or any(c not in "0123456789abcdef" for c in line):
                raise ConfigurationError(
                    f"Line {n} of the API keys file {path} is not a SHA-256 hex digest; put "
                    "one digest per line (`legato server hash-key KEY` prints one)."
                )
            digests.add(line)
    return frozenset(digests)


class KeyChecker:
    def __init__(self, digests: frozenset[str]) -> None:
        self.digests = digests

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def check(self, header: str | None) -> str | None:
        """None when the header carries an accepted key; else why not (no key in the text)."""
        if not header:
            return ("This Legato server requires an API key: send 'Authorization: Bearer KEY' "
                    "(set LEGATO_API_KEY, or run `legato login --url URL --key KEY`).")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return "The Authorization header must be 'Bearer KEY'."
        digest = hash_key(key.strip())
        ok = False
        for d in self.digests:  # constant time per digest; no early exit on a match
            ok |= hmac.compare_digest(d, digest)
        return None if ok else "The API key was not accepted by this Legato server."
