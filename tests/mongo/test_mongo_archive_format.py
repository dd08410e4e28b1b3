"""The archive reader against archives built independently from the reference document."""

from __future__ import annotations

import io
import struct
from typing import Any

import bson
import pytest
from archive_builder import TERM, ArchiveBuilder, crc64_xz, metadata_string
from bson.codec_options import CodecOptions
from bson.son import SON
from pymongo import MongoClient

from daai_backup.errors import ArchiveCorrupt
from daai_backup.mongo import (
    ArchiveHeader,
    ArchiveReader,
    CollectionMetadata,
    DocumentBatch,
    NamespaceEnd,
    read_archive,
    restore_database,
)
from daai_backup.mongo.archive_format import ArchiveWriter
from daai_backup.mongo.crc64 import Crc64

USERS = [{"_id": i, "name": f"user{i}", "tags": ["a", i]} for i in range(5)]
ORDERS = [{"_id": 100 + i, "user": i % 5, "total": 1.25 * i} for i in range(7)]
USERS_INDEXES = (
    '[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},'
    '{"v":{"$numberInt":"2"},"key":{"name":{"$numberInt":"1"}},"name":"name_1","unique":true}]'
)


def mongodump_like(db: str = "shop") -> ArchiveBuilder:
    """Two collections whose segments interleave, an empty one and a view, as mongodump does."""
    b = ArchiveBuilder(db)
    b.metadata("users", metadata_string("users", indexes=USERS_INDEXES))
    b.metadata("orders", metadata_string("orders", uuid="fedcba9876543210fedcba9876543210"))
    b.metadata("empty", metadata_string("empty"))
    view_options = (
        '{"viewOn":"orders","pipeline":[{"$match":{"total":{"$gt":{"$numberInt":"2"}}}}]}'
    )
    b.metadata(
        "big_orders",
        metadata_string("big_orders", options=view_options, indexes="[]", uuid=None, kind="view"),
        kind="view",
    )
    b.term()
    b.segment("users", USERS[:2]).segment("orders", ORDERS[:3])
    b.segment("users", USERS[2:]).segment("empty", [])
    b.segment("orders", ORDERS[3:]).eof("users").eof("empty")
    b.segment("big_orders", []).eof("big_orders").eof("orders")
    return b


def test_builder_crc_matches_the_standard_check_value() -> None:
    assert crc64_xz(b"123456789") == 0x995DC9BBDF1939FA
    ours = Crc64()
    ours.update(b"1234")
    ours.update(b"56789")
    assert ours.value == 0x995DC9BBDF1939FA


def test_reader_parses_a_mongodump_archive() -> None:
    events = list(read_archive(io.BytesIO(mongodump_like().build())))
    header = events[0]
    assert isinstance(header, ArchiveHeader)
    assert (header.server_version, header.concurrent_collections) == ("7.0.14", 4)
    metas = [e for e in events if isinstance(e, CollectionMetadata)]
    assert [m.collection for m in metas] == ["users", "orders", "empty", "big_orders"]
    assert metas[0].indexes[1]["unique"] is True
    assert metas[1].uuid == "fedcba9876543210fedcba9876543210"
    assert metas[3].type == "view"
    assert metas[3].options["pipeline"] == [{"$match": {"total": {"$gt": 2}}}]
    docs: dict[str, list[bytes]] = {}
    for e in events:
        if isinstance(e, DocumentBatch):
            docs.setdefault(e.collection, []).extend(e.documents)
    assert docs["users"] == [bson.encode(d) for d in USERS]
    assert docs["orders"] == [bson.encode(d) for d in ORDERS]
    ends = {e.collection: e for e in events if isinstance(e, NamespaceEnd)}
    assert ends["orders"].documents == 7
    assert ends["empty"].documents == 0


def test_writer_output_is_what_the_builder_writes() -> None:
    """Same inputs, same bytes: our framing equals the reference's, byte for byte."""
    meta = CollectionMetadata(
        db="shop",
        collection="users",
        indexes=[SON([("v", 2), ("key", SON([("_id", 1)])), ("name", "_id_")])],
        uuid="0123456789abcdef0123456789abcdef",
    )
    ours = io.BytesIO()
    writer = ArchiveWriter(ours)
    writer.write_prelude(
        ArchiveHeader(server_version="7.0.14", tool_version="100.10.0", concurrent_collections=4),
        [meta],
    )
    raw = b"".join(bson.encode(d) for d in USERS)
    writer.write_segment("shop", "users", raw)
    crc = Crc64()
    crc.update(raw)
    writer.write_eof("shop", "users", crc.value)
    expected = ArchiveBuilder("shop").metadata("users", metadata_string("users")).term()
    expected.segment("users", USERS).eof("users")
    assert ours.getvalue() == expected.build()


