"""The pair decision (sans-IO): which link a pair keeps, and when a new one may replace it."""

from __future__ import annotations

from mpstore._pairing import Connection, PairTable, Verdict, connection_verdict

P = "p" * 32
CERT, OTHER = b"cert of p", b"a stranger's cert"


def test_a_connection_from_another_identity_goes_alongside_on_both_ends() -> None:
    held = [Connection("old", CERT)]
    assert connection_verdict(held, OTHER, we_decide=True) == (Verdict.PROCEED, None)
    assert connection_verdict(held, OTHER, we_decide=False) == (Verdict.PROCEED, None)
    assert connection_verdict(held, None, we_decide=False) == (Verdict.PROCEED, None)


def test_the_same_identity_is_a_duplicate_for_the_decider_and_a_replacement_for_the_other() -> None:
    held = [Connection("stranger", OTHER), Connection("old", CERT)]
    assert connection_verdict(held, CERT, we_decide=True) == (Verdict.REFUSE, held[1])
    assert connection_verdict(held, CERT, we_decide=False) == (Verdict.REPLACE, held[1])
    assert connection_verdict([], CERT, we_decide=True) == (Verdict.PROCEED, None)


def test_an_unauthenticated_hello_waits_while_the_peer_is_open_and_goes_on_when_it_ends() -> None:
    t: PairTable[str] = PairTable()
    assert t.on_hello("l1", P, authenticated=False) is Verdict.PROCEED
    assert t.on_open("l1", P, authenticated=False) == (Verdict.PROCEED, None)
    assert t.on_hello("l2", P, authenticated=False) is Verdict.WAIT
    assert t.on_hello("l3", P, authenticated=False) is Verdict.WAIT
    assert t.on_hello("l2", P, authenticated=False) is Verdict.WAIT  # judged again: still once
    assert t.waiting(P) == ["l2", "l3"]
    assert t.on_closed("l3") == []  # a waiting link that ends is forgotten
    assert t.open_link(P) == "l1"
    assert t.on_closed("l1") == ["l2"]
    assert t.open_link(P) is None
    assert t.on_hello("l2", P, authenticated=False) is Verdict.PROCEED


def test_an_unauthenticated_link_never_replaces_an_open_one() -> None:
    t: PairTable[str] = PairTable()
    t.on_open("l1", P, authenticated=False)
    # Two handshakes raced and the second opened too: it is refused, the first stays.
    assert t.on_open("l2", P, authenticated=False) == (Verdict.REFUSE, "l1")
    assert t.open_link(P) == "l1"
    assert t.on_closed("l2") == []
    assert t.open_link(P) == "l1"


def test_an_authenticated_link_proceeds_and_replaces_the_open_one_once_it_opens() -> None:
    t: PairTable[str] = PairTable()
    t.on_open("l1", P, authenticated=True)
    assert t.on_hello("l2", P, authenticated=True) is Verdict.PROCEED
    assert t.open_link(P) == "l1"  # nothing changes until the new link is open
    assert t.on_open("l2", P, authenticated=True) == (Verdict.REPLACE, "l1")
    assert t.open_link(P) == "l2"
    assert t.on_closed("l1") == []  # the replaced link's end does not free the pair
    assert t.open_link(P) == "l2"


def test_links_of_different_peers_do_not_interact() -> None:
    t: PairTable[str] = PairTable()
    t.on_open("l1", P, authenticated=False)
    assert t.on_hello("l2", "q" * 32, authenticated=False) is Verdict.PROCEED
    assert t.on_open("l2", "q" * 32, authenticated=False) == (Verdict.PROCEED, None)
    assert t.on_closed("l1") == [] and t.open_link("q" * 32) == "l2"
