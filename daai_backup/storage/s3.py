"""An S3 bucket (or a prefix inside one) as storage (``s3://bucket/prefix``), with boto3.

Writes use boto3's managed transfer: objects above 8 MiB go up as a multipart upload in
8 MiB parts, a few at a time, so memory stays bounded whatever the size; the object appears
only when the upload completes. On failure the multipart upload is aborted (s3transfer does
it, and :meth:`S3Storage.put_stream` checks that none is left), so no billable part lingers.

A write killed outright (``kill -9``) cannot abort its upload, and S3 keeps its parts (and
bills them) until someone does: :meth:`S3Storage.space_used` counts them and
:meth:`S3Storage.remove_incomplete` aborts every multipart upload under a prefix. S3 cannot
tell a live upload from a dead one; the contract makes that the caller's concern (it holds
the right to write there).

Retries: botocore retries each single request ("standard" mode: throttling, 5xx, connection
errors, with backoff). Once those are spent, the error reaches the caller as
:class:`TransientStorageError`; permanent ones (access denied, no such bucket) as
:class:`StorageError`.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from daai_backup.errors import (
    ConfigError,
    InvalidName,
    ObjectLocked,
    ObjectNotFound,
    StorageError,
    TransientStorageError,
)
from daai_backup.storage.base import (
    CHUNK_SIZE,
    ObjectInfo,
    Storage,
    join_key,
    validate_key,
    validate_metadata,
    validate_prefix,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

PART_SIZE = 8 * 1024 * 1024

_SESSION_LOCK = threading.Lock()
_SESSION: boto3.session.Session | None = None


def _session() -> boto3.session.Session:
    global _SESSION
    if _SESSION is None:
        _SESSION = boto3.session.Session()
    return _SESSION


_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
}
_DENIED_CODES = {
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "AllAccessDisabled",
}


def _translate(exc: Exception, what: str, bucket: str) -> StorageError:
    """Turn a botocore error into the hierarchy, with a one-line message a person can act on."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("NoSuchBucket",) or (code == "404" and what.startswith("cannot reach")):
            return StorageError(
                f"{what}: bucket {bucket!r} does not exist; create it or fix the storage URL"
            )
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return ObjectNotFound(f"{what}: no such object")
        if code in _DENIED_CODES or status == 403:
            return StorageError(
                f"{what}: access denied ({code}); check the AWS credentials and that the "
                f"bucket policy allows this on {bucket!r}"
            )
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientStorageError(f"{what}: S3 answered {code or status}; try again")
        message = error.get("Message", "") or code
        return StorageError(f"{what}: S3 refused it ({code}: {message})")
    if isinstance(exc, NoCredentialsError):
        return StorageError(
            f"{what}: no AWS credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "or an AWS profile"
        )
    if isinstance(
        exc,
        EndpointConnectionError
        | ConnectionError
        | ReadTimeoutError
        | IncompleteReadError
        | ResponseStreamingError,
    ):
        return TransientStorageError(f"{what}: cannot reach S3 ({exc}); check the network")
    return StorageError(f"{what}: {exc}")


