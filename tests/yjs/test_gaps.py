"""Issue 10 part 1, one regression per defect: updates with gaps in a sender's clocks, against Yjs.

Each sequence below was found by random search with pycrdt 0.14.13 and fails on the pycrdt
engine without the causal gate (engines/_gate.py); Yjs is the expectation at every step.
"""

from __future__ import annotations

import pytest

from mpstore import CorruptUpdate
from mpstore.engines import load_engine
from mpstore.engines._python._update import decode_state_vector

from .oracle import YjsOracle
from .test_yjs_oracle import ENGINES, assert_matches_yjs


def _updates(*texts: str) -> list[bytes]:
    return [bytes.fromhex(t) for t in texts]


# Writer W sets a, then b (b's update names a as nothing: it is only a gap in W's clocks).
SIMPLE_GAP = _updates(
    "010101002801076d7073746f7265016101770322312200",
    "010101012801076d7073746f7265016201770322322200",
)[::-1]

# yrs panicked in pycrdt's map-event code ("called `Option::unwrap()` on a `None` value") and
# the engine reported the update rejected, though yrs had integrated it (its state vector moved).
REJECTED_BUT_APPLIED = _updates(
    "0101b5fef8ab0a012801076d7073746f72650162017704302e353700",
    "0101cfd5dab304002801076d7073746f72650162017704302e303100",
    "0002b5fef8ab0a010003cfd5dab304010001",
    "0101cfd5dab30401a8cfd5dab30400017704302e383301cfd5dab304010001",
    "0101b5fef8ab0a02a8b5fef8ab0a00017704302e383301b5fef8ab0a010002",
    "0101b5fef8ab0a002801076d7073746f72650161017704302e363200",
    "0000",
    "0101b5fef8ab0a03a8b5fef8ab0a02017704302e323001b5fef8ab0a010201",
)

# Every update arrives, yet yrs's state vector stays behind (its pending structs were lost).
PENDING_LOST = _updates(
    "0101c68ca2f809002801076d7073746f72650161017704302e393600",
    "01018caf9ee609002801076d7073746f72650162017704302e343000",
    "01018caf9ee609022801076d7073746f72650161017704302e383900",
    "01018caf9ee60903a88caf9ee60901017704302e3731018caf9ee609010101",
    "0000",
    "01018caf9ee60901a88caf9ee60900017704302e3133018caf9ee609010001",
)

# yrs shows an entry Yjs has deleted, with the same state vector as Yjs.
SHOWS_DELETED = _updates(
    "01019788b1f306022801076d7073746f72650161017704302e393000",
    "01019788b1f30603a89788b1f30601017704302e3535019788b1f306010101",
    "0000",
    "01019788b1f306002801076d7073746f72650162017704302e373600",
    "01019788b1f30601a89788b1f30600017704302e3433019788b1f306010001",
    "00019788b1f306010001",
)

CASES = {
    "a gap shows nothing until it is filled": SIMPLE_GAP,
    "rejected but applied": REJECTED_BUT_APPLIED,
    "pending structs lost": PENDING_LOST,
    "deleted entry kept showing": SHOWS_DELETED,
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", list(CASES))
def test_gapped_delivery_matches_yjs_at_every_step(yjs: YjsOracle, engine: str, case: str) -> None:
    """Never rejects what it integrates; shows, reports and holds exactly what Yjs does."""
    doc = load_engine(engine).new_doc()
    twin = yjs.doc()
    view: dict[str, str] = {}
    try:
        for step, update in enumerate(CASES[case]):
            try:
                changes = doc.apply_update(update)
            except CorruptUpdate as exc:
                pytest.fail(f"step {step}: a valid update was rejected ({exc})")
            twin.apply_update(update)
            for key, value in changes.items():
                if value is None:
                    view.pop(key, None)
                else:
                    view[key] = value
            shown = dict(doc.items())
            assert_matches_yjs(shown, twin, f"step {step}", engine)
            assert view == shown, f"step {step}: reported changes do not add up to what it shows"
            assert decode_state_vector(doc.state_vector()) == decode_state_vector(twin.state_vector())
            assert doc.waiting() == twin.pending(), f"step {step}: 'something is missing' differs"
        # a replica rebuilt from its snapshot is the same, and so is Yjs fed that snapshot
        rebuilt = load_engine(engine).new_doc()
        rebuilt.apply_update(doc.encode_diff(b"\x00"))
        assert dict(rebuilt.items()) == dict(doc.items())
    finally:
        twin.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_gap_is_repaired_by_a_full_sync(yjs: YjsOracle, engine: str) -> None:
    """Held structs wait (waiting() says so); a step 2 from a complete replica fills the gap."""
    full = yjs.doc()
    for update in PENDING_LOST:
        full.apply_update(update)
    doc = load_engine(engine).new_doc()
    try:
        for update in PENDING_LOST[2:]:
            doc.apply_update(update)
        assert doc.waiting()
        doc.apply_update(full.encode_diff(doc.state_vector()))
        assert not doc.waiting()
        assert dict(doc.items()) == dict(full.items())
        assert decode_state_vector(doc.state_vector()) == decode_state_vector(full.state_vector())
    finally:
        full.close()


def test_a_relay_forwards_what_yrs_integrated_while_panicking() -> None:
    """W -> M -> R: M (pycrdt) got the sequence whose map events panic; it must relay every
    update it integrated, so R shows what M shows at every step (before the gate M reported the
    update rejected and did not relay it)."""
    pytest.importorskip("pycrdt")
    from mpstore._docsync import DocSync, encode_update

    m = DocSync("M", load_engine("pycrdt").new_doc)
    r = DocSync("R", load_engine("python").new_doc)
    nodes = {"M": m, "R": r}

    def pump() -> None:
        for _ in range(100):
            moved = False
            for name, node in nodes.items():
                for peer, payload in node.take_outbox():
                    if peer in nodes:
                        nodes[peer].receive(name, payload)
                        moved = True
            if not moved:
                return
        raise AssertionError("messages still flowing after 100 rounds")

    m.peer_added("W")
    m.peer_added("R")
    r.peer_added("M")
    pump()
    for seq, update in enumerate(REJECTED_BUT_APPLIED, 1):
        m.receive("W", encode_update("W", seq, "s", update))
        pump()
        assert m.stats.rejected == 0, f"step {seq}: M rejected an update it integrated"
        assert dict(r.doc("s").items()) == dict(m.doc("s").items()), f"step {seq}"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_writers_key_never_vanishes_while_its_new_value_waits(yjs: YjsOracle, engine: str) -> None:
    """Issue 10 part 4, the engine's half: W sets k, then j, then k again; R has the first and
    gets the third before the second. Yjs applies the third's deletion of k's old value at once
    (it is here) while the new value waits for the gap, so k vanishes; our engines hold the
    deletion with its update: R shows only states of W's history, and ends equal to Yjs."""
    w = load_engine("python").new_doc()
    updates = [w.transact(sets, []) for sets in ({"k": '"1"'}, {"j": '"x"'}, {"k": '"2"'})]
    doc = load_engine(engine).new_doc()
    twin = yjs.doc()
    try:
        shown = []
        for update in (updates[0], updates[2], updates[1]):
            doc.apply_update(update)
            twin.apply_update(update)
            shown.append(doc.get("k"))
        assert dict(twin.items()) == {"k": '"2"', "j": '"x"'}
        assert shown == ['"1"', '"1"', '"2"']
        assert dict(doc.items()) == dict(twin.items())
        assert decode_state_vector(doc.state_vector()) == decode_state_vector(twin.state_vector())
        assert not doc.waiting()
    finally:
        twin.close()
