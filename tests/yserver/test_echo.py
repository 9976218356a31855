"""Every store value through a Yjs server and a Node Yjs client there, in both dialects."""

from __future__ import annotations

from pathlib import Path

import pytest

import mpstore
from tests.web.test_node_client import Quiet, echo_through_node, pytestmark  # noqa: F401
from tests.yserver.servers import DIALECTS, running


@pytest.mark.parametrize("engine", ["pycrdt", "python"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_value_round_trips_through_a_server_and_a_node_client(
    dialect: str, engine: str, tmp_path: Path
) -> None:
    if engine == "pycrdt":
        pytest.importorskip("pycrdt")
    net = mpstore.MemoryNetwork()
    a = Quiet("a", "echo", transport=net, engine=engine)
    b = Quiet("b", "echo", transport=net, engine=engine)
    try:
        with running(dialect, tmp_path) as server:
            conn = a.connect_server(server.url, "vals", dialect=dialect)
            conn.wait_synced(15)
            echo_through_node(dialect, server.url, "vals", a.shared_dict("vals"), b.shared_dict("vals"))
    finally:
        a.end_all()
        b.end_all()
