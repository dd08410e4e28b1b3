"""Master keys, tenant keys, fingerprints and the keyring."""

from __future__ import annotations

import base64
import pickle

import pytest

from daai_backup.errors import InvalidName, KeyInvalid, KeyMissing, WrongKey
from daai_backup.format.keys import (
    Keyring,
    MasterKey,
    derive_tenant_key,
    generate_master_key,
    parse_master_key,
)

RAW = bytes(range(32))
B64 = base64.b64encode(RAW).decode()


def test_generate_parses_back_and_is_random() -> None:
    a, b = generate_master_key(), generate_master_key()
    assert a != b
    assert len(base64.b64decode(a)) == 32
    assert parse_master_key(a) != parse_master_key(b)


def test_repr_and_str_show_only_the_fingerprint() -> None:
    key = parse_master_key(B64)
    for text in (repr(key), str(key), repr(Keyring(key, [key]))):
        assert key.fingerprint in text
        assert B64 not in text
        assert RAW.hex() not in text


def test_fingerprint_is_short_stable_and_one_way() -> None:
    key = parse_master_key(B64)
    assert len(key.fingerprint) == 16
    int(key.fingerprint, 16)
    assert key.fingerprint == MasterKey(RAW).fingerprint
    assert key.fingerprint not in RAW.hex()
    assert key.fingerprint != MasterKey(bytes(32)).fingerprint


def test_key_refuses_pickling() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(parse_master_key(B64))


def test_urlsafe_and_whitespace_accepted() -> None:
    raw = b"\xfb\xff" * 16
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    assert parse_master_key(f"  {urlsafe}\n") == MasterKey(raw)


@pytest.mark.parametrize("bad", ["not base64!!", "abc", "%%%%"])
def test_bad_base64_is_key_invalid_one_line(bad: str) -> None:
    with pytest.raises(KeyInvalid) as err:
        parse_master_key(bad, source="BACKUP_ENCRYPTION_KEY")
    msg = str(err.value)
    assert "\n" not in msg
    assert "BACKUP_ENCRYPTION_KEY" in msg
    assert "daai-backup keygen" in msg
    assert bad not in msg


def test_wrong_length_says_expected_length() -> None:
    with pytest.raises(KeyInvalid) as err:
        parse_master_key(base64.b64encode(b"x" * 16).decode())
    msg = str(err.value)
    assert "16 bytes" in msg
    assert "32" in msg
    assert "daai-backup keygen" in msg


def test_tenant_keys_differ_per_tenant_and_master() -> None:
    k1, k2 = MasterKey(RAW), MasterKey(bytes(32))
    a = derive_tenant_key(k1, "acme")
    assert len(a) == 32
    assert a == derive_tenant_key(k1, "acme")
    assert a != derive_tenant_key(k1, "acme2")
    assert a != derive_tenant_key(k2, "acme")
    assert a != RAW


@pytest.mark.parametrize("bad", ["", "Acme", "a/b", "a b", "ä", "x" * 256])
def test_tenant_id_validated(bad: str) -> None:
    with pytest.raises(InvalidName):
        derive_tenant_key(MasterKey(RAW), bad)


def test_keyring_current_and_missing() -> None:
    assert Keyring.from_strings(B64, []).require_current() == MasterKey(RAW)
    for empty in (None, "", "  "):
        ring = Keyring.from_strings(empty, [])
        with pytest.raises(KeyMissing, match="BACKUP_ENCRYPTION_KEY"):
            ring.require_current()


def test_keyring_find_current_and_previous() -> None:
    old = generate_master_key()
    ring = Keyring.from_strings(B64, [old, ""])
    assert ring.find(MasterKey(RAW).fingerprint) == MasterKey(RAW)
    assert ring.find(parse_master_key(old).fingerprint) == parse_master_key(old)
    assert len(ring.previous) == 1


def test_keyring_find_unknown_names_fingerprints() -> None:
    ring = Keyring.from_strings(B64, [])
    with pytest.raises(WrongKey) as err:
        ring.find("0123456789abcdef")
    msg = str(err.value)
    assert "0123456789abcdef" in msg
    assert MasterKey(RAW).fingerprint in msg
    assert "BACKUP_ENCRYPTION_KEY" in msg
    assert "BACKUP_ENCRYPTION_PREVIOUS_KEYS" in msg
    with pytest.raises(WrongKey, match="configured: none"):
        Keyring(None, []).find("0123456789abcdef")


def test_previous_key_error_names_entry() -> None:
    with pytest.raises(KeyInvalid, match="BACKUP_ENCRYPTION_PREVIOUS_KEYS entry 2"):
        Keyring.from_strings(None, [B64, "short"])
