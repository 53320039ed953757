#!/usr/bin/env python3
"""Write the ``samples/`` fixture set: one request body, its headers and the expected
normalized event record for every event type of every sender the receiver understands.

Usage::

    python tools/make_samples.py SEEDS           # (re)write samples/
    python tools/make_samples.py SEEDS --check   # exit 1 if samples/ differs from the output

``SEEDS`` is the folder of vendor documents the event lists of Keygen and LicenseSpring and
the Revenera FNO payloads are read from (``keygen-event-types.txt``,
``licensespring-events.txt``, ``revenera-fno-payloads.txt``: text copied from the vendors'
pages; not shipped with the project). ``$SAMPLES_SEEDS`` names it when the argument is left
out. Everything else is fixed here. The output is deterministic: ids are derived from fixed
names by hashing, times from a fixed base; nothing is random.

The expected records are computed here from the values put into each body, following the
mapping rules of docs/senders.md; nothing is imported from the ``receiver`` package, so the
files are an independent check of it. Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SEED_FILES = ("keygen-event-types.txt", "licensespring-events.txt", "revenera-fno-payloads.txt")

SOURCES = ("keygen", "licensespring", "fno", "zentitle", "standard", "generic")
RECORD_KEYS = (
    "source",
    "event_type",
    "vendor_event",
    "external_id",
    "occurred_at",
    "account",
    "actor",
    "subject_type",
    "subject_id",
    "data",
)

# Test secret of the Standard Webhooks sample (also noted in samples/README.md).
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


# --------------------------------------------------------------------------- helpers


def det_uuid(name: str) -> str:
    """A uuid4-shaped id derived from ``name`` (same name, same id, every run)."""
    digest = hashlib.sha256(f"samples/{name}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def det_hex(name: str, length: int = 64) -> str:
    return hashlib.sha256(f"samples/{name}".encode()).hexdigest()[:length]


def iso(moment: dt.datetime) -> str:
    """ISO 8601 UTC with exactly three millisecond digits and ``Z``."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_seconds(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_epoch(seconds: int, millis: int = 0) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC) + dt.timedelta(milliseconds=millis)


BASE = dt.datetime(2024, 6, 3, 9, 0, 0, tzinfo=dt.UTC)


def moment(index: int, spacing: int = 97) -> dt.datetime:
    """The time of the index-th event of a source: spread out, with varying milliseconds."""
    return BASE + dt.timedelta(seconds=spacing * index, milliseconds=(index * 389 + 17) % 1000)


