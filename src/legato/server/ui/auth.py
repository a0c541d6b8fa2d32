"""The UI's sign-in: when the server requires API keys, a browser signs in once with a key and
keeps a session cookie; no page, fragment or action answers without it.

The cookie holds no key: ``nonce.expires.signature``, signed (HMAC-SHA256) with a secret derived
from the accepted keys' digests, so every replica with the same keys accepts it, and changing the
keys signs everyone out. It is ``HttpOnly`` and ``SameSite=Strict``.

Forged requests: every UI POST must come from a page of this server (its ``Origin``, or failing
that its ``Referer``, names this host), whether or not keys are required.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from ..security import KeyChecker

COOKIE = "legato_session"
SESSION_SECONDS = 12 * 3600


class Sessions:
    def __init__(self, keys: KeyChecker) -> None:
        self.keys = keys
        material = "\n".join(sorted(keys.digests)).encode()
        self._secret = hashlib.sha256(b"legato-ui-session\n" + material).digest()

    @property
    def required(self) -> bool:
        return self.keys.enabled

    def sign_in(self, key: str) -> str | None:
        """A new session cookie's value if ``key`` is accepted, else None."""
        if self.keys.check(f"Bearer {key.strip()}") is not None:
            return None
        nonce = secrets.token_hex(12)
        expires = str(int(time.time()) + SESSION_SECONDS)
        return f"{nonce}.{expires}.{self._sign(nonce, expires)}"

    def valid(self, cookie: str | None) -> bool:
        if not self.required:
            return True
        if not cookie or cookie.count(".") != 2:
            return False
        nonce, expires, sig = cookie.split(".")
        if not hmac.compare_digest(sig, self._sign(nonce, expires)):
            return False
        try:
            return int(expires) > time.time()
        except ValueError:
            return False

    def _sign(self, nonce: str, expires: str) -> str:
        return hmac.new(self._secret, f"{nonce}.{expires}".encode(), hashlib.sha256).hexdigest()


def same_origin(headers: Mapping[str, str]) -> bool:
    """Whether a POST comes from a page of this server (Origin, else Referer, names its host)."""
    host = headers.get("host", "")
    source = headers.get("origin") or headers.get("referer")
    if not source or source == "null":
        return False
    return urlsplit(source).netloc == host


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this server only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
