"""The one value envelope: freshness, age and a lossless JSON round trip."""

from __future__ import annotations

import pytest

from stampede.envelope import Entry, Fetched, json_bytes
from stampede.errors import CorruptEntry
from stampede.outcomes import Outcome


def test_entry_freshness_and_age() -> None:
    entry = Entry(value=b'{"id":1}', created_at=100.0, delta=0.25, soft_expiry=105.0)
    assert entry.is_fresh(104.999)
    assert not entry.is_fresh(105.0)
    assert entry.age(103.5) == 3.5


def test_entry_round_trips_losslessly() -> None:
    value = json_bytes({"id": 1, "name": "Lämp\n", "price": 4.5})
    entry = Entry(value=value, created_at=1764612345.123456, delta=0.2, soft_expiry=6.5)
    assert Entry.loads(entry.dumps()) == entry
    assert Entry.loads(entry.dumps()).data() == {"id": 1, "name": "Lämp\n", "price": 4.5}


def test_the_value_is_stored_and_read_back_as_the_same_bytes() -> None:
    """A hit answers the origin's bytes as they are: nothing parses or re-renders them."""
    value = b'{"id":7,"name":"Quiet Lamp 007"}'
    raw = Entry(value, 1.0, 0.2, 6.0).dumps()
    assert raw.endswith(b"\n" + value)
    assert Entry.loads(raw).value == value


@pytest.mark.parametrize(
    "raw",
    [b"", b"garbage", b'{"value": {"id": 1}, "created_at": 1.0}', b"1.0 0.2 6.0", b"1.0 x 6.0\n{}",
     b"1.0 0.2\n{}", b"1.0 0.2 6.0\n"],
)  # fmt: skip
def test_anything_but_an_envelope_is_a_corrupt_entry(raw: bytes) -> None:
    with pytest.raises(CorruptEntry):
        Entry.loads(raw)


def test_fetched_carries_the_outcome() -> None:
    fetched = Fetched(b'{"id":1}', Outcome.WAIT_HIT)
    assert fetched.outcome == "wait_hit"
    assert fetched.data() == {"id": 1}
