"""Commands about keys and archive files: keygen, inspect, decrypt, doctor.

These are the light commands: each imports what it uses when it runs (settings and the
tenant registry bring in pydantic, the archive format cryptography, `doctor` pymongo), so
that `--help` and `keygen` start in a fraction of a second (``bench/bench_cli_start.py``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, cast

import typer
from rich.markup import escape

from cli.app import app, console, errors_as_messages, fail, guarded
from cli.context import engine, load_settings
from daai_backup.errors import DaaiBackupError, InvalidName
from daai_backup.repository.names import BackupName

if TYPE_CHECKING:
    from daai_backup.format.keys import Keyring


@app.command()
def keygen() -> None:
    """Print a new master key (base64 of 32 random bytes) for BACKUP_ENCRYPTION_KEY."""
    from daai_backup.format.keys import generate_master_key

    typer.echo(generate_master_key())
    typer.echo(
        "Store it in your secret manager and set BACKUP_ENCRYPTION_KEY; without it no "
        "backup made with it can ever be read.",
        err=True,
    )


def _open_local(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise fail(f"no such file: {path}") from None
    except IsADirectoryError:
        raise fail(f"{path} is a folder, not a backup file") from None
    except PermissionError:
        raise fail(f"cannot read {path}: permission denied") from None


@app.command()
@guarded
def inspect(
    file: Annotated[Path, typer.Argument(help="a .gz.enc or legacy .gz backup file")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show what a backup file is (format, tenant, key, time, content, name); needs no key."""
    from daai_backup.format.dbk1 import read_header

    with _open_local(file) as source:
        header = read_header(source)
    if header is None:
        info: dict[str, object] = {
            "file": file.name,
            "format": "gzip",
            "encrypted": False,
            "tenant": None,
            "key_fingerprint": None,
            "created_at": None,
            "content_type": None,
            "name": None,
        }
    else:
        info = {
            "file": file.name,
            "format": "DBK1",
            "version": header.version,
            "encrypted": True,
            "algorithm": header.algorithm,
            "tenant": header.tenant_id,
            "key_fingerprint": header.key_fingerprint,
            "created_at": header.created_at.isoformat(),
            "content_type": header.content_type.label,
            "name": header.name,
        }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    if header is None:
        console.print(f"{file.name}: legacy plaintext gzip backup (not encrypted)")
        return
    console.print(
        f"{file.name}: encrypted backup (DBK1 version {header.version}, {header.algorithm})"
    )
    console.print(f"  tenant           {header.tenant_id}")
    console.print(f"  key fingerprint  {header.key_fingerprint}")
    console.print(f"  created          {info['created_at']}")
    console.print(f"  content type     {header.content_type.label}")
    recorded = header.name or "(not recorded: DBK1 version 1)"
    console.print(f"  name             {recorded}", highlight=False)


@app.command()
@guarded
def decrypt(
    file: Annotated[
        Path,
        typer.Argument(
            help="a backup file name as `list` prints it (read from the tenant's storage), "
            "or a local .gz.enc file (legacy .gz is copied)"
        ),
    ],
    tenant: Annotated[str, typer.Option(help="the tenant the backup belongs to")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="where to write the plaintext .gz ('-': stdout)")
    ],
) -> None:
    """Stream a backup's plaintext gzip out: `mongorestore --archive --gzip` reads it.

    A local file is read when one has that path; otherwise a backup name from `list` is read
    from the tenant's own storage folder (another tenant's backup is not found there). A
    local file under a backup file name must be the backup its header names (a renamed copy
    is refused); under any other name (a download saved as you like) the name is not checked.
    """
    from daai_backup.format.dbk1 import open_plaintext

    with ExitStack() as stack:
        stored = _stored_name(file)
        if stored is None:
            source, keyring, name, encrypted = _local_source(file, stack)
        else:
            source, keyring, encrypted = _stored_source(stored, tenant, stack)
            name = stored
        plain = open_plaintext(source, keyring, tenant, name=name, encrypted=encrypted)
        if str(output) == "-":
            _copy(plain, sys.stdout.buffer.write)
            sys.stdout.buffer.flush()
            return
        if output.is_dir():
            raise fail(f"{output} is a folder: give a file name for the plaintext .gz")
        partial = output.with_name(f".{output.name}.partial")
        try:
            with partial.open("wb") as sink:
                _copy(plain, sink.write)
            os.replace(partial, output)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise fail(f"cannot write {output}: {reason.lower()}") from None
        finally:
            partial.unlink(missing_ok=True)
    console.print(f"wrote {output}", highlight=False)