def pretty(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sha256_id(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def first_segment(event_type: str) -> str:
    return event_type.split(".", 1)[0]


def record(**fields: Any) -> dict[str, Any]:
    missing = set(RECORD_KEYS) ^ set(fields)
    if missing:
        raise ValueError(f"record fields wrong: {sorted(missing)}")
    return {key: fields[key] for key in RECORD_KEYS}


def as_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass
class Sample:
    source: str
    name: str
    body: bytes
    headers: dict[str, str]
    normalized: dict[str, Any]
    extra: dict[str, bytes] = field(default_factory=dict)  # suffix -> bytes

    @property
    def event_type(self) -> str:
        return self.normalized["event_type"]


# --------------------------------------------------------------------------- keygen

KG_ACCOUNT = det_uuid("keygen/account")
KG_ACCOUNT_PATH = f"/v1/accounts/{KG_ACCOUNT}"
KG_API_VERSION = "1.7"
KG_ENDPOINT = "https://hooks.example.com/hooks/keygen"
KG_HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": f"Keygen/{KG_API_VERSION} (+https://keygen.sh/docs/api/webhooks/)",
    "Keygen-Version": KG_API_VERSION,
}
KG_EPOCH = dt.datetime(2024, 1, 15, 8, 30, 0, 123000, tzinfo=dt.UTC)  # when the world was made

KG = {
    name: det_uuid(f"keygen/{name}")
    for name in (
        "product",
        "policy",
        "license",
        "user",
        "machine",
        "group",
        "entitlement",
        "entitlement2",
        "release",
        "package",
        "artifact",
        "component",
        "process",
        "second-factor",
        "token",
        "plan",
        "billing",
        "key",
        "license-file",
        "machine-file",
    )
}


def kg_singular(rtype: str) -> str:
    if rtype == "policies":
        return "policy"
    if rtype == "processes":
        return "process"
    return rtype[:-1] if rtype.endswith("s") else rtype


def kg_account_rel() -> dict[str, Any]:
    return {"links": {"related": KG_ACCOUNT_PATH}, "data": {"type": "accounts", "id": KG_ACCOUNT}}


def kg_one(path: str, name: str, rtype: str, rid: str | None) -> dict[str, Any]:
    data = None if rid is None else {"type": rtype, "id": rid}
    return {"links": {"related": f"{path}/{name}"}, "data": data}


def kg_many(path: str, name: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    rel: dict[str, Any] = {"links": {"related": f"{path}/{name}"}}
    if meta is not None:
        rel["meta"] = meta
    return rel


def kg_resource(
    rtype: str,
    rid: str,
    attributes: dict[str, Any],
    relationships: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    path = f"{KG_ACCOUNT_PATH}/{rtype}/{rid}"
    return {
        "id": rid,
        "type": rtype,
        "attributes": attributes,
        "relationships": {"account": kg_account_rel(), **relationships(path)},
        "links": {"self": path},
    }


def kg_join(
    rtype: str, rid: str, when: str, related_path: str, rels: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """A join resource (license-entitlements, group-owners, …) as Keygen renders them."""
    relationships: dict[str, Any] = {"account": kg_account_rel()}
    for name, (target_type, target_id) in rels.items():
        relationships[name] = {
            "links": {"related": f"{KG_ACCOUNT_PATH}/{target_type}/{target_id}"},
            "data": {"type": target_type, "id": target_id},
        }
    return {
        "id": rid,
        "type": rtype,
        "attributes": {"created": when, "updated": when},
        "relationships": relationships,
        "links": {"related": f"{KG_ACCOUNT_PATH}/{related_path}"},
    }


class KeygenWorld:
    """One Keygen account with a product, policy, license, machine, … shared by all events."""

    def __init__(self, event: str, when: dt.datetime) -> None:
        self.event = event
        self.now = iso(when)
        self.when = when
        created_now = event.endswith(".created") or event in {"token.generated"}
        self.created = self.now if created_now else iso(KG_EPOCH)

    def stamps(self) -> dict[str, str]:
        return {"created": self.created, "updated": self.now}

    def later(self, days: int) -> str:
        return iso(self.when + dt.timedelta(days=days))

    # -- core resources

    def license(self) -> dict[str, Any]:
        ev = self.event
        status, suspended = "ACTIVE", False
        expiry = self.later(365)
        uses, max_uses = 3, 100
        require_check_in, last_check_in, next_check_in = False, None, None
        last_validated = None if self.created == self.now else self.later(-1)
        if ev == "license.expired":
            status, expiry = "EXPIRED", self.later(0)
        elif ev == "license.expiring-soon":
            status, expiry = "EXPIRING", self.later(2)
        elif ev == "license.suspended":
            status, suspended = "SUSPENDED", True
        elif ev == "license.renewed":
            expiry = self.later(730)
        elif ev in {
            "license.check-in-overdue",
            "license.check-in-required-soon",
            "license.checked-in",
        }:
            require_check_in = True
            if ev == "license.check-in-overdue":
                last_check_in, next_check_in = self.later(-38), self.later(-8)
            elif ev == "license.check-in-required-soon":
                last_check_in, next_check_in = self.later(-27), self.later(3)
            else:
                last_check_in, next_check_in = self.now, self.later(30)
        elif ev == "license.usage.incremented":
            uses = 4
        elif ev == "license.usage.decremented":
            uses = 2
        elif ev == "license.usage.reset":
            uses = 0
        elif ev.startswith("license.validation."):
            last_validated = self.now
        if ev == "license.validation.failed":
            status, expiry = "EXPIRED", self.later(-5)
        group = KG["group"] if ev in {"license.group.updated"} else None
        attributes = {
            "name": "Acme Studio Pro (annual)",
            "key": "8F1C2A-7D3E9B-41C6E0-5A2F7D-93B4C1-V3",
            "expiry": expiry,
            "status": status,
            "uses": uses,
            "suspended": suspended,
            "scheme": None,
            "encrypted": False,
            "strict": True,
            "floating": True,
            "protected": True,
            "version": None,
            "maxMachines": 3,
            "maxProcesses": None,
            "maxUsers": 5,
            "maxCores": None,
            "maxUses": max_uses,
            "requireHeartbeat": False,
            "requireCheckIn": require_check_in,
            "lastValidated": last_validated,
            "lastCheckIn": last_check_in,
            "nextCheckIn": next_check_in,
            "lastCheckOut": self.now if ev == "license.checked-out" else None,
            "metadata": {"customerId": "cus_P9vK2mQx", "orderNumber": "SO-10482"},
            **self.stamps(),
        }

        def rels(path: str) -> dict[str, Any]:
            return {
                "product": kg_one(path, "product", "products", KG["product"]),
                "policy": kg_one(path, "policy", "policies", KG["policy"]),
                "group": kg_one(path, "group", "groups", group),
                "owner": kg_one(path, "owner", "users", KG["user"]),
                "users": kg_many(path, "users", {"count": 2}),
                "machines": kg_many(path, "machines", {"cores": 8, "count": 1}),
                "tokens": kg_many(path, "tokens"),
                "entitlements": kg_many(path, "entitlements"),
            }

        return kg_resource("licenses", KG["license"], attributes, rels)

    def machine(self) -> dict[str, Any]:
        ev = self.event
        heartbeat = {
            "machine.heartbeat.dead": ("DEAD", self.later(-1), None),
            "machine.heartbeat.ping": ("ALIVE", self.now, iso(self.when + dt.timedelta(hours=1))),
            "machine.heartbeat.reset": ("NOT_STARTED", None, None),
            "machine.heartbeat.resurrected": (
                "RESURRECTED",
                self.now,
                iso(self.when + dt.timedelta(hours=1)),
            ),
        }.get(ev, ("NOT_STARTED", None, None))
        attributes = {
            "fingerprint": "4f:1b:9c:2e:77:a0:5d:13:c8:e6:0b:94:21:3a:f7:58",
            "cores": 8,
            "ip": "203.0.113.24",
            "hostname": "JANE-MBP.local",
            "platform": "macOS",
            "name": "Jane's MacBook Pro",
            "requireHeartbeat": ev.startswith("machine.heartbeat."),
            "heartbeatStatus": heartbeat[0],
            "heartbeatDuration": 3600,
            "lastHeartbeat": heartbeat[1],
            "nextHeartbeat": heartbeat[2],
            "lastCheckOut": self.now if ev == "machine.checked-out" else None,
            "maxProcesses": None,
            "metadata": {"appVersion": "2.4.0"},
            **self.stamps(),
        }
        group = KG["group"] if ev == "machine.group.updated" else None

        def rels(path: str) -> dict[str, Any]:
            return {
                "product": kg_one(path, "product", "products", KG["product"]),
                "group": kg_one(path, "group", "groups", group),
                "license": kg_one(path, "license", "licenses", KG["license"]),
                "owner": kg_one(path, "owner", "users", KG["user"]),
                "components": kg_many(path, "components"),
                "processes": kg_many(path, "processes"),
            }

        return kg_resource("machines", KG["machine"], attributes, rels)

    def user(self) -> dict[str, Any]:
        ev = self.event
        attributes = {
            "fullName": "Jane Doe",
            "firstName": "Jane",
            "lastName": "Doe",
            "email": "jane.doe@example.com",
            "status": "BANNED" if ev == "user.banned" else "ACTIVE",
            "role": "user",
            "metadata": {"crmId": "0035g00000XyZ12"},
            **self.stamps(),
        }
        group = KG["group"] if ev == "user.group.updated" else None

        def rels(path: str) -> dict[str, Any]:
            return {
                "group": kg_one(path, "group", "groups", group),
                "products": kg_many(path, "products"),
                "licenses": kg_many(path, "licenses"),
                "machines": kg_many(path, "machines"),
                "tokens": kg_many(path, "tokens"),
            }

        return kg_resource("users", KG["user"], attributes, rels)

    def policy(self) -> dict[str, Any]:
        attributes = {
            "name": "Annual floating (3 machines)",
            "duration": 31536000,
            "strict": True,
            "floating": True,
            "scheme": None,
            "requireProductScope": False,
            "requirePolicyScope": False,
            "requireMachineScope": False,
            "requireFingerprintScope": False,
            "requireCheckIn": False,
            "checkInInterval": None,
            "checkInIntervalCount": None,
            "usePool": self.event == "policy.pool.popped",
            "maxMachines": 3,
            "maxProcesses": None,
            "maxUsers": 5,
            "maxCores": None,
            "maxUses": 100,
            "encrypted": False,
            "protected": True,
            "requireHeartbeat": False,
            "heartbeatDuration": None,
            "machineUniquenessStrategy": "UNIQUE_PER_LICENSE",
            "expirationStrategy": "RESTRICT_ACCESS",
            "expirationBasis": "FROM_CREATION",
            "authenticationStrategy": "TOKEN",
            "overageStrategy": "NO_OVERAGE",
            "metadata": {},
            **self.stamps(),
        }

        def rels(path: str) -> dict[str, Any]:
            return {
                "product": kg_one(path, "product", "products", KG["product"]),
                "pool": kg_many(path, "pool"),
                "licenses": kg_many(path, "licenses"),
                "entitlements": kg_many(path, "entitlements"),
            }

        return kg_resource("policies", KG["policy"], attributes, rels)

    def product(self) -> dict[str, Any]:
        attributes = {
            "name": "Acme Studio",
            "code": "acme-studio",
            "distributionStrategy": "LICENSED",
            "url": "https://acme.example.com/studio",
            "platforms": ["macOS", "Windows", "Linux"],
            "metadata": {},
            **self.stamps(),
        }

        def rels(path: str) -> dict[str, Any]:
            return {
                name: kg_many(path, name)
                for name in ("policies", "licenses", "machines", "users", "tokens")
            }

        return kg_resource("products", KG["product"], attributes, rels)

    def entitlement(self) -> dict[str, Any]:
        attributes = {
            "name": "Export to 8K",
            "code": "EXPORT_8K",
            "metadata": {},
            **self.stamps(),
        }
        return kg_resource("entitlements", KG["entitlement"], attributes, lambda path: {})

    def group(self) -> dict[str, Any]:
        attributes = {
            "name": "Acme Design Team",
            "maxUsers": 25,
            "maxLicenses": 25,
            "maxMachines": 75,
            "metadata": {},
            **self.stamps(),
        }

        def rels(path: str) -> dict[str, Any]:
            return {
                name: kg_many(path, name) for name in ("owners", "users", "licenses", "machines")
            }

        return kg_resource("groups", KG["group"], attributes, rels)

    def release(self) -> dict[str, Any]:
        ev = self.event
        status = {"release.yanked": "YANKED", "release.created": "DRAFT"}.get(ev, "PUBLISHED")
        attributes = {
            "name": "Acme Studio 2.4.0",
            "description": "Faster exports, new colour pipeline.",
            "channel": "stable",
            "status": status,
            "tag": "v2.4.0",
            "version": "2.4.0",
            "semver": {"major": 2, "minor": 4, "patch": 0, "prerelease": None, "build": None},
            "metadata": {},
            **self.stamps(),
            "yanked": self.now if ev == "release.yanked" else None,
        }

        def rels(path: str) -> dict[str, Any]:
            return {
                "product": kg_one(path, "product", "products", KG["product"]),
                "package": kg_one(path, "package", "packages", KG["package"]),
                "entitlements": kg_many(path, "entitlements"),
                "constraints": kg_many(path, "constraints"),
                "artifacts": kg_many(path, "artifacts"),
                "upgrade": kg_many(path, "upgrade"),
            }

        return kg_resource("releases", KG["release"], attributes, rels)

    def package(self) -> dict[str, Any]:
        attributes = {
            "name": "Acme Studio Desktop",
            "key": "acme-studio-desktop",
            "engine": None,
            "metadata": {},
            **self.stamps(),
        }

        def rels(path: str) -> dict[str, Any]:
            return {
                "product": kg_one(path, "product", "products", KG["product"]),
                "releases": kg_many(path, "releases"),
            }

        return kg_resource("packages", KG["package"], attributes, rels)

    def artifact(self) -> dict[str, Any]:
        status = "WAITING" if self.event == "artifact.created" else "UPLOADED"
        attributes = {
            "filename": "AcmeStudio-2.4.0-arm64.dmg",
            "filetype": "dmg",
            "filesize": 187654321,
            "platform": "darwin",
            "arch": "arm64",
            "signature": None,
            "checksum": "5b2c3f0e8c1d4a7b9e6f1a2d3c4b5a69",
            "status": status,
            "metadata": {},
            **self.stamps(),
        }

        def rels(path: str) -> dict[str, Any]:
            return {"release": kg_one(path, "release", "releases", KG["release"])}

        return kg_resource("artifacts", KG["artifact"], attributes, rels)

    def component(self) -> dict[str, Any]:
        attributes = {
            "fingerprint": "c0ffee00-disk-serial-WD-WX12A3456789",
            "name": "Boot disk",
            "metadata": {"kind": "disk"},
            **self.stamps(),
        }

        def rels(path: str) -> dict[str, Any]:
            return {
                "product": kg_one(path, "product", "products", KG["product"]),
                "license": kg_one(path, "license", "licenses", KG["license"]),
                "machine": kg_one(path, "machine", "machines", KG["machine"]),
            }

        return kg_resource("components", KG["component"], attributes, rels)

    def process(self) -> dict[str, Any]:
        ev = self.event
        status = {
            "process.heartbeat.dead": "DEAD",
            "process.heartbeat.resurrected": "RESURRECTED",
        }.get(ev, "ALIVE")
        attributes = {
            "pid": "48213",
            "status": status,
            "lastHeartbeat": self.later(-1) if status == "DEAD" else self.now,
            "nextHeartbeat": None
            if status == "DEAD"
            else iso(self.when + dt.timedelta(minutes=10)),
            "interval": 600,
            "metadata": {},
            **self.stamps(),
        }

        def rels(path: str) -> dict[str, Any]:
            return {
                "product": kg_one(path, "product", "products", KG["product"]),
                "license": kg_one(path, "license", "licenses", KG["license"]),
                "machine": kg_one(path, "machine", "machines", KG["machine"]),
            }

        return kg_resource("processes", KG["process"], attributes, rels)

    def second_factor(self) -> dict[str, Any]:
        enabled = self.event == "second-factor.enabled"
        attributes: dict[str, Any] = {"enabled": enabled}
        if self.event == "second-factor.created":
            attributes["uri"] = (
                "otpauth://totp/Keygen:jane.doe%40example.com"
                "?secret=JBSWY3DPEHPK3PXPJBSWY3DP&issuer=Keygen"
            )
        attributes.update(self.stamps())

        def rels(path: str) -> dict[str, Any]:
            return {"user": kg_one(path, "user", "users", KG["user"])}

        return kg_resource("second-factors", KG["second-factor"], attributes, rels)

    def token(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {"kind": "user-token"}
        if self.event in {"token.generated", "token.regenerated"}:
            attributes["token"] = "user-" + det_hex(f"keygen/token/{self.event}") + "v3"
        attributes.update(
            {
                "expiry": self.later(14),
                "name": "CLI login",
                "permissions": ["license.read", "license.validate", "machine.create"],
                **self.stamps(),
            }
        )

        def rels(path: str) -> dict[str, Any]:
            return {"bearer": kg_one(path, "bearer", "users", KG["user"])}

        return kg_resource("tokens", KG["token"], attributes, rels)

    def key(self) -> dict[str, Any]:
        attributes = {"key": "POOL-7Q2K-9XWM-4B1T", **self.stamps()}

        def rels(path: str) -> dict[str, Any]:
            return {
                "product": kg_one(path, "product", "products", KG["product"]),
                "policy": kg_one(path, "policy", "policies", KG["policy"]),
            }

        return kg_resource("keys", KG["key"], attributes, rels)

    def account(self) -> dict[str, Any]:
        path = KG_ACCOUNT_PATH
        return {
            "id": KG_ACCOUNT,
            "type": "accounts",
            "attributes": {
                "name": "Acme Software",
                "slug": "acme",
                "apiVersion": KG_API_VERSION,
                "metadata": {},
                "created": iso(KG_EPOCH - dt.timedelta(days=200)),
                "updated": self.now,
            },
            "relationships": {
                "billing": kg_one(path, "billing", "billings", KG["billing"]),
                "plan": kg_one(path, "plan", "plans", KG["plan"]),
                "webhookEndpoints": kg_many(path, "webhook-endpoints"),
                "webhookEvents": kg_many(path, "webhook-events"),
            },
            "links": {"self": path},
        }

    def billing(self) -> dict[str, Any]:
        attributes = {
            "subscriptionStatus": "active",
            "subscriptionPeriodStart": iso(self.when - dt.timedelta(days=2)),
            "subscriptionPeriodEnd": iso(self.when + dt.timedelta(days=28)),
            "cardExpiry": "2027-08-31T00:00:00.000Z",
            "cardBrand": "Visa",
            "cardLast4": "4242",
            "state": "subscribed",
            **self.stamps(),
        }

        def rels(path: str) -> dict[str, Any]:
            return {"plan": kg_one(path, "plan", "plans", KG["plan"])}

        return kg_resource("billings", KG["billing"], attributes, rels)

    def plan(self) -> dict[str, Any]:
        return {
            "id": KG["plan"],
            "type": "plans",
            "attributes": {
                "name": "Std 1",
                "price": 4900,
                "interval": "month",
                "trialDuration": 604800,
                "maxUsers": 2500,
                "maxPolicies": 100,
                "maxLicenses": 2500,
                "maxProducts": 10,
                "maxReqs": 50000,
                "maxAdmins": 5,
                "private": False,
                "created": "2023-01-02T00:00:00.000Z",
                "updated": self.now,
            },
            "links": {"self": f"/v1/plans/{KG['plan']}"},
        }

    def license_file(self) -> dict[str, Any]:
        attributes = {
            "certificate": kg_certificate("LICENSE FILE", "license-file"),
            "ttl": 1209600,
            "expiry": self.later(14),
            "issued": self.now,
        }

        def rels(path: str) -> dict[str, Any]:
            return {"license": kg_one(path, "license", "licenses", KG["license"])}

        res = kg_resource("license-files", KG["license-file"], attributes, rels)
        res["relationships"]["license"]["links"]["related"] = (
            f"{KG_ACCOUNT_PATH}/licenses/{KG['license']}"
        )
        del res["links"]
        return res

    def machine_file(self) -> dict[str, Any]:
        attributes = {
            "certificate": kg_certificate("MACHINE FILE", "machine-file"),
            "ttl": 1209600,
            "expiry": self.later(14),
            "issued": self.now,
        }

        def rels(path: str) -> dict[str, Any]:
            return {
                "machine": kg_one(path, "machine", "machines", KG["machine"]),
                "license": kg_one(path, "license", "licenses", KG["license"]),
            }

        res = kg_resource("machine-files", KG["machine-file"], attributes, rels)
        for name, rtype in (("machine", "machines"), ("license", "licenses")):
            res["relationships"][name]["links"]["related"] = f"{KG_ACCOUNT_PATH}/{rtype}/{KG[name]}"
        del res["links"]
        return res

    # -- join lists for *.attached / *.detached

    def joins(self) -> list[dict[str, Any]]:
        ev = self.event
        attached = ev.endswith(".attached")
        ents = [KG["entitlement"], KG["entitlement2"]] if attached else [KG["entitlement"]]
        if ev.startswith("license.entitlements."):
            return [
                kg_join(
                    "license-entitlements",
                    det_uuid(f"keygen/le/{e}"),
                    self.now,
                    f"licenses/{KG['license']}/entitlements",
                    {"entitlement": ("entitlements", e), "license": ("licenses", KG["license"])},
                )
                for e in ents
            ]
        if ev.startswith("policy.entitlements."):
            return [
                kg_join(
                    "policy-entitlements",
                    det_uuid(f"keygen/pe/{e}"),
                    self.now,
                    f"policies/{KG['policy']}/entitlements",
                    {"entitlement": ("entitlements", e), "policy": ("policies", KG["policy"])},
                )
                for e in ents
            ]
        if ev.startswith("release.constraints."):
            return [
                kg_join(
                    "release-entitlement-constraints",
                    det_uuid(f"keygen/rc/{e}"),
                    self.now,
                    f"releases/{KG['release']}/constraints/{e}",
                    {"entitlement": ("entitlements", e), "release": ("releases", KG["release"])},
                )
                for e in ents
            ]
        users = [KG["user"], det_uuid("keygen/user2")] if attached else [KG["user"]]
        if ev.startswith("license.users."):
            return [
                kg_join(
                    "license-users",
                    det_uuid(f"keygen/lu/{u}"),
                    self.now,
                    f"licenses/{KG['license']}/users",
                    {"license": ("licenses", KG["license"]), "user": ("users", u)},
                )
                for u in users
            ]
        if ev.startswith("group.owners."):
            return [
                kg_join(
                    "group-owners",
                    det_uuid(f"keygen/go/{u}"),
                    self.now,
                    f"groups/{KG['group']}/owners",
                    {"group": ("groups", KG["group"]), "user": ("users", u)},
                )
                for u in users
            ]
        raise ValueError(f"no join resource known for {ev}")

    # -- the payload document for this event

    def payload(self) -> dict[str, Any]:
        ev = self.event
        subject = first_segment(ev)
        if ev.endswith(".attached") or ev.endswith(".detached"):
            return {"data": self.joins()}
        if ev == "user.password-reset":
            return {
                "data": self.user(),
                "meta": {"passwordResetToken": det_hex("keygen/password-reset-token", 32)},
            }
        if ev.startswith("license.validation."):
            ok = ev.endswith(".succeeded")
            return {
                "data": self.license(),
                "meta": {
                    "ts": self.now,
                    "valid": ok,
                    "detail": "is valid" if ok else "is expired",
                    "code": "VALID" if ok else "EXPIRED",
                },
            }
        special = {
            "license.checked-out": self.license_file,
            "machine.checked-out": self.machine_file,
            "policy.pool.popped": self.key,
            "account.billing.updated": self.billing,
            "account.plan.updated": self.plan,
        }
        if ev in special:
            return {"data": special[ev]()}
        builders: dict[str, Callable[[], dict[str, Any]]] = {
            "account": self.account,
            "artifact": self.artifact,
            "component": self.component,
            "entitlement": self.entitlement,
            "group": self.group,
            "license": self.license,
            "machine": self.machine,
            "package": self.package,
            "policy": self.policy,
            "process": self.process,
            "product": self.product,
            "release": self.release,
            "second-factor": self.second_factor,
            "token": self.token,
            "user": self.user,
        }
        if subject not in builders:
            raise ValueError(f"no Keygen resource known for event {ev}")
        return {"data": builders[subject]()}


def kg_certificate(label: str, name: str) -> str:
    blob = base64.b64encode(hashlib.sha512(f"samples/{name}".encode()).digest() * 3).decode()
    lines = [blob[i : i + 64] for i in range(0, len(blob), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def keygen_subject_id(subject_type: str, payload: dict[str, Any]) -> str | None:
    resource = payload.get("data")
    if isinstance(resource, list):
        resource = resource[0] if resource else None
    if not isinstance(resource, dict):
        return None
    if kg_singular(resource["type"]) == subject_type:
        return resource["id"]
    related = (resource.get("relationships") or {}).get(subject_type) or {}
    linkage = related.get("data")
    if isinstance(linkage, dict) and linkage.get("id"):
        return linkage["id"]
    if subject_type == "account":
        return KG_ACCOUNT
    return resource["id"]


def keygen_events(seeds: Path) -> list[str]:
    text = (seeds / "keygen-event-types.txt").read_text(encoding="utf-8")
    events = re.findall(r"^([a-z][a-z0-9-]*(?:\.[a-z0-9-]+)+) \|$", text, flags=re.MULTILINE)
    if len(events) != len(set(events)):
        raise SystemExit("keygen seed lists an event twice; check the parser")
    return events


def keygen_samples(seeds: Path) -> list[Sample]:
    samples = []
    for index, event in enumerate(keygen_events(seeds)):
        when = moment(index)
        world = KeygenWorld(event, when)
        payload = world.payload()
        event_id = det_uuid(f"keygen/webhook-event/{event}")
        token = det_hex(f"keygen/idempotency/{event}")
        body_obj = {
            "data": {
                "id": event_id,
                "type": "webhook-events",
                "attributes": {
                    "endpoint": KG_ENDPOINT,
                    "payload": compact(payload),
                    "event": event,
                    "status": "DELIVERING",
                    "lastResponseCode": None,
                    "lastResponseBody": None,
                    "created": iso(when),
                    "updated": iso(when),
                    "apiVersion": KG_API_VERSION,
                },
                "relationships": {"account": kg_account_rel()},
                "links": {"self": f"{KG_ACCOUNT_PATH}/webhook-events/{event_id}"},
                "meta": {"idempotencyToken": token},
            }
        }
        subject_type = first_segment(event)
        normalized = record(
            source="keygen",
            event_type=event,
            vendor_event=event,
            external_id=token,
            occurred_at=iso(when),
            account=KG_ACCOUNT,
            actor=None,
            subject_type=subject_type,
            subject_id=keygen_subject_id(subject_type, payload),
            data=payload,
        )
        samples.append(Sample("keygen", event, pretty(body_obj), dict(KG_HEADERS), normalized))
    return samples


# --------------------------------------------------------------------------- licensespring

LS_COMPANY_ID = 1203
LS_USER_ID = 4821
# Events raised by the platform's schedulers or by end-user devices carry no user.
LS_NO_USER = {
    "license.activated",
    "license.deactivated",
    "license.expired",
    "license.maintenance_expired",
    "license.maintenance_will_expire_3_days",
    "license.will_expire_3_days",
}


def licensespring_events(seeds: Path) -> list[tuple[str, list[str]]]:
    """(event, [data objects]) in seed order, first occurrence of each event only."""
    lines = (seeds / "licensespring-events.txt").read_text(encoding="utf-8").splitlines()
    found: dict[str, list[str]] = {}
    for i, line in enumerate(lines):
        name = line.strip()
        if not re.fullmatch(r"[a-z_]+(\.[a-z0-9_]+)+", name):
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("Publishers:"):
            continue
        data_line = next((x for x in lines[i + 1 : i + 5] if x.startswith("Data:")), None)
        if data_line is None:
            raise SystemExit(f"licensespring seed: no Data line for {name}")
        objects = [x.strip() for x in data_line[len("Data:") :].split(",") if x.strip()]
        found.setdefault(name, objects)
    return list(found.items())


def ls_object(kind: str, event: str, when: dt.datetime) -> dict[str, Any]:
    """A LicenseSpring data object: fields as in the seed's "Custom data" section where it
    defines them; the other objects' fields are our assumption."""
    if kind == "customer":
        return {
            "id": 88213,
            "email": "jane.doe@example.com",
            "first_name": "Jane",
            "last_name": "Doe",
            "phone": "+1 415 555 0134",
            "reference": "CRM-0042",
            "address": "500 Market St",
            "postcode": "94105",
            "city": "San Francisco",
            "country": "US",
            "state": "CA",
        }
    if kind == "license":
        times_activated = {
            "license.activated": 2,
            "license.deactivated": 1,
            "license.reset": 0,
        }.get(event, 1)
        return {
            "id": 5531027,
            "activations_type": "online",
            "license_key": "KX7Q-2M9D-L4TP-8RWA",
            "max_license_users": 5,
            "is_trial": False,
            "active": event not in {"license.expired", "license.deleted"},
            "validity_period": "2025-06-30",
            "enable_maintenance_period": True,
            "maintenance_period": ("2024-06-05" if "maintenance" in event else "2025-06-30"),
            "max_activations": 3,
            "times_activated": times_activated,
            "enabled": event != "license.deleted",
            "total_consumptions": 0,
            "max_consumptions": 0,
            "order": {"id": 240117, "store_id": "SO-10482"},
        }
    if kind == "license_user":
        return {
            "id": 73302,
            "true_email": "sam.lee@example.com",
            "first_name": "Sam",
            "last_name": "Lee",
        }
    if kind == "order":
        return {"id": 240117, "store_id": "SO-10482"}
    if kind == "product":
        return {
            "id": 1917,
            "product_name": "Acme Studio",
            "short_code": "acmestudio",
            "active": event != "product.deleted",
            "authorization_method": "license-key",
            "is_archived": False,
            "is_bundle": False,
        }
    # Not defined in the seed: plausible fields, always with an int id.
    assumed: dict[str, dict[str, Any]] = {
        "device_variable": {
            "id": 90412,
            "device_id": 661204,
            "variable": "seat_name",
            "value": "Render node 3",
        },
        "installation_file": {
            "id": 3307,
            "product_id": 1917,
            "version": "2.4.0",
            "full_link": "https://downloads.example.com/acme-studio/2.4.0/AcmeStudio.dmg",
            "environment": "mac",
            "hash_md5": "9e107d9d372bb6826bd81d3542a419d6",
            "release_date": "2024-06-01",
        },
        "license_custom_field": {
            "id": 41876,
            "license_id": 5531027,
            "name": "cost_center",
            "value": "EMEA-DESIGN",
        },
        "license_product_feature": {
            "id": 52210,
            "license_id": 5531027,
            "product_feature_id": 7714,
            "code": "export_8k",
            "max_consumption": 0,
            "total_consumptions": 0,
            "expiry_date": None,
        },
        "product_custom_field": {
            "id": 2291,
            "product_id": 1917,
            "name": "support_tier",
            "default_value": "standard",
        },
        "product_feature": {
            "id": 7714,
            "product_id": 1917,
            "name": "Export to 8K",
            "code": "export_8k",
            "feature_type": "activation",
        },
        "license_user_group": {"id": 611, "name": "Design team", "max_license_users": 25},
    }
    if kind not in assumed:
        raise SystemExit(f"licensespring: no object template for {kind}")
    return dict(assumed[kind])


def licensespring_samples(seeds: Path) -> list[Sample]:
    samples = []
    for index, (event, objects) in enumerate(licensespring_events(seeds)):
        when = moment(index, spacing=131).replace(microsecond=0)
        ts = int(when.timestamp())
        data = {kind: ls_object(kind, event, when) for kind in objects}
        user_id = None if event in LS_NO_USER else LS_USER_ID
        event_id = det_uuid(f"licensespring/event/{event}")
        body = {
            "id": event_id,
            "event": event,
            "company_id": LS_COMPANY_ID,
            "user_id": user_id,
            "ts": ts,
            "data": data,
        }
        subject_type = first_segment(event)
        normalized = record(
            source="licensespring",
            event_type=event,
            vendor_event=event,
            external_id=event_id,
            occurred_at=iso(from_epoch(ts)),
            account=str(LS_COMPANY_ID),
            actor=as_str(user_id),
            subject_type=subject_type,
            subject_id=str(data[subject_type]["id"]),
            data=data,
        )
        headers = {"Content-Type": "application/json"}
        samples.append(Sample("licensespring", event, pretty(body), headers, normalized))
    return samples


# --------------------------------------------------------------------------- fno

FNO_RESOURCE = {
    "ENT": "entitlement",
    "PROD": "product",
    "DEVICE": "device",
    "CLS_INSTANCE": "cls_instance",
}
FNO_ACTION = {"CREATE": "created", "UPDATE": "updated", "DELETE": "deleted"}
FNO_SUBJECT_KEY = {
    "entitlement": "entitlementId",
    "product": "productId",
    "device": "deviceId",
    "cls_instance": "deviceId",
}
# (heading in the seed, sample name, fix for a known typo or None)
FNO_BLOCKS = (
    ("Entitlement Event Sample Payload", "entitlement.updated", None),
    ("Line Item Event Sample Payload", "entitlement.updated@line-item", "line-item-comma"),
    ("Product Event Sample Payload", "product.updated", None),
    ("Device Event Sample Payload", "device.created", "device-stray-quote"),
    ("Cloud Licensing Service Device Event Notification", "cls_instance.updated", None),
)


def fno_block(lines: list[str], heading: str) -> str:
    """The JSON block after ``heading``, verbatim (blank lines kept), up to the next prose."""
    start = lines.index(heading) + 1
    block: list[str] = []
    for line in lines[start:]:
        if line.strip() and line.lstrip()[0].isalpha():
            break
        block.append(line)
    return "\n".join(block).strip("\n") + "\n"


def fno_fix(text: str, fix: str | None) -> str:
    if fix is None:
        return text
    if fix == "line-item-comma":
        fixed, count = re.subn(
            r'\](\s*)"lineItemCustomAttributes"', r'],\1"lineItemCustomAttributes"', text
        )
    elif fix == "device-stray-quote":
        fixed, count = re.subn(r'"ownerName": null,"', '"ownerName": null,', text)
    else:
        raise ValueError(fix)
    if count != 1:
        raise SystemExit(f"fno seed: typo fix {fix!r} did not apply exactly once")
    return fixed


def fno_samples(seeds: Path) -> list[Sample]:
    lines = (seeds / "revenera-fno-payloads.txt").read_text(encoding="utf-8").splitlines()
    samples = []
    for heading, name, fix in FNO_BLOCKS:
        vendor = fno_block(lines, heading)
        # The page indents with no-break spaces (U+00A0), which JSON does not allow as
        # whitespace: an artifact of copying from HTML, not part of the vendor's payload.
        text = vendor.replace("\xa0", " ")
        extra: dict[str, bytes] = {}
        if fix is not None:
            try:
                json.loads(text)
            except json.JSONDecodeError:
                extra[".vendor.txt"] = vendor.encode()
            else:
                raise SystemExit(f"fno seed: {name} parses now; drop the {fix!r} fix")
        parsed = json.loads(fno_fix(text, fix))
        body = pretty(parsed)
        header, event_body = parsed["eventHeader"], parsed["eventBody"]
        resource = FNO_RESOURCE[header["event"]]
        action = FNO_ACTION.get(header["eventType"], header["eventType"].lower())
        event_type = f"{resource}.{action}"
        if name.split("@")[0] != event_type:
            raise SystemExit(f"fno seed: {heading} maps to {event_type}, expected {name}")
        seconds, millis = divmod(int(header["timeStamp"]), 1000)
        normalized = record(
            source="fno",
            event_type=event_type,
            vendor_event=f"{header['event']}/{header['eventType']}",
            external_id=sha256_id(body),
            occurred_at=iso(from_epoch(seconds, millis)),
            account=header["tenant"],
            actor=header["userId"],
            subject_type=resource,
            subject_id=as_str(event_body[FNO_SUBJECT_KEY[resource]]),
            data=event_body,
        )
        headers = {"Content-Type": "application/json"}
        samples.append(Sample("fno", name, body, headers, normalized, extra))
    return samples


# --------------------------------------------------------------------------- zentitle

ZT_CODES = (
    "customer.created",
    "customer.updated",
    "entitlement.created",
    "entitlement.updated",
    "entitlement.activated",
    "entitlement.renewed",
    "entitlement.expired",
    "entitlement.provision",
    "entitlement.expires1day",
    "entitlement.expires7days",
    "entitlement.expires30days",
    "entitlement.maintenance.expired",
    "entitlement.maintenance.expires1day",
    "entitlement.maintenance.expires7days",
    "entitlement.maintenance.expires30days",
    "entitlement.seat.activated",
    "entitlement.seat.deactivated",
    "entitlement.group.created",
    "entitlement.group.updated",
    "entitlement.usage.summary",
)
# .NET's HttpClient JSON content type; assumed, the docs do not show the request headers.
ZT_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def zt_id(name: str) -> str:
    """A Zentitle-style opaque id (22 url-safe base64 characters)."""
    digest = hashlib.sha256(f"samples/zentitle/{name}".encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


ZT = {
    name: zt_id(name)
    for name in (
        "customer",
        "entitlement",
        "group",
        "product",
        "offering",
        "activation",
        "seat",
        "listener",
        "plan",
    )
}


def zt_payload(code: str, when: dt.datetime) -> tuple[str, dict[str, Any]]:
    """(resourceId, payload) for a Zentitle event code."""
    now = iso(when)

    def days(n: int) -> str:
        return iso(when + dt.timedelta(days=n))

    if code.startswith("customer."):
        return ZT["customer"], {
            "customerId": ZT["customer"],
            "name": "Northwind Traders",
            "accountRefId": "CRM-0042",
            "disabled": False,
        }
    if code.startswith("entitlement.group."):
        return ZT["group"], {
            "entitlementGroupId": ZT["group"],
            "customerId": ZT["customer"],
            "orderRefId": "SO-10482",
            "entitlementIds": [ZT["entitlement"]],
        }
    if code.startswith("entitlement.seat."):
        payload: dict[str, Any] = {
            "entitlementId": ZT["entitlement"],
            "activationId": ZT["activation"],
            "seatId": "jane.doe@example.com",
            "seatName": "Jane Doe",
            "seatsUsed": 3 if code.endswith(".activated") else 2,
            "isOverdraftSeat": False,
        }
        if code.endswith(".activated"):
            payload["activatedAt"] = now
            payload["leaseExpiry"] = iso(when + dt.timedelta(hours=24))
        else:
            payload["deactivatedAt"] = now
        return ZT["entitlement"], payload
    payload = {
        "entitlementId": ZT["entitlement"],
        "productId": ZT["product"],
        "offeringId": ZT["offering"],
        "customerId": ZT["customer"],
        "orderRefId": "SO-10482",
        "seatCount": 5,
        "expiresAt": days(365),
    }
    if code == "entitlement.activated":
        payload["activatedAt"] = now
    elif code == "entitlement.renewed":
        payload["expiresAt"] = days(730)
    elif code == "entitlement.expired":
        payload["expiresAt"] = now
    elif code.startswith("entitlement.expires"):
        n = int(re.search(r"\d+", code).group())  # type: ignore[union-attr]
        payload["expiresAt"] = days(n)
        payload["daysToExpire"] = n
    elif code == "entitlement.maintenance.expired":
        payload["maintenanceExpiredAt"] = now
    elif code.startswith("entitlement.maintenance.expires"):
        n = int(re.search(r"\d+", code).group())  # type: ignore[union-attr]
        payload["maintenanceExpiresAt"] = days(n)
        payload["daysToExpire"] = n
    elif code == "entitlement.usage.summary":
        payload["periodStart"] = iso(when - dt.timedelta(days=1))
        payload["periodEnd"] = now
        payload["features"] = [
            {"key": "render-minutes", "type": "Consumption", "used": 342, "available": 658},
        ]
    return ZT["entitlement"], payload


def zentitle_samples() -> list[Sample]:
    samples = []
    for index, code in enumerate(ZT_CODES):
        when = moment(index, spacing=173)
        resource_id, payload = zt_payload(code, when)
        event_id = det_uuid(f"zentitle/event/{code}")
        body = {
            "eventId": event_id,
            "eventDate": iso(when),
            "eventCode": code,
            "resourceId": resource_id,
            "callAttempt": 1,
            "payload": payload,
        }
        normalized = record(
            source="zentitle",
            event_type=code,
            vendor_event=code,
            external_id=event_id,
            occurred_at=iso(when),
            account=None,
            actor=None,
            subject_type=first_segment(code),
            subject_id=resource_id,
            data=payload,
        )
        samples.append(Sample("zentitle", code, pretty(body), dict(ZT_HEADERS), normalized))
    # The "Test" button: empty payload, resourceId is the listener (webhook) id.
    when = moment(len(ZT_CODES), spacing=173)
    body = {
        "eventId": det_uuid("zentitle/event/test"),
        "eventDate": iso(when),
        "eventCode": None,
        "resourceId": ZT["listener"],
        "callAttempt": 1,
        "payload": None,
    }
    normalized = record(
        source="zentitle",
        event_type="webhook.test",
        vendor_event=None,
        external_id="ping:*",
        occurred_at=iso(when),
        account=None,
        actor=None,
        subject_type="webhook",
        subject_id=ZT["listener"],
        data={},
    )
    samples.append(Sample("zentitle", "webhook.test", pretty(body), dict(ZT_HEADERS), normalized))
    return samples


# --------------------------------------------------------------------------- standard


def standard_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def standard_samples() -> list[Sample]:
    when = dt.datetime(2024, 6, 3, 14, 25, 7, tzinfo=dt.UTC)
    data = {
        "id": "lic_01HZX4R8D6Q2M7K9T3VBN5CJ0W",
        "object": "license",
        "key": "ACME-STUDIO-7F3K-Q92M-XL4P",
        "status": "active",
        "product": "acme-studio",
        "plan": "pro-annual",
        "seats": 5,
        "customer": {"id": "cus_P9vK2mQx", "email": "jane.doe@example.com"},
        "expires_at": "2025-06-03T14:25:07.000Z",
        "created_at": iso(when),
    }
    body = pretty({"type": "license.created", "timestamp": iso(when), "data": data})
    msg_id = "msg_2hYV7Bq0X1bTn0kqG3xJ9sWc4aA"
    timestamp = int(when.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Example-Licensing-Webhooks/1.0",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_sign(STANDARD_SECRET, msg_id, timestamp, body),
    }
    normalized = record(
        source="standard",
        event_type="license.created",
        vendor_event="license.created",
        external_id=msg_id,
        occurred_at=iso(when),
        account=None,
        actor=None,
        subject_type="license",
        subject_id=data["id"],
        data=data,
    )
    return [Sample("standard", "license.created", body, headers, normalized)]


# --------------------------------------------------------------------------- generic


def generic_time(body: dict[str, Any]) -> str | None:
    for key in ("occurred_at", "timestamp", "created_at", "created"):
        value = body.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            return iso(dt.datetime.fromtimestamp(value, dt.UTC))
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                continue
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return iso(parsed)
    return None


def generic_sample(name: str, body_obj: dict[str, Any], headers: dict[str, str]) -> Sample:
    body = pretty(body_obj)
    name_field = body_obj.get("type", body_obj.get("event"))
    vendor_event = name_field if isinstance(name_field, str) else None
    event_type = vendor_event or "unknown"
    normalized = record(
        source="generic",
        event_type=event_type,
        vendor_event=vendor_event,
        external_id=sha256_id(body),
        occurred_at=generic_time(body_obj),
        account=None,
        actor=None,
        subject_type=first_segment(event_type) if "." in event_type else None,
        subject_id=None,
        data=body_obj,
    )
    return Sample("generic", name, body, headers, normalized)


def generic_samples() -> list[Sample]:
    order = {
        "id": "evt_3PZq8LkQ2w7YvT1n",
        "type": "order.paid",
        "created_at": "2024-06-03T15:02:44Z",
        "order": {
            "id": "ord_7Hc2Vw9QmR",
            "number": 1042,
            "status": "paid",
            "currency": "EUR",
            "total": "249.00",
            "customer": {"email": "jane.doe@example.com", "name": "Jane Doe"},
            "items": [
                {
                    "sku": "ACME-STUDIO-PRO-1Y",
                    "name": "Acme Studio Pro (1 year)",
                    "quantity": 1,
                    "price": "249.00",
                },
            ],
        },
    }
    unknown = {
        "alert": "disk_usage_high",
        "severity": "warning",
        "host": "build-agent-03",
        "value": 91.4,
        "threshold": 90,
        "created": 1717427405,
    }
    return [
        generic_sample(
            "order.paid",
            order,
            {"Content-Type": "application/json", "User-Agent": "Shoply-Webhooks/2.4"},
        ),
        generic_sample(
            "unknown", unknown, {"Content-Type": "application/json", "User-Agent": "curl/8.5.0"}
        ),
    ]


# --------------------------------------------------------------------------- output

README = """\
# samples/ — vendor webhook fixtures

Generated by `python tools/make_samples.py SEEDS` (deterministic; re-run after changing it,
and `python tools/make_samples.py SEEDS --check` fails when these files are out of date). Do
not edit the files by hand.

## Layout

```
samples/
  index.json                  [{"source", "event_type", "name"}, …] for every sample
  <source>/                   keygen, licensespring, fno, zentitle, standard, generic
    <name>.json               the exact HTTP request body: post these bytes verbatim
    <name>.headers.json       headers the sender sends (JSON object)
    <name>.normalized.json    the expected event record
    <name>.vendor.txt         (fno only, two samples) the vendor's broken sample, verbatim
```

`<name>` is the event type (`license.created`); a second sample of the same type in one
source gets `@variant` (`entitlement.updated@line-item`). Iterate over `index.json` rather
than globbing `*.json` (which also matches the `.headers.json` and `.normalized.json` files).
The generator reads the Keygen and LicenseSpring event lists and the FNO payloads from a
folder of vendor documents named on its command line (`python tools/make_samples.py SEEDS`;
the documents are not shipped with the project). Counts:

{counts}

## The expected record

`<name>.normalized.json` has exactly the keys `source, event_type, vendor_event,
external_id, occurred_at, account, actor, subject_type, subject_id, data`: the part of the
event record ([docs/reference.md](../docs/reference.md#the-event-record)) that comes from
the request. Times are
`YYYY-MM-DDTHH:MM:SS.mmmZ`; ids that are ints in the body are strings; null stays null.
`external_id` is `sha256:<hex>` of the exact `.json` bytes for fno and generic (the sender
gives no id), and the literal placeholder `ping:*` for the Zentitle test ping (pings get a
fresh random key, so compare only the `ping:` prefix).

## Signatures

Headers that need a key are left out (`Date`, `Digest`, `Keygen-Date`, `Keygen-Digest`,
`Keygen-Signature`, `N-Signature`, `Authorization`); `receiver trigger` adds them when a key
is configured. The exception is **standard**: its headers carry a real `webhook-signature`
made with the test secret

    {secret}

over `<webhook-id>.<webhook-timestamp>.<body bytes>`. Its `webhook-timestamp` is fixed
(2024-06-03), so a verifier with the usual 5-minute window refuses it unless the test freezes
the clock or re-signs with a fresh timestamp.

## Per source

- **keygen**: one sample per event type of the seed list (the full webhook-events
  envelope; `attributes.payload` is a compact JSON *string*). One account
  `{kg_account}` and one set of related resources throughout. `*.attached`/`*.detached`
  payloads are lists of join resources; `license.validation.*` payloads carry
  `meta` (`ts`, `valid`, `detail`, `code`); `user.password-reset` carries
  `meta.passwordResetToken`. Headers: Content-Type, User-Agent, Keygen-Version.
- **licensespring**: one per distinct event of the seed list (`license.will_expire_3_days`
  is listed twice there). `data` is keyed by object name. Objects the seed defines
  (customer, license, license_user, order, product) use its fields; the fields of the
  others (device_variable, installation_file, license_custom_field, …) are our guess.
  `user_id` is null for device- and scheduler-raised events.
- **fno**: the five sample payloads of Revenera's "Payload to Webhook Endpoints" page,
  re-indented. The line-item sample (missing comma before `lineItemCustomAttributes`) and
  the device sample (stray `"` after `"ownerName": null,`) are broken on the page: their
  verbatim text is in `*.vendor.txt`, the corrected body in `*.json`. The page indents
  with no-break spaces (U+00A0), kept in `*.vendor.txt` and read as plain spaces otherwise.
- **zentitle**: one per event code, plus `webhook.test.json`, the "Test" button ping
  (`eventCode` and `payload` null, `resourceId` = listener id). Ids are opaque strings;
  Content-Type `application/json; charset=utf-8` is assumed (.NET default).
- **standard**: `license.created` with a valid v1 signature (see above).
- **generic**: `order.paid.json` (has `type`) and `unknown.json` (neither `type` nor
  `event`; time from `created` in epoch seconds).
"""


def build(seeds: Path) -> dict[str, bytes]:
    """Every output file as path (relative to samples/) -> bytes."""
    samples = (
        keygen_samples(seeds)
        + licensespring_samples(seeds)
        + fno_samples(seeds)
        + zentitle_samples()
        + standard_samples()
        + generic_samples()
    )
    validate(samples, seeds)
    files: dict[str, bytes] = {}
    index = []
    for sample in samples:
        stem = f"{sample.source}/{sample.name}"
        files[f"{stem}.json"] = sample.body
        files[f"{stem}.headers.json"] = pretty(sample.headers)
        files[f"{stem}.normalized.json"] = pretty(sample.normalized)
        for suffix, content in sample.extra.items():
            files[f"{stem}{suffix}"] = content
        index.append(
            {"source": sample.source, "event_type": sample.event_type, "name": sample.name}
        )
    files["index.json"] = pretty(index)
    counts = {source: sum(1 for s in samples if s.source == source) for source in SOURCES}
    count_lines = "\n".join(f"- {source}: {n}" for source, n in counts.items())
    count_lines += f"\n- total: {len(samples)}"
    files["README.md"] = (
        README.replace("{counts}", count_lines)
        .replace("{secret}", STANDARD_SECRET)
        .replace("{kg_account}", KG_ACCOUNT)
        .encode()
    )
    return files


def validate(samples: list[Sample], seeds: Path) -> None:
    """Invariants of the fixture set; raise SystemExit naming the first broken one."""
    seen = set()
    for sample in samples:
        where = f"{sample.source}/{sample.name}"
        if (sample.source, sample.name) in seen:
            raise SystemExit(f"duplicate sample {where}")
        seen.add((sample.source, sample.name))
        body = json.loads(sample.body)
        if tuple(sample.normalized) != RECORD_KEYS:
            raise SystemExit(f"{where}: record keys {list(sample.normalized)}")
        if sample.normalized["source"] != sample.source:
            raise SystemExit(f"{where}: wrong source in record")
        if sample.name.split("@")[0] != sample.event_type:
            raise SystemExit(f"{where}: name does not match event_type {sample.event_type}")
        occurred = sample.normalized["occurred_at"]
        if occurred is not None and not re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", occurred
        ):
            raise SystemExit(f"{where}: occurred_at {occurred!r} not in the fixed format")
        for key in ("external_id", "account", "actor", "subject_id", "vendor_event"):
            value = sample.normalized[key]
            if value is not None and not isinstance(value, str):
                raise SystemExit(f"{where}: {key} must be a string or null")
        lowered = {k.lower() for k in sample.headers}
        banned = {
            "date",
            "digest",
            "keygen-date",
            "keygen-digest",
            "keygen-signature",
            "x-signature",
            "n-signature",
            "authorization",
        }
        if lowered & banned:
            raise SystemExit(f"{where}: key-dependent headers {sorted(lowered & banned)}")
        if sample.source == "keygen":
            payload = body["data"]["attributes"]["payload"]
            if not isinstance(payload, str) or json.loads(payload) != sample.normalized["data"]:
                raise SystemExit(f"{where}: payload string does not match record data")
            token = body["data"]["meta"]["idempotencyToken"]
            if not re.fullmatch(r"[0-9a-f]{64}", token):
                raise SystemExit(f"{where}: idempotencyToken is not 64 hex chars")
    counts = {source: sum(1 for s in samples if s.source == source) for source in SOURCES}
    expected = {
        "keygen": len(keygen_events(seeds)),
        "licensespring": len(licensespring_events(seeds)),
        "fno": len(FNO_BLOCKS),
        "zentitle": len(ZT_CODES) + 1,
        "standard": 1,
        "generic": 2,
    }
    if counts != expected:
        raise SystemExit(f"sample counts {counts} != expected {expected}")


def seeds_problem(seeds: Path | str | None) -> str | None:
    """Why ``seeds`` cannot be read from, as a sentence; None when it can."""
    if seeds is None:
        return ("name the folder of vendor documents the samples are made from: "
                "python tools/make_samples.py SEEDS (or set $SAMPLES_SEEDS)")
    folder = Path(seeds)
    if not folder.is_dir():
        return f"the vendor documents' folder {folder} does not exist"
    missing = [name for name in SEED_FILES if not (folder / name).is_file()]
    if missing:
        return f"the vendor documents' folder {folder} has no {', '.join(missing)}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "seeds",
        type=Path,
        nargs="?",
        default=os.environ.get("SAMPLES_SEEDS") or None,
        metavar="SEEDS",
        help=f"folder of vendor documents ({', '.join(SEED_FILES)}); default $SAMPLES_SEEDS",
    )
    parser.add_argument("--out", type=Path, default=SAMPLES, help="output directory")
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the output directory is out of date",
    )
    args = parser.parse_args(argv)
    problem = seeds_problem(args.seeds)
    if problem:
        parser.error(problem)
    files = build(Path(args.seeds))
    out: Path = args.out

    managed = [out / name for name in ("index.json", "README.md")]
    for source in SOURCES:
        if (out / source).is_dir():
            managed.extend(p for p in (out / source).iterdir() if p.is_file())
    stale = sorted(p for p in managed if p.relative_to(out).as_posix() not in files)

    if args.check:
        changed = [
            rel
            for rel, content in files.items()
            if not (out / rel).is_file() or (out / rel).read_bytes() != content
        ]
        for rel in changed:
            print(f"out of date: {rel}", file=sys.stderr)
        for path in stale:
            print(f"stale: {path.relative_to(out)}", file=sys.stderr)
        return 1 if changed or stale else 0

    for path in stale:
        path.unlink()
    written = 0
    for rel, content in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != content:
            path.write_bytes(content)
            written += 1
    print(f"{len(files)} files in {out} ({written} written, {len(stale)} removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
