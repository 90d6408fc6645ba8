"""Personal data at rest: AES-256-GCM with key ids (rotation) and a keyed blind index.

A ciphertext is stored with the id of the key that wrote it, so keys rotate by adding a new
key, making it current, and re-encrypting at leisure. Lookups never decrypt: an HMAC-SHA256
of the normalised value (the blind index) is what is indexed and unique.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from identity.config import IdentitySettings

NONCE_BYTES = 12


@dataclass(frozen=True)
class Sealed:
    key_id: str
    data: bytes  # nonce || ciphertext+tag


class DataCipher:
    def __init__(self, keys: dict[str, bytes], current_key_id: str, blind_key: bytes) -> None:
        if current_key_id not in keys:
            raise ValueError("the current data key id is not among the keys")
        for kid, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"data key {kid!r} must be 32 bytes")
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self.current_key_id = current_key_id
        self._blind_key = blind_key

    def seal(self, plaintext: bytes, *, context: bytes = b"") -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        aad = self.current_key_id.encode() + b"|" + context
        return Sealed(self.current_key_id, nonce + self._keys[self.current_key_id].encrypt(nonce, plaintext, aad))

    def open(self, sealed: Sealed, *, context: bytes = b"") -> bytes:
        aead = self._keys[sealed.key_id]
        aad = sealed.key_id.encode() + b"|" + context
        return aead.decrypt(sealed.data[:NONCE_BYTES], sealed.data[NONCE_BYTES:], aad)

    def blind_index(self, value: str) -> bytes:
        return hmac.new(self._blind_key, value.encode(), hashlib.sha256).digest()


def _derive(secret: str, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"vs-identity", info=label).derive(secret.encode())


def derive_key(settings: IdentitySettings, label: bytes) -> bytes:
    """A 32-byte key for ``label`` (card signatures, ...) derived from the service secret."""
    return _derive(settings.secret_key.get_secret_value(), label)


def build_cipher(settings: IdentitySettings) -> DataCipher:
    if settings.data_keys is not None:
        keys: dict[str, bytes] = {}
        for item in settings.data_keys.get_secret_value().split(","):
            kid, _, b64 = item.strip().partition(":")
            keys[kid] = base64.b64decode(b64)
        current = settings.data_key_id or next(iter(keys))
    else:
        # Development and tests only: production refuses to start without real keys.
        keys = {"dev1": _derive(settings.secret_key.get_secret_value(), b"data-key")}
        current = "dev1"
    if settings.blind_index_key is not None:
        blind = base64.b64decode(settings.blind_index_key.get_secret_value())
    else:
        blind = _derive(settings.secret_key.get_secret_value(), b"blind-index")
    return DataCipher(keys, current, blind)