def _stored_name(file: Path) -> str | None:
    """``file`` as a backup name to read from storage: a bare backup file name (as `list`
    prints it) that is no local file; None means ``file`` is a local path."""
    if file.exists() or len(file.parts) != 1:
        return None
    try:
        return BackupName.parse(file.name).filename
    except InvalidName:
        return None


def _local_source(
    file: Path, stack: ExitStack
) -> tuple[BinaryIO, Keyring, str | None, bool | None]:
    """A local file: ``(source, keyring, name to check, encrypted)``."""
    from daai_backup.format.dbk1 import ENCRYPTED_SUFFIX

    settings = load_settings()
    source = stack.enter_context(_open_local(file))
    encrypted = True if file.name.endswith(ENCRYPTED_SUFFIX) else None
    return source, settings.keyring, _backup_name(file), encrypted


def _stored_source(name: str, tenant: str, stack: ExitStack) -> tuple[BinaryIO, Keyring, bool]:
    """One of the tenant's stored backups: ``(source, keyring, encrypted)``.

    Refused (one line) when the tenant's folder has no backup of that name, which is what a
    name of another tenant's backup gets.
    """
    from daai_backup.operations import describe_backup

    ctx = engine()
    stack.callback(ctx.close)
    record = ctx.tenant(tenant)
    entry = describe_backup(ctx, record, name)
    source = stack.enter_context(ctx.folder(record).open(name))
    return source, ctx.settings.keyring, entry.encrypted


def _backup_name(file: Path) -> str | None:
    """The file's name if it is a backup file name (then it must match the header), else None."""
    try:
        return BackupName.parse(file.name).filename
    except InvalidName:
        return None


def _copy(source: BinaryIO, write: Callable[[bytes], object]) -> None:
    while chunk := source.read(1 << 20):
        write(chunk)


