"""Every sample in samples/ goes through the real app and comes out as its expected record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from receiver.config import SOURCES

from .conftest import ROOT, SAMPLES, Sample, all_samples

#: The vendor documents the samples are made from are not shipped with the project: a
#: maintainer who has them sets SAMPLES_SEEDS, and the tests below that need them run.
SEEDS = Path(os.environ.get("SAMPLES_SEEDS") or "/nonexistent")
needs_seeds = pytest.mark.skipif(not SEEDS.is_dir(),
                                 reason="SAMPLES_SEEDS names no folder of vendor documents")
GENERATOR = ROOT / "tools" / "make_samples.py"


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


@needs_seeds
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


def run_generator(*args: str,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "SAMPLES_SEEDS"}
    return subprocess.run([sys.executable, str(GENERATOR), *args], capture_output=True,
                          text=True, env={**environment, **(env or {})}, timeout=120)


@needs_seeds
def test_generator_check_says_samples_are_up_to_date() -> None:
    result = run_generator(str(SEEDS), "--check")
    assert result.returncode == 0, result.stderr
    assert run_generator("--check", env={"SAMPLES_SEEDS": str(SEEDS)}).returncode == 0


@needs_seeds
def test_generator_check_finds_a_changed_sample(tmp_path: Path) -> None:
    out = tmp_path / "samples"
    assert run_generator(str(SEEDS), "--out", str(out)).returncode == 0
    (out / "fno" / "device.created.json").write_text("{}")
    result = run_generator(str(SEEDS), "--out", str(out), "--check")
    assert result.returncode == 1 and "out of date: fno/device.created.json" in result.stderr


@pytest.mark.parametrize(("args", "sentence"), [
    ((), "name the folder of vendor documents the samples are made from"),
    (("/nonexistent/seeds",), "the vendor documents' folder /nonexistent/seeds does not exist"),
    (("{empty}", "--check"), "has no keygen-event-types.txt, licensespring-events.txt, "
                             "revenera-fno-payloads.txt"),
])
def test_generator_without_the_vendor_documents_says_so(tmp_path: Path, args, sentence) -> None:
    result = run_generator(*[arg.format(empty=tmp_path) for arg in args])
    assert result.returncode == 2
    assert sentence in result.stderr
    assert "Traceback" not in result.stderr