class _FullReads:
    """Makes ``read(n)`` return exactly ``n`` bytes until the end of the source.

    s3transfer decides between one PUT and a multipart upload, and sizes each part, from
    what a single ``read(n)`` returns. A source that returns short reads (a pipe, a
    decrypting stream) would make it buffer the whole stream for one PUT; reading fully
    keeps every upload multipart with bounded, part-sized buffers.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self._source.read()
        first = self._source.read(size)
        if len(first) >= size or not first:
            return first  # the common case: no copy
        buffer = bytearray(first)
        while len(buffer) < size:
            chunk = self._source.read(size - len(buffer))
            if not chunk:
                break
            buffer += chunk
        return bytes(buffer)


class _BodyReader(io.RawIOBase):
    """A raw stream over an S3 GET body that translates network errors while reading."""

    def __init__(self, body: Any, what: str, bucket: str) -> None:
        self._body = body
        self._what = what
        self._bucket = bucket

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data: bytes = self._body.read(len(view))
        except (BotoCoreError, OSError) as exc:
            raise _translate(exc, self._what, self._bucket) from exc
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Storage(Storage):
    """Objects under ``prefix`` in ``bucket``; ``endpoint_url`` for S3-compatible servers."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        part_size: int = PART_SIZE,
        max_concurrency: int = 4,
        max_attempts: int = 5,
        object_lock: str | None = None,
    ) -> None:
        if object_lock not in (None, "governance", "compliance"):
            raise ConfigError(
                f"S3 Object Lock mode {object_lock!r} is not known: use governance or compliance"
            )
        self._lock_mode = object_lock
        self._lock_checked = False
        if prefix.strip("/"):
            validate_key(prefix.strip("/"))
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._endpoint_url = endpoint_url
        config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=max(10, max_concurrency * 2),
        )
        with _SESSION_LOCK:
            # One shared session: it caches the loaded service model, so a client per tenant
            # costs milliseconds instead of ~0.3 s. Creating clients is guarded because
            # sessions are not thread-safe; the clients themselves are.
            self._client: S3Client = _session().client(
                "s3", endpoint_url=endpoint_url, config=config
            )
        self._transfer = TransferConfig(
            multipart_threshold=part_size,
            multipart_chunksize=part_size,
            max_concurrency=max_concurrency,
            use_threads=True,
            preferred_transfer_client="classic",
        )
        # A non-seekable source is read into part-sized buffers; cap how many may wait,
        # so an upload holds at most a few parts in memory (s3transfer's default is 10).
        self._transfer.max_in_memory_upload_chunks = max_concurrency + 1

    @property
    def url(self) -> str:
        return f"s3://{join_key(self._bucket, self._prefix)}"

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def client(self) -> S3Client:
        """The boto3 client (for tests and benchmarks that need raw access)."""
        return self._client

    def full_key(self, key: str) -> str:
        """The S3 object key of ``key`` (the prefix joined in front)."""
        return join_key(self._prefix, validate_key(key))

    @property
    def object_lock(self) -> str | None:
        """The Object Lock mode backups are written with (None: no lock)."""
        return self._lock_mode

    def check_object_lock(self) -> str:
        """Refuse (``ConfigError``, one line) a bucket whose Object Lock settings contradict
        the configured mode; a line saying what is in force otherwise. Checked once."""
        try:
            config = self._client.get_object_lock_configuration(Bucket=self._bucket)
            lock = config.get("ObjectLockConfiguration", {})
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code != "ObjectLockConfigurationNotFoundError":
                raise _translate(
                    exc, f"cannot read Object Lock of {self.url}", self._bucket
                ) from exc
            lock = {}
        except BotoCoreError as exc:
            raise _translate(exc, f"cannot read Object Lock of {self.url}", self._bucket) from exc
        enabled = lock.get("ObjectLockEnabled") == "Enabled"
        default = lock.get("Rule", {}).get("DefaultRetention")
        if self._lock_mode and not enabled:
            raise ConfigError(
                f"DAAI_BACKUP_S3_OBJECT_LOCK is {self._lock_mode} but bucket {self._bucket!r} "
                "has no Object Lock: use a bucket created with Object Lock enabled, or set it "
                "to off"
            )
        if default:
            raise ConfigError(
                f"bucket {self._bucket!r} has a default Object Lock retention "
                f"({default.get('Mode')}, {default.get('Days') or default.get('Years')} "
                f"{'days' if default.get('Days') else 'years'}): it would lock the listing "
                "index, markers and records too; remove the default rule (daai-backup dates "
                "each backup itself with DAAI_BACKUP_S3_OBJECT_LOCK)"
            )
        self._lock_checked = True
        if self._lock_mode:
            return f"Object Lock {self._lock_mode}: each backup locked until its retention ends"
        return "no Object Lock" if not enabled else "Object Lock enabled, not used (off)"

    def put_stream(
        self,
        key: str,
        source: BinaryIO,
        metadata: Mapping[str, str] | None = None,
        *,
        retain_until: datetime | None = None,
    ) -> ObjectInfo:
        """:meth:`Storage.put_stream`; with ``retain_until`` (and an Object Lock mode) the
        object is written locked until then, in the same request (never unlocked meanwhile)."""
        full = self.full_key(key)
        meta = validate_metadata(metadata)
        started = datetime.now(UTC)
        what = f"cannot write {key!r} to {self.url}"
        extra: dict[str, Any] = {"Metadata": meta}
        if retain_until is not None and self._lock_mode:
            if not self._lock_checked:
                self.check_object_lock()
            extra["ObjectLockMode"] = self._lock_mode.upper()
            extra["ObjectLockRetainUntilDate"] = retain_until
            extra["ChecksumAlgorithm"] = "CRC32"  # S3 wants a checksum on locked writes
        try:
            self._client.upload_fileobj(
                cast(BinaryIO, _FullReads(source)),
                self._bucket,
                full,
                ExtraArgs=extra,
                Config=self._transfer,
            )
        except BaseException as exc:
            self._abort_uploads(full, started)
            if isinstance(exc, BotoCoreError | ClientError):
                raise _translate(exc, what, self._bucket) from exc
            cause = exc.__cause__
            if isinstance(cause, BotoCoreError | ClientError):
                raise _translate(cause, what, self._bucket) from exc
            raise
        return self.stat(key)

    def _abort_uploads(self, full: str, started: datetime) -> None:
        """Abort multipart uploads of ``full`` begun by this write (s3transfer normally has)."""
        try:
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self._bucket, Prefix=full
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    initiated = upload.get("Initiated")
                    if upload.get("Key") != full or (
                        initiated is not None and initiated < started - timedelta(minutes=1)
                    ):
                        continue
                    self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=full, UploadId=upload["UploadId"]
                    )
        except (BotoCoreError, ClientError):
            # Best effort: the original failure is what the caller needs to see. A bucket
            # lifecycle rule (AbortIncompleteMultipartUpload) is the backstop.
            return

    def open_read(self, key: str) -> BinaryIO:
        what = f"cannot read {key!r} from {self.url}"
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=self.full_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, what, self._bucket) from exc
        raw = _BodyReader(response["Body"], what, self._bucket)
        return cast(BinaryIO, io.BufferedReader(raw, CHUNK_SIZE))

    def stat(self, key: str) -> ObjectInfo:
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=self.full_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, f"cannot stat {key!r} in {self.url}", self._bucket) from exc
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            modified=head["LastModified"].astimezone(UTC),
            metadata=MappingProxyType(dict(head.get("Metadata", {}))),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        root = self._root()
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=root + prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(root) :]
                    try:
                        validate_key(key)
                    except InvalidName:
                        continue  # not an object this contract could have written
                    yield ObjectInfo(
                        key=key,
                        size=int(obj["Size"]),
                        modified=obj["LastModified"].astimezone(UTC),
                        metadata=MappingProxyType({}),
                    )
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, f"cannot list {prefix!r} in {self.url}", self._bucket) from exc

    def _root(self) -> str:
        return f"{self._prefix}/" if self._prefix else ""

    def _incomplete_uploads(self, prefix: str) -> Iterator[tuple[str, str, int]]:
        """``(S3 key, upload id, bytes of its parts)`` of every multipart upload under prefix."""
        pages = self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self._bucket, Prefix=self._root() + prefix
        )
        for page in pages:
            for upload in page.get("Uploads", []):
                key, upload_id = upload["Key"], upload["UploadId"]
                size = 0
                try:
                    parts = self._client.get_paginator("list_parts").paginate(
                        Bucket=self._bucket, Key=key, UploadId=upload_id
                    )
                    size = sum(int(p["Size"]) for pg in parts for p in pg.get("Parts", []))
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                        raise
                    continue  # completed or aborted since the listing
                yield key, upload_id, size

    def space_used(self, prefix: str = "") -> int:
        validate_prefix(prefix)
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=self._root() + prefix
            )
            # Every object, also keys list() skips: they take space all the same.
            total = sum(int(o["Size"]) for page in pages for o in page.get("Contents", []))
            return total + sum(size for _, _, size in self._incomplete_uploads(prefix))
        except (BotoCoreError, ClientError) as exc:
            what = f"cannot measure {prefix!r} in {self.url}"
            raise _translate(exc, what, self._bucket) from exc

    def remove_incomplete(self, prefix: str = "") -> int:
        validate_prefix(prefix)
        freed = 0
        try:
            for key, upload_id, size in list(self._incomplete_uploads(prefix)):
                try:
                    self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=key, UploadId=upload_id
                    )
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                        raise
                    continue  # finished meanwhile
                freed += size
        except (BotoCoreError, ClientError) as exc:
            what = f"cannot abort unfinished uploads under {prefix!r} in {self.url}"
            raise _translate(exc, what, self._bucket) from exc
        return freed

    def lock_of(self, key: str) -> tuple[datetime | None, bool]:
        """``(retain-until date, legal hold)`` of ``key``'s current version (one HEAD)."""
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=self.full_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, f"cannot stat {key!r} in {self.url}", self._bucket) from exc
        until = head.get("ObjectLockRetainUntilDate")
        held = head.get("ObjectLockLegalHoldStatus") == "ON"
        return (until.astimezone(UTC) if until is not None else None), held

    def set_retention(self, key: str, until: datetime) -> None:
        """Lock ``key``'s current version until ``until`` in the configured mode."""
        if not self._lock_mode:
            return
        try:
            self._client.put_object_retention(
                Bucket=self._bucket,
                Key=self.full_key(key),
                Retention=cast(Any, {"Mode": self._lock_mode.upper(), "RetainUntilDate": until}),
            )
        except (BotoCoreError, ClientError) as exc:
            what = f"cannot lock {key!r} in {self.url}"
            raise _translate(exc, what, self._bucket) from exc

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Put (or lift) an Object Lock legal hold on ``key``'s current version."""
        try:
            self._client.put_object_legal_hold(
                Bucket=self._bucket,
                Key=self.full_key(key),
                LegalHold={"Status": "ON" if on else "OFF"},
            )
        except (BotoCoreError, ClientError) as exc:
            what = f"cannot {'put' if on else 'lift'} the legal hold of {key!r} in {self.url}"
            raise _translate(exc, what, self._bucket) from exc

    def delete(self, key: str) -> None:
        if self._lock_mode:
            self._delete_version(key)
            return
        try:
            self._client.delete_object(Bucket=self._bucket, Key=self.full_key(key))
        except (BotoCoreError, ClientError) as exc:
            error = _translate(exc, f"cannot delete {key!r} from {self.url}", self._bucket)
            if isinstance(error, ObjectNotFound):
                return
            raise error from exc

    def _delete_version(self, key: str) -> None:
        """On an Object Lock bucket (always versioned) delete the current *version*: a plain
        delete would only add a delete marker, hiding a locked object instead of refusing."""
        full = self.full_key(key)
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=full)
        except (BotoCoreError, ClientError) as exc:
            error = _translate(exc, f"cannot delete {key!r} from {self.url}", self._bucket)
            if isinstance(error, ObjectNotFound):
                return
            raise error from exc
        version = head.get("VersionId")
        try:
            if version:
                self._client.delete_object(Bucket=self._bucket, Key=full, VersionId=version)
            else:
                self._client.delete_object(Bucket=self._bucket, Key=full)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            until = head.get("ObjectLockRetainUntilDate")
            if code == "AccessDenied" and (
                until is not None or head.get("ObjectLockLegalHoldStatus") == "ON"
            ):
                why = (
                    f"until {until.astimezone(UTC).isoformat(timespec='seconds')}"
                    if until is not None
                    else "by a legal hold"
                )
                raise ObjectLocked(
                    f"cannot delete {key!r} from {self.url}: S3 Object Lock keeps it {why}; "
                    "it can be deleted after that"
                ) from exc
            raise _translate(exc, f"cannot delete {key!r} from {self.url}", self._bucket) from exc
        except BotoCoreError as exc:
            raise _translate(exc, f"cannot delete {key!r} from {self.url}", self._bucket) from exc

    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        try:
            # Managed copy: server side, multipart for large objects; metadata is copied.
            self._client.copy(
                {"Bucket": self._bucket, "Key": self.full_key(src_key)},
                self._bucket,
                self.full_key(dst_key),
                Config=self._transfer,
            )
        except (BotoCoreError, ClientError) as exc:
            what = f"cannot copy {src_key!r} to {dst_key!r} in {self.url}"
            raise _translate(exc, what, self._bucket) from exc
        return self.stat(dst_key)

    def ping(self) -> None:
        try:
            self._client.head_bucket(Bucket=self._bucket)
        except (BotoCoreError, ClientError) as exc:
            where = f" at {self._endpoint_url}" if self._endpoint_url else ""
            raise _translate(exc, f"cannot reach {self.url}{where}", self._bucket) from exc
