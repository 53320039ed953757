"""Every sample in samples/ goes through the real app and comes out as its expected record."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from receiver.config import SOURCES

from .conftest import SAMPLES, Sample, all_samples

SEEDS = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds"


@pytest.mark.parametrize("item", all_samples(), ids=str)
def test_sample_normalizes_to_expected_record(client, store, item: Sample) -> None:
    response = client.post("/hooks", data=item.body, headers=item.headers)
    assert response.status_code == 200, response.json
    answer = response.json
    expected = item.normalized
    assert answer["source"] == expected["source"]
    assert answer["event_type"] == expected["event_type"]
    assert answer["duplicate"] is False

    record = store.get_event(answer["event_id"]).as_dict()
    if expected["external_id"] == "ping:*":
        assert record["external_id"].startswith("ping:")
        expected = {**expected, "external_id": record["external_id"]}
    assert {key: record[key] for key in expected} == expected
    assert record["endpoint"] == "default"
    assert record["delivery_count"] == 1

    # The delivery keeps the exact bytes and the headers the sender sent.
    delivery = store.get_delivery(answer["delivery_id"], with_body=True)
    assert delivery["body"] == item.body
    sent = {name.lower(): value for name, value in item.headers.items()}
    kept = {name.lower(): value for name, value in delivery["headers"]}
    assert all(kept.get(name) == value for name, value in sent.items())

    listed = client.get(f"/api/events?source={expected['source']}").json["events"]
    assert listed[0]["event_type"] == expected["event_type"]
    assert listed[0]["subject_id"] == expected["subject_id"]


def test_every_source_has_samples() -> None:
    counts = Counter(item.source for item in all_samples())
    assert set(counts) == set(SOURCES)


def _keygen_seed_types() -> set[str]:
    text = (SEEDS / "keygen-event-types.txt").read_text()
    return {line.split(" |")[0] for line in text.splitlines()
            if line.endswith(" |") and "." in line and " " not in line.split(" |")[0]}


def _licensespring_seed_events() -> set[str]:
    lines = (SEEDS / "licensespring-events.txt").read_text().splitlines()
    return {line for line, after in zip(lines, lines[1:], strict=False)
            if after.startswith("Publishers:")}


@pytest.mark.skipif(not SEEDS.is_dir(), reason="vendor seeds (../shared/seeds) not present")
def test_samples_cover_every_seed_event_type() -> None:
    names = {(item.source, item.event_type) for item in all_samples()}
    keygen = _keygen_seed_types()
    licensespring = _licensespring_seed_events()
    assert len(keygen) > 90 and len(licensespring) > 40
    assert {("keygen", name) for name in keygen} <= names
    assert {("licensespring", name) for name in licensespring} <= names
    fno = [item for item in all_samples() if item.source == "fno"]
    assert len(fno) == 5


def test_broken_vendor_samples_are_kept_verbatim_and_refused(client, store) -> None:
    vendor_texts = sorted(SAMPLES.glob("fno/*.vendor.txt"))
    assert len(vendor_texts) == 2
    for path in vendor_texts:
        raw = path.read_bytes()
        response = client.post("/hooks", data=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert response.json["error"].startswith("body is not valid JSON")
        stored = store.get_delivery(response.json["delivery_id"], with_body=True)
        assert stored["body"] == raw and stored["status_code"] == 400
        assert stored["error"] == response.json["error"]
        corrected = path.with_name(path.name.replace(".vendor.txt", ".json"))
        json.loads(corrected.read_bytes())
