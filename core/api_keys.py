"""API keys: ``rcs_<prefix>_<secret>``, stored as a public prefix plus an HMAC-SHA256 digest.

Pure functions, no I/O. The prefix (12 hex characters) is the lookup handle and may be shown;
the digest is ``HMAC-SHA256(server_secret, full_key)``, so a leaked table alone cannot be used to
test guesses without the server secret. Keys carry 256 random bits, so a slow password hash
buys nothing. Rotating the server secret invalidates every stored key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_SCHEME = "rcs"
PREFIX_BYTES = 6  # 12 hex characters
SECRET_BYTES = 32  # 256 bits, 43 url-safe characters


class MalformedKey(ValueError):
    """A presented key that is not of the form ``rcs_<prefix>_<secret>``."""


@dataclass(frozen=True)
class GeneratedKey:
    """A new key: `plaintext` is shown once; `prefix` and `secret_hash` are stored."""

    plaintext: str
    prefix: str
    secret_hash: str


def hash_key(plaintext: str, *, server_secret: str) -> str:
    """Hex HMAC-SHA256 of the whole presented key under the server secret."""
    mac = hmac.new(server_secret.encode(), plaintext.encode(), hashlib.sha256)
    return mac.hexdigest()


def generate_key(*, server_secret: str) -> GeneratedKey:
    """A fresh random key with its prefix and digest."""
    prefix = secrets.token_hex(PREFIX_BYTES)
    plaintext = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return GeneratedKey(plaintext, prefix, hash_key(plaintext, server_secret=server_secret))


def parse_prefix(presented: str) -> str:
    """The public prefix of a presented key; raises `MalformedKey` if it has the wrong shape."""
    scheme, sep, rest = presented.partition("_")
    prefix, sep2, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not sep or not sep2 or not secret:
        raise MalformedKey("API keys look like rcs_<prefix>_<secret>")
    if len(prefix) != 2 * PREFIX_BYTES or any(c not in "0123456789abcdef" for c in prefix):
        raise MalformedKey("API key prefix must be 12 lowercase hex characters")
    return prefix


def verify_key(presented: str, stored_hash: str, *, server_secret: str) -> bool:
    """Constant-time check of a presented key against a stored digest."""
    return hmac.compare_digest(hash_key(presented, server_secret=server_secret), stored_hash)
