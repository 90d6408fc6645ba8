"""Personal data at rest: AES-256-GCM with key ids (rotation) and a keyed blind index.

A ciphertext is stored with the id of the key that wrote it, so keys rotate by adding a new
key, making it current, and re-encrypting at leisure. Lookups never decrypt: an HMAC-SHA256
of the normalised value (the blind index) is what is indexed and unique.

The blind-index key rotates too (:mod:`identity.reindex`): while a previous key is configured,
:meth:`DataCipher.blind_indexes` gives a value's index under both keys (lookups match either),
and :meth:`DataCipher.blind_index` only the current key's (what every write stores). An index is
stored with :attr:`DataCipher.blind_key_id`, a fingerprint of the key that made it (not the key,
nor anything that helps find it), so what is left under the old key can be counted and re-indexed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
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


def blind_key_fingerprint(key: bytes) -> str:
    """The id stored beside a blind index: the HMAC of a constant under the key, cut to 64 bits.
    Tells keys apart; reveals nothing of the key (nor of any index made with it)."""
    return hmac.new(key, b"vs-identity blind-index key id", hashlib.sha256).hexdigest()[:16]


class DataCipher:
    def __init__(
        self,
        keys: dict[str, bytes],
        current_key_id: str,
        blind_key: bytes,
        previous_blind_key: bytes | None = None,
    ) -> None:
        if current_key_id not in keys:
            raise ValueError("the current data key id is not among the keys")
        for kid, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"data key {kid!r} must be 32 bytes")
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self.current_key_id = current_key_id
        self._blind_key = blind_key
        self.blind_key_id = blind_key_fingerprint(blind_key)
        # the same key given twice is no rotation: one index, one key id
        self._previous_blind_key = previous_blind_key if previous_blind_key != blind_key else None
        self.previous_blind_key_id = (
            blind_key_fingerprint(self._previous_blind_key) if self._previous_blind_key is not None else None
        )

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the keys in the ring (never the keys)."""
        return tuple(self._keys)

    def seal(self, plaintext: bytes, *, context: bytes = b"") -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        aad = self.current_key_id.encode() + b"|" + context
        return Sealed(self.current_key_id, nonce + self._keys[self.current_key_id].encrypt(nonce, plaintext, aad))

    def open(self, sealed: Sealed, *, context: bytes = b"") -> bytes:
        aead = self._keys[sealed.key_id]
        aad = sealed.key_id.encode() + b"|" + context
        return aead.decrypt(sealed.data[:NONCE_BYTES], sealed.data[NONCE_BYTES:], aad)

    def reseal(self, sealed: Sealed, *, context: bytes = b"") -> Sealed:
        """``sealed`` opened with its own key and sealed again with the current one (same context).
        Raises ``KeyError`` if its key is not in the ring, ``InvalidTag`` if it does not open."""
        return self.seal(self.open(sealed, context=context), context=context)

    def blind_index(self, value: str) -> bytes:
        """The index under the current key: the one every write stores."""
        return hmac.new(self._blind_key, value.encode(), hashlib.sha256).digest()

    def blind_indexes(self, value: str) -> tuple[bytes, ...]:
        """What a lookup matches: the current key's index, then (during a rotation) the previous key's."""
        current = self.blind_index(value)
        if self._previous_blind_key is None:
            return (current,)
        return current, hmac.new(self._previous_blind_key, value.encode(), hashlib.sha256).digest()

    @property
    def rotating_blind_index(self) -> bool:
        """A previous blind-index key is configured: rows may be indexed under either key."""
        return self._previous_blind_key is not None


# -- what each kind of sealed value is bound to (the AAD besides the key id) -------------------
# Sealing and opening a value, and re-sealing it under another key (identity.rekey), all take its
# context from here, so a value always opens with the context it was sealed with.
def id_number_context(document_type: str) -> bytes:
    """An ID number is bound to its document type (``volunteer_records.document_type``)."""
    return document_type.encode()


def id_card_context(upload_id: uuid.UUID) -> bytes:
    """An ID-card image is bound to its upload (``id_card_uploads.id``): it opens as no other."""
    return b"id-card:" + upload_id.bytes


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
    previous = settings.blind_index_previous_key
    return DataCipher(keys, current, blind, base64.b64decode(previous.get_secret_value()) if previous else None)
