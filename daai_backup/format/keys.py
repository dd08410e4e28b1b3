"""Master keys, per-tenant keys and key fingerprints.

Key schedule (the exact bytes are in ``docs/format.md``)::

    master key (32 random bytes, BACKUP_ENCRYPTION_KEY, base64)
      ├── fingerprint = hex(HKDF-SHA256(master, salt=none, "daai-backup/v1/fingerprint", L=8))
      └── tenant key  = HKDF-SHA256(master, salt=none, "daai-backup/v1/tenant:" || id, L=32)
            └── segment key (per file, see ``archive``)

A :class:`MasterKey` never shows its bytes in ``repr``/``str``; only the fingerprint, a
one-way id that is safe to log and to store in archive headers.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from daai_backup.errors import InvalidName, KeyInvalid, KeyMissing, WrongKey

__all__ = [
    "KEY_SIZE",
    "Keyring",
    "MasterKey",
    "derive_tenant_key",
    "generate_master_key",
    "parse_master_key",
    "validate_tenant_id",
]

KEY_SIZE = 32
FINGERPRINT_SIZE = 8  # bytes; 16 hex characters

_FINGERPRINT_INFO = b"daai-backup/v1/fingerprint"
_TENANT_INFO_PREFIX = b"daai-backup/v1/tenant:"
_TENANT_RE = re.compile(r"[a-z0-9-]{1,255}")


def _hkdf(ikm: bytes, *, info: bytes, length: int, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def validate_tenant_id(tenant_id: str) -> str:
    """Return ``tenant_id`` if it is 1-255 characters of ``[a-z0-9-]``, else raise InvalidName."""
    if not isinstance(tenant_id, str) or not _TENANT_RE.fullmatch(tenant_id):
        raise InvalidName(
            f"invalid tenant id {tenant_id!r}: use 1-255 characters of lowercase a-z, 0-9 and '-'"
        )
    return tenant_id


class MasterKey:
    """32 secret bytes. Shows only its fingerprint; compare with ``==`` in constant time."""

    __slots__ = ("_fingerprint", "_raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_SIZE:
            raise KeyInvalid(
                f"an encryption key must be {KEY_SIZE} bytes, got {len(raw)}: "
                "generate one with `daai-backup keygen`"
            )
        self._raw = bytes(raw)
        self._fingerprint = _hkdf(self._raw, info=_FINGERPRINT_INFO, length=FINGERPRINT_SIZE).hex()

    @property
    def fingerprint(self) -> str:
        """A 16-hex-character one-way id of the key, safe to log and to store."""
        return self._fingerprint

    def __repr__(self) -> str:
        return f"MasterKey(fingerprint={self._fingerprint!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MasterKey):
            return NotImplemented
        return hmac.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash(self._fingerprint)

    def __reduce__(self) -> tuple[object, ...]:
        # Refuse pickling so that a key cannot slip into a Prefect result or parameter store.
        raise TypeError("MasterKey cannot be pickled: pass the key through settings instead")


def generate_master_key() -> str:
    """Return a new master key: base64 of 32 bytes from ``os.urandom``."""
    return base64.b64encode(os.urandom(KEY_SIZE)).decode("ascii")


def parse_master_key(b64: str, *, source: str = "encryption key") -> MasterKey:
    """Decode a base64 master key (standard or URL-safe alphabet).

    ``source`` names where the value came from (e.g. ``BACKUP_ENCRYPTION_KEY``) for the error
    message; the value itself never appears in a message.
    """
    text = b64.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyInvalid(
            f"{source} is not valid base64: expected base64 of {KEY_SIZE} random bytes "
            "(44 characters); generate one with `daai-backup keygen`"
        ) from exc
    if len(raw) != KEY_SIZE:
        raise KeyInvalid(
            f"{source} decodes to {len(raw)} bytes, expected {KEY_SIZE}: "
            "generate one with `daai-backup keygen`"
        )
    return MasterKey(raw)


def derive_tenant_key(master: MasterKey, tenant_id: str) -> bytes:
    """HKDF-SHA256 of the master key with the tenant id in ``info``: 32 bytes, per tenant."""
    validate_tenant_id(tenant_id)
    info = _TENANT_INFO_PREFIX + tenant_id.encode("ascii")
    return _hkdf(master._raw, info=info, length=KEY_SIZE)


class Keyring:
    """The current master key (for writing) and previous ones (for reading old archives)."""

    __slots__ = ("_current", "_previous")

    def __init__(self, current: MasterKey | None, previous: Sequence[MasterKey] = ()) -> None:
        self._current = current
        self._previous = tuple(previous)

    @classmethod
    def from_strings(cls, current: str | None, previous: Iterable[str] = ()) -> Keyring:
        """Parse base64 keys; blank values count as not set."""
        cur = None
        if current is not None and current.strip():
            cur = parse_master_key(current, source="BACKUP_ENCRYPTION_KEY")
        prev = [
            parse_master_key(text, source=f"BACKUP_ENCRYPTION_PREVIOUS_KEYS entry {n}")
            for n, text in enumerate(previous, start=1)
            if text.strip()
        ]
        seen = {cur.fingerprint: "BACKUP_ENCRYPTION_KEY"} if cur is not None else {}
        for n, key in enumerate(prev, start=1):
            where = f"BACKUP_ENCRYPTION_PREVIOUS_KEYS entry {n}"
            if key.fingerprint in seen:
                raise KeyInvalid(
                    f"{where} is the same key as {seen[key.fingerprint]} (fingerprint "
                    f"{key.fingerprint}): remove it from BACKUP_ENCRYPTION_PREVIOUS_KEYS"
                )
            seen[key.fingerprint] = where
        return cls(cur, prev)

    @property
    def current(self) -> MasterKey | None:
        return self._current

    @property
    def previous(self) -> tuple[MasterKey, ...]:
        return self._previous

    @property
    def fingerprints(self) -> list[str]:
        """Fingerprints of every configured key, current first."""
        keys = ([self._current] if self._current else []) + list(self._previous)
        return [k.fingerprint for k in keys]

    def require_current(self) -> MasterKey:
        """The key new backups are written with; raises KeyMissing if none is set."""
        if self._current is None:
            raise KeyMissing()
        return self._current

    def find(self, fingerprint: str) -> MasterKey:
        """The configured key with this fingerprint; raises WrongKey naming what is needed."""
        for key in ([self._current] if self._current else []) + list(self._previous):
            if key.fingerprint == fingerprint:
                return key
        configured = ", ".join(self.fingerprints) or "none"
        raise WrongKey(
            f"this archive needs the key with fingerprint {fingerprint} "
            f"(configured: {configured}): set BACKUP_ENCRYPTION_KEY to that key, or add it "
            "to BACKUP_ENCRYPTION_PREVIOUS_KEYS if it was rotated out"
        )

    def __repr__(self) -> str:
        cur = self._current.fingerprint if self._current else None
        prev = [k.fingerprint for k in self._previous]
        return f"Keyring(current={cur!r}, previous={prev!r})"