@app.command()
def doctor(
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            "-t",
            help="check this tenant's backup folder instead of MongoDB: what is there that "
            "is not a backup, backups without a manifest, and what to do about each",
        ),
    ] = None,
    keys: Annotated[
        bool,
        typer.Option(
            "--keys",
            help="count, per key fingerprint, the encrypted files of every tenant that need "
            "it (reads each file's header: one request per file on S3)",
        ),
    ] = False,
    retire: Annotated[
        str | None,
        typer.Option(
            "--retire",
            metavar="FINGERPRINT",
            help="check that no file still needs this key before you drop it from "
            "BACKUP_ENCRYPTION_PREVIOUS_KEYS (exit 1 naming the count and tenants if any does)",
        ),
    ] = None,
) -> None:
    """Check the configuration: key, tenants file, storage, MongoDB (one line per check)."""
    if tenant is not None:
        _doctor_tenant(tenant)
        return
    if keys or retire is not None:
        _doctor_keys(retire)
        return
    failures = 0

    def report(name: str, check: Callable[[], str]) -> None:
        nonlocal failures
        try:
            detail = check()
            console.print(f"[green]ok  [/] {name}: {detail}", highlight=False)
        except (DaaiBackupError, OSError) as exc:
            failures += 1
            console.print(f"[red]FAIL[/] {name}: {exc}", highlight=False)
        except Exception as exc:
            failures += 1
            console.print(f"[red]FAIL[/] {name}: {type(exc).__name__}: {exc}", highlight=False)

    with errors_as_messages():
        settings = load_settings()

    def key() -> str:
        current = settings.keyring.require_current()
        previous = len(settings.keyring.previous)
        extra = f"; {previous} previous key(s) for older archives" if previous else ""
        return f"BACKUP_ENCRYPTION_KEY is set (fingerprint {current.fingerprint}){extra}"

    def tenants() -> str:
        from daai_backup.tenant_sources import describe_source, load_registry

        registry = load_registry(settings)
        return f"{describe_source(settings)}: {len(registry)} tenant(s)"

    def storage() -> str:
        from daai_backup.storage import storage_from_url

        lock = settings.s3_object_lock
        backend = storage_from_url(
            settings.storage_url,
            s3_endpoint_url=settings.s3_endpoint_url,
            object_lock=None if lock == "off" else lock,
        )
        backend.ping()
        check_lock = getattr(backend, "check_object_lock", None)
        if check_lock is not None:  # S3: the bucket's Object Lock agrees with the setting
            return f"{settings.storage_url} is reachable; {check_lock()}"
        if lock != "off":
            raise DaaiBackupError(
                f"DAAI_BACKUP_S3_OBJECT_LOCK is {lock} but {settings.storage_url} is not S3: "
                "set it to off"
            )
        return f"{settings.storage_url} is reachable"

    def mongodb() -> str:
        import asyncio

        return asyncio.run(_ping_mongodb(settings.mongodb_uri.get_secret_value()))

    def change_streams() -> str:
        from pymongo import MongoClient

        from daai_backup.capture.runner import check_change_streams

        client: MongoClient[Any] = MongoClient(
            settings.mongodb_uri.get_secret_value(), serverSelectionTimeoutMS=3000
        )
        try:
            return check_change_streams(client)
        finally:
            client.close()

    report("encryption key", key)
    report("tenant registry", tenants)
    report("storage", storage)
    report("mongodb", mongodb)
    if not failures:
        # Point-in-time capture is optional: a cluster without change streams is a warning.
        try:
            console.print(f"[green]ok  [/] change streams: {change_streams()}", highlight=False)
        except DaaiBackupError as exc:
            console.print(f"[yellow]WARN[/] change streams: {exc}", highlight=False)
    if failures:
        raise typer.Exit(1)


def _doctor_tenant(tenant_id: str) -> None:
    """``doctor --tenant``: the tenant's folder, object by object where something is off.

    Exit status 1 when something needs a person (an unknown file, an unreadable manifest);
    orphans of interrupted operations and backups without a manifest are reported but are
    not failures (the next retention run or verify deals with them).
    """
    from daai_backup.operations import folder_listing, key_problem

    with errors_as_messages():
        ctx = engine()
        record = ctx.tenant(tenant_id)
        listing = folder_listing(ctx, record)
    folder = ctx.folder(record)
    entries = listing.entries
    held = sum(1 for e in entries if e.held)
    bad = sum(1 for e in entries if (r := e.verification) is not None and not r.ok)
    verified = sum(1 for e in entries if e.verification is not None)
    console.print(
        f"[green]ok  [/] {folder.url}: {len(entries)} backup(s), {held} held, "
        f"{verified} verified ({bad} bad)",
        highlight=False,
    )
    problem = key_problem(ctx)
    if problem is not None or listing.notes_need_key:
        console.print(
            f"[yellow]WARN[/] encryption key: {problem or 'no key'}: manifests and notes "
            "cannot be read; the list shows names and sizes only",
            highlight=False,
        )
    if listing.index_problem:
        console.print(f"[yellow]WARN[/] {listing.index_problem}", highlight=False)
    failures = 0
    for stray in listing.strays:
        level = "[yellow]WARN[/]" if stray.removable else "[red]FAIL[/]"
        failures += not stray.removable
        console.print(f"{level} db-backups/{escape(stray.describe())}", highlight=False)
    missing = listing.without_manifest
    if missing and not listing.notes_need_key:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        console.print(
            f"[yellow]WARN[/] {len(missing)} backup(s) without a manifest (written before "
            f"manifests, or the write was cut short): {shown}; verify builds it: "
            f"`daai-backup verify --tenant {tenant_id} --file <file>`",
            highlight=False,
        )
    if not listing.strays and not missing:
        console.print("[green]ok  [/] every file in db-backups is a backup or part of one")
    if failures:
        raise typer.Exit(1)