def _read_all(data: bytes) -> list[Any]:
    return list(read_archive(io.BytesIO(data)))


def test_rejects_bad_magic() -> None:
    data = bytearray(mongodump_like().build())
    data[0] ^= 0xFF
    with pytest.raises(ArchiveCorrupt, match="magic"):
        _read_all(bytes(data))


@pytest.mark.parametrize("cut", [2, 30, 200, 700, 1])
def test_rejects_truncation_anywhere(cut: int) -> None:
    data = mongodump_like().build()
    with pytest.raises(ArchiveCorrupt, match="truncated"):
        _read_all(data[: len(data) - cut] if cut != 1 else data[:-4])


def test_rejects_truncation_at_a_block_boundary() -> None:
    b = ArchiveBuilder("shop").metadata("users", metadata_string("users")).term()
    b.segment("users", USERS)  # no EOF block: the stream stopped between blocks
    with pytest.raises(ArchiveCorrupt, match=r"truncated: no EOF block for shop\.users"):
        _read_all(b.build())


def test_rejects_a_crc_mismatch_naming_the_namespace() -> None:
    b = ArchiveBuilder("shop").metadata("users", metadata_string("users")).term()
    b.segment("users", USERS).eof("users", crc=12345)
    with pytest.raises(ArchiveCorrupt, match=r"CRC mismatch for namespace shop\.users"):
        _read_all(b.build())


def test_rejects_a_flipped_bit_in_a_document() -> None:
    data = bytearray(mongodump_like().build())
    at = bytes(data).index(b"user3")
    data[at + 4] ^= 0x01
    with pytest.raises(ArchiveCorrupt, match=r"CRC mismatch for namespace shop\.users"):
        _read_all(bytes(data))


@pytest.mark.parametrize("length", [4, 0, 16 * 1024 * 1024 + 1, -7])
def test_rejects_document_lengths_out_of_range(length: int) -> None:
    b = ArchiveBuilder("shop").metadata("users", metadata_string("users")).term()
    b.raw(bson.encode({"db": "shop", "collection": "users", "EOF": False, "CRC": bson.Int64(0)}))
    b.raw(struct.pack("<i", length) + b"\x00" * 16)
    with pytest.raises(ArchiveCorrupt, match="corrupt"):
        _read_all(b.build())


def test_rejects_two_terminators_in_a_row() -> None:
    b = ArchiveBuilder("shop").metadata("users", metadata_string("users")).term()
    b.segment("users", USERS).raw(TERM).eof("users")
    with pytest.raises(ArchiveCorrupt, match="two terminators"):
        _read_all(b.build())


def test_rejects_two_terminators_after_the_prelude() -> None:
    b = ArchiveBuilder("shop").metadata("users", metadata_string("users")).term().term()
    with pytest.raises(ArchiveCorrupt, match="two terminators"):
        _read_all(b.build())


def test_batches_are_bounded() -> None:
    reader = ArchiveReader(io.BytesIO(mongodump_like().build()), batch_documents=2)
    sizes = [len(e.documents) for e in reader if isinstance(e, DocumentBatch)]
    assert max(sizes) <= 2
    assert sum(sizes) == 12


def test_a_mongodump_archive_restores(mongo_client: MongoClient[Any], mongo_db_name: str) -> None:
    restore_database(mongo_client, mongo_db_name, io.BytesIO(mongodump_like().build()))
    db = mongo_client.get_database(mongo_db_name, codec_options=CodecOptions(document_class=SON))
    assert list(db.users.find(sort=[("_id", 1)])) == USERS
    assert list(db.orders.find(sort=[("_id", 1)])) == ORDERS
    assert db.empty.count_documents({}) == 0
    assert [d["_id"] for d in db.big_orders.find(sort=[("_id", 1)])] == [102, 103, 104, 105, 106]
    names = {i["name"]: i for i in db.users.list_indexes()}
    assert names["name_1"]["unique"] is True
    assert not [n for n in db.list_collection_names() if n.startswith("__daai")]
