"""Inputs the fuzzers found that once broke an invariant, kept as regression tests."""

from __future__ import annotations

import pytest

from tests.fuzz import harness

store_harness = harness.store_harness
ENGINES = sorted(store_harness.ENGINES) if store_harness is not None else []

# atheris, store-python target: a mutated bundle whose update claims B:0..64 as one deleted item
# of key "k1" while B:0 (k1) and B:1 ("big") are known. The pure engine spliced it after B:1 but
# kept it under "k1": its visible state then differed from what its own diff rebuilt (and from
# yrs), so a newcomer synced from it would never agree with it.
OVERLAPPING_STRUCT_UPDATES = [
    bytes.fromhex(x)
    for x in (
        "0102c39df1f50d002801076d7073746f7265026b31017701312801076d7073746f726503626967017724"
        "7b226e223a5b312c322e352c6e756c6c5d2c2262223a7b222462223a2241413d3d227d7d00",
        "0101c39df1f50d03a8caebcc6800017712226f7665727772697474656e20627920622201caebc868010001",
        "0204c39df1f50d002101076d7073746f7265026b31412801076d7073746f7265036269670177247b226e22"
        "3a5b312c322e352c6e756c6c5d2c2262223a7b222462223a2241413d3d227d7d2801076d7073746f726502"
        "6b320177052274776f22a8caebcc6800017712226f7665727772697474656e20627920622201caebcc6800"
        "2101076d7073746f726506736861726564f5c3f19d01020d010009caebcc68010001",
    )
]


@pytest.mark.skipif(not ENGINES, reason="no store engine in this build")
def test_an_update_overlapping_known_structs_of_another_key_keeps_replicas_consistent() -> None:
    assert store_harness is not None
    results = {}
    for name in ENGINES:
        engine = store_harness.ENGINES[name]
        doc = engine.new_doc()
        for update in OVERLAPPING_STRUCT_UPDATES:
            doc.apply_update(update)
        rebuilt = engine.new_doc()
        rebuilt.apply_update(doc.encode_diff(b"\x00"))
        assert sorted(rebuilt.items()) == sorted(doc.items()), name
        results[name] = sorted(doc.items())
    assert len({tuple(items) for items in results.values()}) == 1, results
