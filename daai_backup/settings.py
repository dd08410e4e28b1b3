"""Configuration, from the environment and an optional ``.env`` file (pydantic-settings).

The encryption key keeps its documented name, ``BACKUP_ENCRYPTION_KEY``, with no prefix; every
other setting starts with ``DAAI_BACKUP_``. Secrets (the keys and the MongoDB URI, which may
carry a password) are ``SecretStr``: their repr is masked and nothing in this package prints,
logs or persists their value.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from daai_backup.errors import ConfigError

if TYPE_CHECKING:
    from daai_backup.format.keys import Keyring

DEFAULT_MONGODB_URI = "mongodb://127.0.0.1:27017/"


def _default_storage_url() -> str:
    return (Path.cwd() / "var" / "storage").resolve().as_uri()


class Settings(BaseSettings):
    """Every setting of the engine. Build with ``Settings()``; tests pass values directly."""

    model_config = SettingsConfigDict(
        env_prefix="DAAI_BACKUP_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    backup_encryption_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("BACKUP_ENCRYPTION_KEY", "backup_encryption_key"),
        description="base64 of 32 random bytes: the current master key",
    )
    backup_encryption_previous_keys: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "BACKUP_ENCRYPTION_PREVIOUS_KEYS", "backup_encryption_previous_keys"
        ),
        description="comma-separated older master keys, to read archives made before a rotation",
    )
    mongodb_uri: SecretStr = Field(
        default=SecretStr(DEFAULT_MONGODB_URI),
        description="MongoDB connection string of the tenants' cluster",
    )
    control_database: str = Field(
        default="daai_backup_control",
        description="database on the tenants' cluster holding the per-tenant leases",
    )
    storage_url: str = Field(
        default_factory=_default_storage_url,
        description="file:///abs/path or s3://bucket/prefix; a tenant's root is <url>/<tenant id>",
    )
    s3_object_lock: Literal["off", "governance", "compliance"] = Field(
        default="off",
        description="S3 Object Lock mode each backup and its manifest are written with, "
        "locked until the end of their planned retention (the bucket must have Object Lock)",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="endpoint of an S3-compatible store (default: AWS)"
    )
    tenants_file: Path = Field(default=Path("tenants.yaml"), description="the tenant registry")
    tenants_uri: SecretStr | None = Field(
        default=None,
        description="mongodb:// URI of the suite's own database: when set, the tenant registry "
        "is read from a collection there instead of tenants_file (may hold a password: shown "
        "masked)",
    )
    tenants_database: str | None = Field(
        default=None,
        description="database of the tenants collection (default: the URI's database)",
    )
    tenants_collection: str = Field(
        default="tenants", description="collection holding one document per tenant"
    )
    tenants_fields: dict[str, str] = Field(
        default_factory=dict,
        description="JSON: our tenant field -> their field path (dotted for nested documents), "
        'e.g. {"id": "slug", "subscription": "billing.status"}; unmapped fields keep our name',
    )
    tenants_values: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='JSON: our field -> {their value: ours}, e.g. {"subscription": '
        '{"trialing": "active", "past_due": "active", "canceled": "suspended"}}',
    )
    tenants_filter: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON: a MongoDB query selecting the documents that are tenants, e.g. "
        '{"deleted": {"$ne": true}}',
    )
    timezone: str = Field(default="Asia/Kolkata", description="default time zone of tenants")
    max_concurrent_backups: int = Field(
        default=4, ge=1, description="global cap of concurrent backups per database cluster"
    )
    sync_concurrent_writes: int = Field(
        default=1,
        ge=1,
        le=32,
        description="deployment writes a sync sends at once: 1 for the embedded SQLite server "
        "(concurrent writes lock its file and are retried, 6-14x slower), 8 for a server on "
        "PostgreSQL",
    )
    schedule_spread_minutes: int = Field(
        default=120,
        ge=0,
        le=24 * 60,
        description="scheduled backups start within this window after 01:00 tenant time",
    )
    verify_drill_days: int = Field(
        default=7,
        ge=0,
        le=366,
        description="the verify deployment reads every tenant's newest backup whole this "
        "often (days, at 05:00 in the default time zone); 0: no scheduled drill",
    )

    copy_ttl_days: float = Field(
        default=3,
        gt=0,
        le=365,
        description="days a restore copy (`restore --into`) lives before the retention sweep "
        "drops it",
    )

    snapshot_window_seconds: float = Field(
        default=240,
        gt=0,
        le=86400,
        description="a backup reads each further collection in a fresh snapshot once its "
        "snapshot is this old (keep it below the server's minSnapshotHistoryWindowInSeconds, "
        "300 by default); the dump's change events keep the backup one moment either way",
    )

    capture_max_lag_seconds: float = Field(
        default=60,
        gt=0,
        le=3600,
        description="change capture closes a segment at most this long after its first event",
    )
    capture_buffer_mb: float = Field(
        default=64,
        gt=0,
        le=4096,
        description="change capture flushes every tenant's segment when this much is buffered",
    )
    change_window_days: float = Field(
        default=7,
        ge=0,
        le=3650,
        description="retention keeps change segments for point-in-time restore this long",
    )

    maintenance_webhook_url: str | None = Field(
        default=None,
        description="before a restore's safety backup and swap, POST here and wait for "
        '{"maintenance": true} (the suite put the workspace in maintenance); unset: no '
        "handshake",
    )
    maintenance_webhook_token: SecretStr | None = Field(
        default=None,
        description="sent as 'Authorization: Bearer <token>' to the maintenance webhook",
    )
    maintenance_webhook_timeout_seconds: float = Field(
        default=60,
        gt=0,
        le=3600,
        description="how long a restore waits for the maintenance webhook to confirm",
    )

    @field_validator("maintenance_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("the maintenance webhook URL must start with http:// or https://")
        return value.strip()

    @field_validator("tenants_uri")
    @classmethod
    def _tenants_uri(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().strip().startswith(("mongodb://", "mongodb+srv://")):
            # The value itself is not repeated: it may hold a password.
            raise ValueError("the tenants URI must start with mongodb:// or mongodb+srv://")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("tenants_database", "tenants_collection")
    @classmethod
    def _tenants_names(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if (
            not value
            or len(value) > 120
            or value.startswith("system.")
            or any(c in value for c in '/\\ "$\x00')
        ):
            raise ValueError(f"{value!r} is not a valid MongoDB database or collection name")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @field_validator("control_database")
    @classmethod
    def _database_name(cls, value: str) -> str:
        if not value or len(value) > 63 or any(c in value for c in '/\\. "$\x00'):
            raise ValueError(
                f"control database name {value!r} is not a valid MongoDB database name "
                '(1-63 characters, none of / \\ . space " $)'
            )
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, value: str) -> str:
        if not value.startswith(("file:///", "s3://", "memory://")):
            raise ValueError(
                f"storage URL {value!r} must be file:///absolute/path or s3://bucket/prefix"
            )
        return value.rstrip("/")

    @cached_property
    def keyring(self) -> Keyring:
        """Current and previous master keys; raises ``KeyInvalid`` for a malformed key.

        Having no current key is not an error here: legacy plaintext restores still work,
        and backups ask ``keyring.require_current()``.
        """
        from daai_backup.format.keys import Keyring

        current = (
            self.backup_encryption_key.get_secret_value().strip() or None
            if (self.backup_encryption_key is not None)
            else None
        )
        previous_raw = (
            self.backup_encryption_previous_keys.get_secret_value()
            if self.backup_encryption_previous_keys is not None
            else ""
        )
        previous = [part.strip() for part in previous_raw.split(",") if part.strip()]
        return Keyring.from_strings(current, previous)


def load_settings() -> Settings:
    """``Settings()`` from the environment and ``.env``; a bad value is one ``ConfigError`` line."""
    try:
        return Settings()
    except SettingsError as exc:  # a JSON setting (tenants_fields, ...) that does not parse
        field = str(exc).partition('field "')[2].partition('"')[0] or "(unknown)"
        raise ConfigError(f"setting {field}: not valid JSON") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(part) for part in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"setting {field}: {message}") from None