async def _ping_mongodb(uri: str) -> str:
    """Which servers answer at ``uri``, and their version.

    The asyncio client, not ``MongoClient``: the threaded client's monitor threads are joined
    when the interpreter exits, which added half a second to every `doctor`.
    """
    from pymongo import AsyncMongoClient
    from pymongo.errors import PyMongoError

    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        uri, serverSelectionTimeoutMS=3000
    )
    try:
        version = cast(str, (await client.server_info())["version"])
        hosts = ", ".join(f"{h}:{p}" for h, p in client.nodes) or "server"
        return f"{hosts} answers (MongoDB {version})"
    except PyMongoError as exc:
        raise DaaiBackupError(
            f"cannot reach MongoDB ({type(exc).__name__}): check DAAI_BACKUP_MONGODB_URI"
        ) from None
    finally:
        await client.close()


def _doctor_keys(retire: str | None) -> None:
    """``doctor --keys`` / ``--retire FP``: which keys the fleet's files still need.

    A counted scan: every encrypted file's header (backups, manifests, change segments, the
    listing index) in every tenant's folder. Exit 1 when a file needs a key that is not
    configured, or (``--retire``) when files still need the key to retire.
    """
    import re

    from daai_backup.operations import key_census, retire_problem

    if retire is not None and not re.fullmatch(r"[0-9a-f]{16}", retire):
        raise fail(
            f"--retire {retire!r} is not a key fingerprint: give the 16 hex characters "
            "`daai-backup doctor` shows for the key"
        )
    with errors_as_messages():
        ctx = engine()
        keyring = ctx.settings.keyring
        current = keyring.require_current().fingerprint
        if retire == current:
            raise fail(
                f"key {retire} is the current BACKUP_ENCRYPTION_KEY: make another key current "
                "and run `daai-backup rekey --all` before retiring it"
            )
        censuses = [key_census(ctx, record) for record in ctx.registry.values()]
    if retire is not None:
        problem = retire_problem(censuses, retire)
        if problem is not None:
            raise fail(problem)
        console.print(
            f"[green]ok  [/] key {retire}: no file needs it any more: it can be dropped from "
            "BACKUP_ENCRYPTION_PREVIOUS_KEYS",
            highlight=False,
        )
        return
    configured = set(keyring.fingerprints)
    needed: dict[str, dict[str, int]] = {}
    for census in censuses:
        for fingerprint, count in census.by_key.items():
            needed.setdefault(fingerprint, {})[census.tenant_id] = count
    failures = 0
    for fingerprint in keyring.fingerprints:
        where = needed.get(fingerprint, {})
        total = sum(where.values())
        if fingerprint == current:
            console.print(
                f"[green]ok  [/] key {fingerprint} (current): {total} file(s) in "
                f"{len(where)} tenant(s)",
                highlight=False,
            )
        elif total:
            tenants = ", ".join(f"{t} ({n})" for t, n in sorted(where.items()))
            console.print(
                f"[yellow]WARN[/] key {fingerprint} (previous): {total} file(s) still need it, "
                f"in {tenants}: run `daai-backup rekey --all`, then retire it",
                highlight=False,
            )
        else:
            console.print(
                f"[green]ok  [/] key {fingerprint} (previous): reads nothing, no file needs it: "
                "drop it from BACKUP_ENCRYPTION_PREVIOUS_KEYS",
                highlight=False,
            )
    for fingerprint, where in sorted(needed.items()):
        if fingerprint in configured:
            continue
        failures += 1
        tenants = ", ".join(f"{t} ({n})" for t, n in sorted(where.items()))
        console.print(
            f"[red]FAIL[/] key {fingerprint} is not configured but {sum(where.values())} "
            f"file(s) need it, in {tenants}: add it back to BACKUP_ENCRYPTION_PREVIOUS_KEYS",
            highlight=False,
        )
    for census in censuses:
        for line in census.unreadable:
            console.print(f"[yellow]WARN[/] {census.tenant_id}: {escape(line)}", highlight=False)
    if failures:
        raise typer.Exit(1)
