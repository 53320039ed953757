"""The activity rollup's counting (``receiver.store.rollups``), a pure function: whatever the
rows, each level counts every row once in the bucket its time falls in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from receiver.store.rollups import LEVELS, bucket_key, roll_up_deliveries

times = st.datetimes().map(lambda moment: moment.isoformat(timespec="milliseconds") + "Z")
rows = st.lists(st.tuples(
    st.integers(1, 10**9), times, st.sampled_from([None, "keygen", "fno"]),
    st.sampled_from(["default", "keygen"]), st.sampled_from([None, "license.created", "x"]),
    st.sampled_from([200, 400, 503]), st.sampled_from([0, 1, True, False, None]),
    st.sampled_from([None, "valid", "invalid"])), max_size=60)


def counted_row_by_row(rows, levels):
    """What the rollup means: one count per row and level."""
    counts = {}
    for _, received_at, source, endpoint, event_type, status_code, duplicate, signature in rows:
        values = (source or "", endpoint, event_type or "", int(status_code),
                  1 if duplicate else 0, signature or "")
        for level in levels:
            key = (level, bucket_key(received_at, level), *values)
            counts[key] = counts.get(key, 0) + 1
    return counts


@given(rows, st.lists(st.sampled_from(LEVELS), unique=True))
def test_every_level_counts_every_row_once(rows, levels) -> None:
    assert roll_up_deliveries(rows, levels) == counted_row_by_row(rows, levels)


def test_a_minute_of_deliveries_is_one_count_per_level() -> None:
    rows = [(n, f"2026-12-07T06:41:{n:02d}.000Z", "keygen", "keygen", "license.created", 200,
             0, "valid") for n in range(50)]
    assert roll_up_deliveries(rows) == {
        ("minute", "2026-12-07T06:41", "keygen", "keygen", "license.created", 200, 0, "valid"): 50,
        ("hour", "2026-12-07T06", "keygen", "keygen", "license.created", 200, 0, "valid"): 50,
        ("day", "2026-12-07", "keygen", "keygen", "license.created", 200, 0, "valid"): 50,
        ("all", "", "keygen", "keygen", "license.created", 200, 0, "valid"): 50,
    }
