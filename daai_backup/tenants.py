"""The tenant registry: who is backed up, how often, where, and who may do what.

Loaded from a YAML file (``DAAI_BACKUP_TENANTS_FILE``)::

    tenants:
      - id: acme-hr                   # lowercase letters, digits, '-'; a path and a Prefect name
        workspace_name: Acme HR       # a restore must be confirmed by typing this exactly
        database: acme_hr             # default: the id
        frequency: 15-day             # a scheduled label of the frequency table
        environment: production       # production | sandbox ('daily' is sandbox only)
        subscription: active          # active | suspended
        timezone: Asia/Kolkata        # default: DAAI_BACKUP_TIMEZONE
        storage_quota_mb: 2048        # optional
        storage_url: s3://bucket/acme # optional per-tenant root (default <storage url>/<id>)
        permissions:                  # user -> subset of create (Backup Now), restore
          priya@acme.example: [create, restore]
        frequency_override:           # optional temporary bump
          frequency: 24-hour
          until: 2026-12-31T00:00:00+05:30

Every validation error names the tenant and the field. A key written twice in one mapping
(anywhere in the file) is refused with its line: YAML would silently keep the last one, so a
user listed twice under ``permissions`` would lose the first entry's permissions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from daai_backup import policy
from daai_backup.errors import (
    ConfigError,
    PermissionDenied,
    TenantsFileInvalid,
    UnknownTenant,
)

TENANT_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# MongoDB database names: no /\. "$*<>:|? or space, at most 63 bytes.
DATABASE_RE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")

Permission = Literal["create", "restore"]


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as Asia/Kolkata)"
        ) from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]


class FrequencyOverride(BaseModel):
    """A temporary frequency that applies until ``until``, then the tenant's own returns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frequency: str
    until: datetime

    @field_validator("until")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("until needs a UTC offset, e.g. 2026-12-31T00:00:00+05:30")
        return value


class Tenant(BaseModel):
    """One tenant of the suite, as the registry describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    workspace_name: str = Field(min_length=1, max_length=200)
    database: str = ""
    frequency: str = policy.DEFAULT_FREQUENCY
    environment: Literal["production", "sandbox"] = "production"
    subscription: Literal["active", "suspended"] = "active"
    timezone: TimeZoneName | None = None
    storage_quota_mb: int | None = Field(default=None, gt=0)
    storage_url: str | None = None
    permissions: dict[str, frozenset[Permission]] = Field(default_factory=dict)
    frequency_override: FrequencyOverride | None = None

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not TENANT_ID_RE.fullmatch(value):
            raise ValueError(
                "must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'"
            )
        return value

    @field_validator("storage_url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("file:///", "s3://", "memory://")):
            raise ValueError("must be file:///absolute/path or s3://bucket/prefix")
        # Kept as written: canonical_location gives every spelling of a place one form.
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Tenant:
        if not self.database:
            object.__setattr__(self, "database", self.id.replace("-", "_"))
        if not DATABASE_RE.fullmatch(self.database):
            raise ValueError(f"database {self.database!r} is not a valid MongoDB database name")
        try:
            policy.scheduled_frequency(self.frequency, self.environment)
            if self.frequency_override is not None:
                policy.scheduled_frequency(self.frequency_override.frequency, self.environment)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def zone(self, default: str) -> ZoneInfo:
        return ZoneInfo(self.timezone or default)

    def active_frequency(self, now: datetime | None = None) -> str:
        """The label in force at ``now``: the override until it expires, else the tenant's."""
        now = now or datetime.now(UTC)
        override = self.frequency_override
        if override is not None and now < override.until:
            return override.frequency
        return self.frequency

    def storage_root(self, default_storage_url: str) -> str:
        """This tenant's storage root: its own ``storage_url``, else ``<default>/<id>``."""
        return self.storage_url or f"{default_storage_url.rstrip('/')}/{self.id}"

    def can(self, actor: str, permission: Permission) -> bool:
        return permission in self.permissions.get(actor, frozenset())

    def require(self, actor: str | None, permission: Permission) -> None:
        """Raise ``PermissionDenied`` unless ``actor`` holds ``permission`` on this tenant."""
        action = {"create": "take a backup (Backup Now)", "restore": "restore a backup"}[permission]
        if not actor:
            raise PermissionDenied(
                f"an actor is needed to {action} of tenant {self.id!r}: give the user's name "
                "as the actor parameter (--actor on the command line)"
            )
        if not self.can(actor, permission):
            raise PermissionDenied(
                f"{actor!r} may not {action} of tenant {self.id!r}: grant {permission!r} to "
                "them under permissions in the tenant registry"
            )


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenants: list[dict[str, object]] = Field(default_factory=list)


