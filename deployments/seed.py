"""Demo data for ``make up``: an HR, an invoicing and a CRM tenant with believable documents.

Deterministic (a fixed random seed), small (a few hundred documents per tenant: the dev
server is SecantusDB) and shaped like the suite's real data: nested documents, arrays,
decimals, dates, unique and compound indexes, a partial index, a validator and a view, so
that a backup and a restore have something real to carry. A database that already has
collections is left alone, so a second ``make up`` reuses what is there.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database

from daai_backup.tenants import Tenant

Doc = dict[str, Any]

FIRST = ["Aarav", "Priya", "Rohan", "Ananya", "Vikram", "Meera", "Lukas", "Sofia", "Jonas"]
FIRST += ["Emma", "Noah", "Olivia", "Liam", "Mia", "Kenji", "Yuki", "Fatima", "Omar"]
LAST = ["Sharma", "Iyer", "Patel", "Reddy", "Müller", "Schmidt", "Weber", "Johnson"]
LAST += ["Garcia", "Brown", "Tanaka", "Khan", "Rossi", "Dubois", "Nowak", "Silva"]
DEPARTMENTS = ["Engineering", "Finance", "People", "Sales", "Support", "Legal", "Operations"]
CITIES = ["Bengaluru", "Pune", "Berlin", "Munich", "New York", "Austin", "Lisbon", "Tokyo"]
COMPANIES = ["Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell", "Soylent", "Wonka"]
COMPANIES += ["Cyberdyne", "Oscorp", "Aperture", "Massive Dynamic", "Gringotts", "Monarch"]

EPOCH = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def _money(value: float) -> Decimal128:
    return Decimal128(Decimal(f"{value:.2f}"))


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def hr_data(rng: random.Random) -> dict[str, list[Doc]]:
    departments = [
        {"_id": f"dep-{i:02d}", "name": name, "cost_center": f"CC-{100 + i}"}
        for i, name in enumerate(DEPARTMENTS)
    ]
    employees: list[Doc] = []
    for i in range(240):
        first, last = _person(rng)
        hired = EPOCH - timedelta(days=rng.randint(30, 3000))
        employees.append(
            {
                "employee_no": f"E{10000 + i}",
                "name": {"first": first, "last": last},
                "email": f"{first}.{last}.{i}@acme.example".lower(),
                "department_id": rng.choice(departments)["_id"],
                "title": rng.choice(["Engineer", "Analyst", "Manager", "Associate", "Lead"]),
                "location": rng.choice(CITIES),
                "hired_on": hired,
                "salary": {"amount": _money(rng.uniform(600_000, 4_500_000)), "currency": "INR"},
                "skills": rng.sample(["python", "sql", "excel", "negotiation", "go", "design"], 2),
                "active": rng.random() > 0.07,
            }
        )
    leave: list[Doc] = []
    for i in range(300):
        start = EPOCH + timedelta(days=rng.randint(-200, 120))
        leave.append(
            {
                "employee_no": f"E{10000 + rng.randrange(240)}",
                "kind": rng.choice(["annual", "sick", "parental", "unpaid"]),
                "from": start,
                "to": start + timedelta(days=rng.randint(1, 15)),
                "status": rng.choice(["approved", "pending", "rejected"]),
                "request_no": i,
            }
        )
    return {"departments": departments, "employees": employees, "leave_requests": leave}


def invoicing_data(rng: random.Random) -> dict[str, list[Doc]]:
    customers: list[Doc] = [
        {
            "_id": f"C{1000 + i}",
            "name": f"{rng.choice(COMPANIES)} {rng.choice(['GmbH', 'Ltd', 'Inc', 'SA'])} #{i}",
            "vat_id": f"DE{rng.randrange(10**8, 10**9)}",
            "address": {"city": rng.choice(CITIES), "country": rng.choice(["DE", "FR", "IN"])},
            "payment_terms_days": rng.choice([14, 30, 45, 60]),
        }
        for i in range(60)
    ]
    invoices: list[Doc] = []
    payments: list[Doc] = []
    for i in range(320):
        customer = rng.choice(customers)
        issued = EPOCH + timedelta(days=rng.randint(-365, 0))
        lines: list[Doc] = [
            {
                "sku": f"SKU-{rng.randrange(100, 999)}",
                "description": rng.choice(["Consulting", "Licence", "Support", "Hardware"]),
                "quantity": rng.randint(1, 20),
                "unit_price": _money(rng.uniform(20, 2500)),
            }
            for _ in range(rng.randint(1, 5))
        ]
        net = sum(
            (Decimal(str(line["unit_price"])) * int(line["quantity"]) for line in lines),
            Decimal(0),
        )
        total = net * Decimal("1.19")
        status = rng.choice(["paid", "paid", "open", "overdue", "void"])
        invoices.append(
            {
                "number": f"INV-2025-{i + 1:05d}",
                "customer_id": customer["_id"],
                "issued_at": issued,
                "due_at": issued + timedelta(days=int(customer["payment_terms_days"])),
                "lines": lines,
                "total": {"amount": Decimal128(total.quantize(Decimal("0.01"))), "currency": "EUR"},
                "status": status,
            }
        )
        if status == "paid":
            payments.append(
                {
                    "invoice_number": f"INV-2025-{i + 1:05d}",
                    "paid_at": issued + timedelta(days=rng.randint(1, 40)),
                    "method": rng.choice(["sepa", "card", "wire"]),
                    "amount": Decimal128(total.quantize(Decimal("0.01"))),
                }
            )
    return {"customers": customers, "invoices": invoices, "payments": payments}


def crm_data(rng: random.Random) -> dict[str, list[Doc]]:
    contacts: list[Doc] = []
    for i in range(200):
        first, last = _person(rng)
        company = rng.choice(COMPANIES)
        domain = company.lower().replace(" ", "")
        contacts.append(
            {
                "contact_id": i,
                "name": f"{first} {last}",
                "email": f"{first}.{last}.{i}@{domain}.example".lower(),
                "company": company,
                "phone": f"+1-555-{rng.randrange(1000, 9999)}",
                "tags": rng.sample(["lead", "customer", "partner", "churn-risk", "vip"], 2),
                "owner": rng.choice(["bill@initech.example", "peter@initech.example"]),
            }
        )
    deals: list[Doc] = []
    for i in range(150):
        deals.append(
            {
                "deal_id": f"D-{i:04d}",
                "contact_id": rng.randrange(200),
                "stage": rng.choice(["prospect", "qualified", "proposal", "won", "lost"]),
                "amount": _money(rng.uniform(1_000, 250_000)),
                "expected_close": EPOCH + timedelta(days=rng.randint(-60, 180)),
            }
        )
    activities: list[Doc] = []
    for i in range(400):
        activities.append(
            {
                "contact_id": rng.randrange(200),
                "kind": rng.choice(["call", "email", "meeting", "note"]),
                "at": EPOCH + timedelta(minutes=rng.randint(-200_000, 0)),
                "summary": rng.choice(
                    ["Discussed renewal", "Sent proposal", "Demo booked", "Follow-up needed"]
                ),
                "seq": i,
            }
        )
    return {"contacts": contacts, "deals": deals, "activities": activities}


def _hr_schema(db: Database[Doc]) -> None:
    db.create_collection(
        "employees",
        validator={"$jsonSchema": {"bsonType": "object", "required": ["employee_no", "email"]}},
    )
    db["employees"].create_indexes(
        [
            IndexModel([("employee_no", ASCENDING)], unique=True),
            IndexModel([("email", ASCENDING)], unique=True),
            IndexModel([("department_id", ASCENDING), ("hired_on", DESCENDING)]),
        ]
    )
    db["leave_requests"].create_index(
        [("status", ASCENDING)], partialFilterExpression={"status": "pending"}
    )


def _invoicing_schema(db: Database[Doc]) -> None:
    db["invoices"].create_indexes(
        [
            IndexModel([("number", ASCENDING)], unique=True),
            IndexModel([("customer_id", ASCENDING), ("issued_at", DESCENDING)]),
        ]
    )


def _crm_schema(db: Database[Doc]) -> None:
    db["contacts"].create_index([("email", ASCENDING)], unique=True)
    db["deals"].create_index([("stage", ASCENDING), ("expected_close", ASCENDING)])


def _views(db: Database[Doc], kind: str) -> None:
    if kind == "hr":
        db.create_collection(
            "active_employees", viewOn="employees", pipeline=[{"$match": {"active": True}}]
        )
    elif kind == "invoicing":
        db.create_collection(
            "open_invoices", viewOn="invoices", pipeline=[{"$match": {"status": "open"}}]
        )


KINDS: dict[str, tuple[Callable[[random.Random], dict[str, list[Doc]]], Callable[..., None]]] = {
    "hr": (hr_data, _hr_schema),
    "invoicing": (invoicing_data, _invoicing_schema),
    "crm": (crm_data, _crm_schema),
}


def kind_of(tenant: Tenant) -> str:
    """Which demo data fits a tenant: by a word in its id, else HR."""
    for kind in ("invoic", "crm"):
        if kind in tenant.id:
            return "invoicing" if kind == "invoic" else "crm"
    return "hr"


def seed_tenant(db: Database[Doc], kind: str, *, seed: int = 7) -> int:
    """Create the tenant's collections and documents unless it has any; documents inserted."""
    if db.list_collection_names():
        return 0
    make_data, make_schema = KINDS[kind]
    rng = random.Random(f"{seed}-{db.name}")  # noqa: S311 - demo data, not secrets
    make_schema(db)
    inserted = 0
    for name, docs in make_data(rng).items():
        if docs:
            db[name].insert_many(docs, ordered=False)
            inserted += len(docs)
    _views(db, kind)
    return inserted


def seed_all(mongodb_uri: str, tenants: Iterable[Tenant]) -> dict[str, int]:
    """Seed every tenant's database that is empty; returns documents inserted per tenant."""
    from pymongo import MongoClient

    client: MongoClient[Doc] = MongoClient(mongodb_uri, serverSelectionTimeoutMS=10_000)
    try:
        return {t.id: seed_tenant(client[t.database], kind_of(t)) for t in tenants}
    finally:
        client.close()
