"""The one value envelope: freshness, age and a lossless JSON round trip."""

from __future__ import annotations

from stampede.envelope import Entry, Fetched


def test_entry_freshness_and_age() -> None:
    entry = Entry(value={"id": 1}, created_at=100.0, delta=0.25, soft_expiry=105.0)
    assert entry.is_fresh(104.999)
    assert not entry.is_fresh(105.0)
    assert entry.age(103.5) == 3.5


def test_entry_round_trips_through_json() -> None:
    entry = Entry(value={"id": 1, "name": "Lamp", "price": 4.5}, created_at=1.5, delta=0.2,
                  soft_expiry=6.5)  # fmt: skip
    assert Entry.loads(entry.dumps()) == entry
    assert Entry.loads(entry.dumps().encode()) == entry


def test_fetched_carries_the_outcome() -> None:
    fetched = Fetched({"id": 1}, "wait_hit")
    assert fetched.outcome == "wait_hit"