class TenantRegistry(Mapping[str, Tenant]):
    """Tenants by id. ``registry[tenant_id]`` raises ``UnknownTenant`` for an unknown id."""

    def __init__(self, tenants: list[Tenant]) -> None:
        self._tenants: dict[str, Tenant] = {}
        for tenant in tenants:
            if tenant.id in self._tenants:
                raise TenantsFileInvalid(f"tenant {tenant.id!r} is listed twice")
            self._tenants[tenant.id] = tenant
        # MongoDB refuses two databases whose names differ only in case, so a tenant whose
        # name is another's in other letters would back up nothing and restore into the
        # other tenant's database: compare case-insensitively.
        databases: dict[str, str] = {}
        for tenant in tenants:
            other = databases.setdefault(tenant.database.lower(), tenant.id)
            if other != tenant.id:
                raise TenantsFileInvalid(
                    f"tenants {other!r} and {tenant.id!r} share database {tenant.database!r} "
                    "(names that differ only in case are one database to MongoDB): each "
                    "tenant needs its own"
                )

    def check_databases(self, control_database: str) -> None:
        """Refuse a tenant whose database is MongoDB's own or the product's control database.

        A restore makes the tenant's database exactly its snapshot, dropping what the
        snapshot lacks: aimed at ``admin``, ``config``, ``local`` or the control database (the
        tenant leases), it would wreck the cluster or the product's own exclusion.
        """
        reserved = {"admin", "config", "local", control_database.lower()}
        for tenant in self._tenants.values():
            if tenant.database.lower() in reserved:
                raise TenantsFileInvalid(
                    f"tenant {tenant.id!r}: database {tenant.database!r} is reserved (MongoDB's "
                    f"own or daai-backup's control database {control_database!r}); give the "
                    "tenant its own database"
                )

    def check_storage_roots(self, default_storage_url: str) -> None:
        """Refuse tenants whose storage folders are the same, nested, or hold the default root.

        Each tenant's backups must live under a folder no other tenant can reach: a
        per-tenant ``storage_url`` pointing at (or inside, or above) another tenant's folder
        would let one tenant list, restore from, or prune the other's backups. Folders are
        compared by :func:`~daai_backup.storage.canonical_location`, so another spelling of
        the same place (``//``, ``/./``, a trailing '/', ``%2F``, a symlink) is caught too;
        the backends are built from the same canonical location.
        """
        # On use: the storage package loads boto3, which reading the registry does not need.
        from daai_backup.storage import canonical_location

        default = canonical_location(default_storage_url)
        roots: dict[str, str] = {}
        for tenant in self._tenants.values():
            spelled = tenant.storage_root(default_storage_url)
            try:
                root = canonical_location(spelled)
            except ConfigError as exc:
                raise TenantsFileInvalid(f"tenant {tenant.id!r}: {exc}") from None
            shown = repr(root) if root == spelled else f"{root!r} (written {spelled!r})"
            other = roots.setdefault(root, tenant.id)
            if other != tenant.id:
                raise TenantsFileInvalid(
                    f"tenants {other!r} and {tenant.id!r} share the storage root {shown}: "
                    "each tenant needs a folder of its own"
                )
            if root == default or root in _outer_locations(default):
                raise TenantsFileInvalid(
                    f"tenant {tenant.id!r}: storage_url {shown} holds every tenant's default "
                    "folder: give it a folder of its own"
                )
        for root, tenant_id in roots.items():
            for outer in _outer_locations(root):
                owner = roots.get(outer)
                if owner is not None:
                    raise TenantsFileInvalid(
                        f"tenant {tenant_id!r}: storage root {root!r} lies inside tenant "
                        f"{owner!r}'s root {outer!r}: each tenant needs a folder of its own"
                    )

    def __getitem__(self, tenant_id: str) -> Tenant:
        try:
            return self._tenants[tenant_id]
        except KeyError:
            raise UnknownTenant(tenant_id) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tenants)

    def __len__(self) -> int:
        return len(self._tenants)

    @classmethod
    def from_data(cls, data: object, source: str = "tenants file") -> TenantRegistry:
        """Validate parsed YAML; errors name the source, the tenant and the field."""
        if data is None:
            data = {}
        try:
            raw = _RegistryFile.model_validate(data)
        except ValidationError as exc:
            raise TenantsFileInvalid(
                f"{source}: expected a mapping with a 'tenants' list ({_first_error(exc)})"
            ) from None
        tenants: list[Tenant] = []
        for index, item in enumerate(raw.tenants):
            label = (
                repr(item.get("id"))
                if isinstance(item, dict) and "id" in item
                else (f"#{index + 1}")
            )
            try:
                tenants.append(Tenant.model_validate(item))
            except ValidationError as exc:
                raise TenantsFileInvalid(f"{source}: tenant {label}: {_first_error(exc)}") from None
        return cls(tenants)

    @classmethod
    def load(cls, path: Path) -> TenantRegistry:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TenantsFileInvalid(
                f"tenants file {str(path)!r} does not exist: create it or set "
                "DAAI_BACKUP_TENANTS_FILE"
            ) from None
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
        except _DuplicateKey as dup:
            raise TenantsFileInvalid(
                f"{path} line {dup.line}: key {dup.key!r} appears twice in the same mapping "
                f"(first at line {dup.first_line}): keep one"
            ) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise TenantsFileInvalid(f"{path}: not valid YAML{where}") from None
        return cls.from_data(data, source=str(path))


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int, first_line: int) -> None:
        super().__init__(f"key {key!r} at line {line} appears twice")
        self.key, self.line, self.first_line = key, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<' merges; keys it brings in may be overridden, as YAML intends
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, line, seen[key])
                seen[key] = line
            except TypeError:
                continue  # an unhashable key: the base class refuses it with its own error
        return super().construct_mapping(node, deep=deep)


def _outer_locations(location: str) -> list[str]:
    """Every canonical location that strictly contains ``location``, outermost first.

    ``file:///srv/b/acme`` -> ``file:///``, ``file:///srv``, ``file:///srv/b``;
    ``s3://bucket/p/acme`` -> ``s3://bucket``, ``s3://bucket/p``.
    """
    scheme, _, rest = location.partition("://")
    absolute = rest.startswith("/")  # a file path; its root '/' holds every file location
    base = f"{scheme}://{'/' if absolute else ''}"
    segments = [s for s in rest.split("/") if s]
    return [base + "/".join(segments[:end]) for end in range(0 if absolute else 1, len(segments))]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(part) for part in err["loc"]) or "(top level)"
    message = err["msg"].removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"field {field!r}: {message}{suffix}"
