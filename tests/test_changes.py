"""The pure parts of "what changed" and the activity chart: the field-level diff (Hypothesis:
applying it turns the old document into the new one), its masking and summary, and the
activity buckets."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.read.changes import Change, apply, diff, masked, parse_path, summary
from receiver.store import rollups

SCALARS = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8)
KEYS = st.text(max_size=6) | st.sampled_from(["status", "a.b", "key", "x y", "0", '"'])
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(KEYS, inner, max_size=4), max_leaves=20)


@given(JSON, JSON)
def test_diff_applied_to_old_gives_new(old: Any, new: Any) -> None:
    patched = apply(copy.deepcopy(old), diff(old, new))
    assert diff(patched, new) == [] and patched == new


@given(JSON)
def test_a_document_does_not_differ_from_itself(document: Any) -> None:
    assert diff(document, copy.deepcopy(document)) == []


@given(JSON, JSON)
def test_every_path_parses_back_and_ops_are_known(old: Any, new: Any) -> None:
    for change in diff(old, new):
        assert change.op in ("added", "removed", "changed")
        assert isinstance(parse_path(change.path), list)


def test_diff_names_paths_and_values() -> None:
    old = {"attributes": {"status": "ACTIVE", "expiry": "2026-01-01", "seats": [1, 2]}}
    new = {"attributes": {"status": "SUSPENDED", "expiry": "2027-01-01", "seats": [1],
                          "note": "x"}, "a.b": True}
    assert [change.as_dict() for change in diff(old, new)] == [
        {"path": "attributes.status", "op": "changed", "old": "ACTIVE", "new": "SUSPENDED"},
        {"path": "attributes.expiry", "op": "changed", "old": "2026-01-01",
         "new": "2027-01-01"},
        {"path": "attributes.seats[1]", "op": "removed", "old": 2, "new": None},
        {"path": "attributes.note", "op": "added", "old": None, "new": "x"},
        {"path": '["a.b"]', "op": "added", "old": None, "new": True}]
    assert diff({"n": 1}, {"n": 1.0}) == [] and diff({"n": 1}, {"n": True}) != []


def test_summary_reads_as_one_line() -> None:
    found = diff({"status": "ACTIVE", "expiry": "2026-01-01"},
                 {"status": "SUSPENDED", "expiry": "2027-01-01"})
    assert summary(found) == "status ACTIVE → SUSPENDED, expiry 2026-01-01 → 2027-01-01"
    many = diff({}, {str(n): n for n in range(5)})
    assert summary(many) == "+0 0, +1 1, +2 2, 2 more"
    assert summary([]) == ""


def test_masked_hides_secret_keys_at_any_depth() -> None:
    change = Change("attributes.key", "changed", "A" * 16 + "1234", "B" * 16 + "5678", "key")
    assert masked(change).old == "••••••1234" and masked(change).new == "••••••5678"
    nested = Change("meta", "added", None, {"passwordResetToken": "secret-value-here!"}, "meta")
    assert masked(nested).new == {"passwordResetToken": "••••••ere!"}


def test_window_chooses_the_bucket_from_the_range() -> None:
    now = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)
    assert rollups.window(None, None, None, now).level == "minute"
    assert rollups.window(now - dt.timedelta(days=2), now, None, now).level == "hour"
    chosen = rollups.window(now - dt.timedelta(days=30), now, None, now)
    assert chosen.level == "day" and chosen.count() == 31
    with pytest.raises(ValueError, match="more than one answer holds"):
        rollups.window(now - dt.timedelta(days=30), now, "minute", now)


def test_percentiles_interpolate_inside_the_histogram() -> None:
    histogram = [0] * len(rollups.DURATION_BOUNDS_MS)
    assert rollups.percentile(histogram, 0.5) is None
    histogram[3] = 10  # ten runs between 5 and 10 ms
    assert rollups.percentile(histogram, 0.5) == pytest.approx(7.5)
    histogram[-1] = 90  # slower than 30 s reads as 30 s
    assert rollups.percentile(histogram, 0.95) == 30000
