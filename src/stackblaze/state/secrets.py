"""Encryption at rest for secret env values (Fernet; the key file is 0600 under STACKBLAZE_HOME)."""

from __future__ import annotations

import base64
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

    def _box(self) -> Fernet:
        if self._fernet is None:
            from cryptography.fernet import Fernet

            self._key_file.parent.mkdir(parents=True, exist_ok=True)
            if not self._key_file.exists():
                fd = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(base64.urlsafe_b64encode(os.urandom(32)))  # what Fernet.generate_key() does
            self._fernet = Fernet(self._key_file.read_bytes().strip())
        return self._fernet

    def encrypt(self, value: str) -> bytes:
        return self._box().encrypt(value.encode())

    def decrypt(self, token: bytes) -> str:
        return self._box().decrypt(token).decode()
