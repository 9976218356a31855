"""Property: whatever the schedule of links, cuts, sets and losses, once the network is quiet
every node sees exactly the current states of the nodes it can reach (directly or relayed)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.presence.test_core import Net

NAMES = ["a", "b", "c", "d", "e"]

op = st.one_of(
    st.tuples(st.just("link"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("cut"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("vanish"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("set"), st.sampled_from(NAMES), st.integers(0, 3)),
    st.tuples(st.just("clear"), st.sampled_from(NAMES), st.none()),
    st.tuples(st.just("wait"), st.sampled_from([0.0, 0.02, 0.3, 1.5]), st.none()),
    st.tuples(st.just("lossy"), st.booleans(), st.none()),
)


def reachable(net: Net, start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        x = todo.pop()
        for link in net.links:
            if x in link:
                (y,) = link - {x}
                if y not in seen:
                    seen.add(y)
                    todo.append(y)
    return seen


@settings(max_examples=200, deadline=None)
@given(st.lists(op, max_size=40))
def test_views_converge_to_the_reachable_states(ops: list[tuple[str, object, object]]) -> None:
    net = Net(NAMES)
    late: list[tuple[str, str]] = []  # (who, lost whom): noticed at the next wait
    for kind, x, y in ops:
        pair = frozenset((x, y))
        if kind == "link" and x != y and pair not in net.links and not any(set(n) == pair for n in late):
            net.link(str(x), str(y))
        elif kind == "cut" and pair in net.links:
            net.cut(str(x), str(y))
        elif kind == "vanish" and pair in net.links:
            # The link dies silently: x notices now, y only later (its peer_timeout).
            net.links.discard(pair)
            net.cores[str(x)].peer_removed(net.id(str(y)), net.now)
            late.append((str(y), str(x)))
            net.pump()
        elif kind == "set":
            net.cores[str(x)].set_local(json.dumps({"v": y}), net.now)
            net.pump()
        elif kind == "clear":
            net.cores[str(x)].set_local(None, net.now)
            net.pump()
        elif kind == "wait":
            net.advance(float(x), step=0.02)  # type: ignore[arg-type]
            for who, whom in late:
                net.cores[who].peer_removed(net.id(whom), net.now)
            late.clear()
            net.pump()
        elif kind == "lossy":
            net.drop_unreliable = bool(x)
    for who, whom in late:
        net.cores[who].peer_removed(net.id(whom), net.now)
    net.pump()
    net.advance(1.5, step=0.05)  # past the throttle and the reliable settle
    for name in NAMES:
        want = {}
        for other in reachable(net, name) - {name}:
            text = net.cores[other].local_text
            if text is not None:
                want[other] = json.loads(text)
        assert net.view(name) == want, (name, net.links)
