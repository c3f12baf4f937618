"""Encryption at rest for secret env values (Fernet; the key file is 0600 under STACKBLAZE_HOME)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

MASK = "••••••"


class SecretBox:
    """Fernet is imported on first use: a daemon with no secrets does not pay its ~7 MB of RSS."""

    def __init__(self, key_file: Path) -> None:
        self._key_file = key_file
        self._fernet: Fernet | None = None
        self._key_bytes: bytes | None = None

    def _key(self) -> bytes:
        if self._key_bytes is None:
            self._key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self._key_file.exists():
                fd = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(base64.urlsafe_b64encode(os.urandom(32)))  # what Fernet.generate_key() does
            self._key_bytes = self._key_file.read_bytes().strip()
        return self._key_bytes

    def _box(self) -> Fernet:
        if self._fernet is None:
            from cryptography.fernet import Fernet

            self._fernet = Fernet(self._key())
        return self._fernet

    def keyed_digest(self, value: str) -> str:
        """What may stand for a secret in a stored digest (e.g. the replicas' config): HMAC-SHA256 under
        the key, so that no one without the key can confirm a guessed value against it."""
        return hmac.new(self._key(), b"digest\0" + value.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, value: str) -> bytes:
        return self._box().encrypt(value.encode())

    def decrypt(self, token: bytes) -> str:
        return self._box().decrypt(token).decode()
