"""Where the tenant registry comes from: the YAML file, or the suite's own MongoDB collection.

Every caller reads the registry through :func:`load_registry`. With ``DAAI_BACKUP_TENANTS_URI``
unset (the embedded default, ``make up``) it is ``DAAI_BACKUP_TENANTS_FILE``; with it set, it is
one document per tenant in the collection ``DAAI_BACKUP_TENANTS_COLLECTION`` of
``DAAI_BACKUP_TENANTS_DATABASE`` on that server, read fresh at every call (so a flow run sees
the subscription state and permissions as they are when it starts)::

    {"_id": ObjectId(...), "slug": "acme-hr", "name": "Acme HR",
     "billing": {"status": "past_due"}, "backup": {"frequency": "7-day"},
     "members": [{"user": "priya@acme.example", "permissions": ["create", "restore"]}],
     "crm_data": ...}                                   # anything else is ignored

    DAAI_BACKUP_TENANTS_FIELDS='{"id": "slug", "workspace_name": "name",
        "subscription": "billing.status", "frequency": "backup.frequency",
        "permissions": "members"}'
    DAAI_BACKUP_TENANTS_VALUES='{"subscription": {"trialing": "active",
        "past_due": "active", "canceled": "suspended"}}'
    DAAI_BACKUP_TENANTS_FILTER='{"deleted": {"$ne": true}}'

Only the fields of :class:`~daai_backup.tenants.Tenant` are read (a projection: the suite's
other data never leaves its server); a field not mapped is read under our own name; a missing
or ``null`` field takes the registry's default. ``permissions`` is either a sub-document
``{user: [permission, ...]}`` or a list of ``{"user": ..., "permissions": [...]}`` (e-mail
addresses hold dots, which MongoDB paths cannot address). The documents are then validated
exactly as the YAML file is (the same model and cross-tenant checks); an error is one line
naming the collection (the URI with its password masked), the tenant (its id, else the
document's ``_id``) and the field in our name, with the suite's path beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pydantic import ValidationError

from daai_backup.errors import (
    ConfigError,
    DatabaseError,
    TenantsFileInvalid,
    TransientDatabaseError,
)
from daai_backup.tenants import Tenant, TenantRegistry

if TYPE_CHECKING:
    from daai_backup.settings import Settings

TENANT_FIELDS: tuple[str, ...] = tuple(Tenant.model_fields)
DEFAULT_TIMEOUT_MS = 10_000


def load_registry(settings: Settings, *, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> TenantRegistry:
    """The tenant registry the settings point at: the MongoDB collection, else the YAML file."""
    if settings.tenants_uri is None:
        return TenantRegistry.load(settings.tenants_file)
    return MongoTenantSource.from_settings(settings, timeout_ms=timeout_ms).load()


def describe_source(settings: Settings) -> str:
    """Where the registry comes from, fit to print (a URI's password masked)."""
    if settings.tenants_uri is None:
        return str(settings.tenants_file)
    return MongoTenantSource.from_settings(settings).label


def mask_uri(uri: str) -> str:
    """``uri`` without its secrets: the password as ``***`` and no options (``?...`` can carry
    TLS key passwords or cloud tokens). ``mongodb://app:s3cret@db1,db2/suite?tls=true`` ->
    ``mongodb://app:***@db1,db2/suite``."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "(not a URI)"
    rest = rest.partition("?")[0]
    authority, slash, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}{':***' if colon else ''}@{hosts}"
    return f"{scheme}://{authority}{slash}{path}"


def uri_database(uri: str) -> str | None:
    """The database named in the URI's path (``mongodb://h/suite`` -> ``suite``), if any."""
    rest = uri.partition("://")[2].partition("?")[0]
    path = rest.partition("/")[2]
    return unquote(path) or None


@dataclass(frozen=True)
class MongoTenantSource:
    """One collection of the suite's database, read as the tenant registry."""

    uri: str = field(repr=False)
    database: str
    collection: str
    fields: Mapping[str, str] = field(default_factory=dict)
    """Our field -> their path (dotted into sub-documents); unmapped fields keep our name."""
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Our field -> {their value: ours}; other values pass through to validation."""
    filter: Mapping[str, Any] = field(default_factory=dict)
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    def __post_init__(self) -> None:
        for ours in (*self.fields, *self.values):
            if ours not in TENANT_FIELDS:
                raise ConfigError(
                    f"setting tenants_fields/tenants_values: {ours!r} is not a tenant field "
                    f"(one of {', '.join(TENANT_FIELDS)})"
                )
        for ours, theirs in self.fields.items():
            parts = theirs.split(".")
            if not theirs or any(not p or p.startswith("$") for p in parts):
                raise ConfigError(
                    f"setting tenants_fields: {ours!r} maps to {theirs!r}, which is not a field "
                    "path (names joined by '.', none empty or starting with '$')"
                )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, timeout_ms: int = DEFAULT_TIMEOUT_MS
    ) -> MongoTenantSource:
        if settings.tenants_uri is None:
            raise ConfigError("DAAI_BACKUP_TENANTS_URI is not set")
        uri = settings.tenants_uri.get_secret_value()
        database = settings.tenants_database or uri_database(uri)
        if not database:
            raise ConfigError(
                f"the tenants collection's database is not named: set "
                f"DAAI_BACKUP_TENANTS_DATABASE or put it in the URI ({mask_uri(uri)}/<database>)"
            )
        return cls(
            uri=uri,
            database=database,
            collection=settings.tenants_collection,
            fields=dict(settings.tenants_fields),
            values={k: dict(v) for k, v in settings.tenants_values.items()},
            filter=dict(settings.tenants_filter),
            timeout_ms=timeout_ms,
        )

    @property
    def label(self) -> str:
        """The source as errors and ``doctor`` name it (password masked)."""
        return f"tenants collection {self.database}.{self.collection} at {mask_uri(self.uri)}"

    def path(self, ours: str) -> str:
        return self.fields.get(ours, ours)

    def documents(self) -> list[dict[str, Any]]:
        """The tenant documents, with only the fields we read (and ``_id``)."""
        from pymongo import MongoClient
        from pymongo.errors import (
            ConfigurationError,
            ConnectionFailure,
            OperationFailure,
            PyMongoError,
        )

        projection = {self.path(ours): 1 for ours in TENANT_FIELDS}
        # Two paths where one is the other's prefix collide in a projection: keep the outer.
        for path in list(projection):
            if any(path.startswith(other + ".") for other in projection if other != path):
                del projection[path]
        client: MongoClient[dict[str, Any]] | None = None
        try:
            client = MongoClient(
                self.uri,
                serverSelectionTimeoutMS=self.timeout_ms,
                connectTimeoutMS=self.timeout_ms,
                appname="daai-backup-registry",
                tz_aware=True,
            )
            cursor = client[self.database][self.collection].find(dict(self.filter), projection)
            return list(cursor)
        except ConfigurationError:
            # pymongo's text may quote the URI: name the setting, never the value.
            raise ConfigError(
                f"{self.label}: DAAI_BACKUP_TENANTS_URI is not a valid MongoDB URI or names "
                "unknown options"
            ) from None
        except ConnectionFailure as exc:
            raise TransientDatabaseError(
                f"{self.label}: MongoDB cannot be reached ({type(exc).__name__}): check the "
                "server and DAAI_BACKUP_TENANTS_URI; a scheduled run retries"
            ) from None
        except OperationFailure as exc:
            if exc.code in (13, 18):  # Unauthorized, AuthenticationFailed
                raise ConfigError(
                    f"{self.label}: the server refused the credentials or the read (code "
                    f"{exc.code}): give the URI's user read access to the collection"
                ) from None
            raise DatabaseError(
                f"{self.label}: the read failed (code {exc.code}): check "
                "DAAI_BACKUP_TENANTS_FILTER and the collection"
            ) from None
        except PyMongoError as exc:
            raise DatabaseError(f"{self.label}: the read failed ({type(exc).__name__})") from None
        finally:
            if client is not None:
                client.close()

    def tenant_data(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """One document as the registry's tenant entry: our names, mapped values."""
        entry: dict[str, Any] = {}
        for ours in TENANT_FIELDS:
            value = _get_path(document, self.path(ours))
            if value is None:
                continue
            mapping = self.values.get(ours)
            if mapping is not None and isinstance(value, str) and value in mapping:
                value = mapping[value]
            if ours == "permissions" and isinstance(value, list):
                value = self._permissions_from_list(document, value)
            entry[ours] = value
        return entry

    def _permissions_from_list(self, document: Mapping[str, Any], items: list[Any]) -> Any:
        granted: dict[str, Any] = {}
        for item in items:
            if not (isinstance(item, Mapping) and set(item) == {"user", "permissions"}):
                return items  # validation refuses it with the field named
            user = item["user"]
            if isinstance(user, str) and user in granted:
                raise TenantsFileInvalid(
                    f"{self.label}: tenant {self._name(document)}: field 'permissions' "
                    f"({self.path('permissions')}): user {user!r} is listed twice: keep one"
                )
            granted[user] = item["permissions"]
        return granted

    def _name(self, document: Mapping[str, Any]) -> str:
        tenant_id = _get_path(document, self.path("id"))
        if tenant_id is not None:
            return repr(tenant_id)
        return f"(document _id {document.get('_id')!r}, no {self.path('id')!r})"

    def load(self) -> TenantRegistry:
        """Read and validate every tenant; ``TenantsFileInvalid`` names the first problem."""
        tenants: list[Tenant] = []
        seen: dict[str, Any] = {}
        for document in self.documents():
            try:
                tenant = Tenant.model_validate(self.tenant_data(document))
            except ValidationError as exc:
                raise TenantsFileInvalid(
                    f"{self.label}: tenant {self._name(document)}: {self._first_error(exc)}"
                ) from None
            if tenant.id in seen:
                raise TenantsFileInvalid(
                    f"{self.label}: tenant {tenant.id!r} is listed twice (documents _id "
                    f"{seen[tenant.id]!r} and {document.get('_id')!r}): keep one"
                )
            seen[tenant.id] = document.get("_id")
            tenants.append(tenant)
        try:
            return TenantRegistry(tenants)
        except TenantsFileInvalid as exc:
            raise TenantsFileInvalid(f"{self.label}: {exc}") from None

    def _first_error(self, exc: ValidationError) -> str:
        err = exc.errors()[0]
        loc = [str(part) for part in err["loc"]]
        ours = ".".join(loc) or "(top level)"
        where = ""
        if loc and loc[0] in TENANT_FIELDS and self.path(loc[0]) != loc[0]:
            where = f" ({'.'.join([self.path(loc[0]), *loc[1:]])} in the collection)"
        message = err["msg"].removeprefix("Value error, ")
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        return f"field {ours!r}{where}: {message}{suffix}"


def _get_path(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value
