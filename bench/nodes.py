"""Scale-out: client_credentials throughput with one node and with two (two uvicorn processes on
different ports, one database).

This machine has two cores. One node: the node on core 0, wrk on core 1 (as every other row).
Two nodes: one node per core, and a wrk per node left unpinned, so the load generators take
their share of both cores away from the nodes. The ratio shows that a second node adds
throughput and that nothing in the database serialises the token path; it is not the 2× that
nodes on machines of their own would give."""

from __future__ import annotations

import concurrent.futures

from load import WrkResult, basic, paired, post_script, wrk
from stack import LOAD_CORE, free_port
from table import Row


def row(bench) -> list[Row]:
    client = bench.clients["cc_es256"]
    script = post_script(bench.folder / "nodes.lua", "grant_type=client_credentials",
                         basic(client.client_id, client.secret))
    second = bench.start_idp(free_port(), core=LOAD_CORE)  # idle while one node is measured

    def one_node(seconds: int):
        return wrk(f"{bench.idp.url}/token", seconds=seconds, connections=bench.connections, lua=script)

    def two_nodes(seconds: int):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(wrk, f"{node.url}/token", seconds=seconds, connections=bench.connections,
                                lua=script, core=None) for node in (bench.idp, second)]
            return WrkResult(sum(run.result().rate for run in runs), sum(run.result().requests for run in runs))

    try:
        two, one = paired(two_nodes, one_node, bench.seconds)
    finally:
        second.stop()
    return [Row("client_credentials (ES256), two nodes vs one (cores shared with wrk, see README)",
                f"{two:,.0f}/s", f"one node: {one:,.0f}/s", f"{two / one:.2f}")]
