"""A Ray cluster of several nodes on this machine, every listener on 127.0.0.1 (for tests and trials).

``python -m ocrconvert.zoo.batch.ray_local_cluster [--nodes 2] [--cpus 1] [--lifetime 3600] [--temp-dir D]``
prints one JSON line ``{"address": "127.0.0.1:PORT", "nodes": N, "seconds": S}`` when every node is up,
then holds the cluster until SIGTERM / SIGINT, its parent's death or ``--lifetime`` seconds, and stops
every process it started. Batches reach it with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in their
environment (``ocrconvert batch CONFIG --executor ray --address 127.0.0.1:PORT``).

Why not ``ray start``: Ray 2.60's ``ray start --node-ip-address 127.0.0.1`` turns the loopback address into
the machine's (``scripts.py`` calls ``services.resolve_ip_for_localhost``, which asks
``node_ip_address_from_perspective`` when ``ray_constants.ENABLE_RAY_CLUSTER``), so the servers listen on
that address. With ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` the node address stays 127.0.0.1 and every
server (GCS, raylets, runtime-env agents, core workers, the driver) listens on 127.0.0.1 only, but
``ray start --address`` then refuses to add a node ("Multi-node Ray clusters are not supported on Windows
and OSX"). Ray's own multi-node test harness, ``ray.cluster_utils.Cluster``, adds nodes without that check.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ocrconvert.zoo.batch.ray_local_cluster")
    p.add_argument("--nodes", type=int, default=2, help="head + N-1 worker nodes (default 2)")
    p.add_argument("--cpus", type=int, default=1, help="CPUs per node (default 1)")
    p.add_argument("--object-store-mb", type=int, default=80)
    p.add_argument("--temp-dir", default=None, help="Ray's session folder (short: unix socket paths are limited)")
    p.add_argument("--lifetime", type=float, default=3600.0, help="stop after this many seconds (default 3600)")
    args = p.parse_args(argv)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported: node address 127.0.0.1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")  # a loaded machine starts agents slowly
    from ray._common.utils import get_ray_address_file
    from ray.cluster_utils import Cluster

    # Ray records the newest cluster in /tmp/ray/ray_current_cluster, where a plain ray.init() of anyone on the
    # machine would find (and join) this one: put back what was there
    recorded = Path(get_ray_address_file(None))
    before = recorded.read_text() if recorded.exists() else None

    t0 = time.monotonic()
    parent = os.getppid()
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(1))
    node = {"num_cpus": args.cpus, "object_store_memory": args.object_store_mb << 20}
    head = {**node, "include_dashboard": False, **({"temp_dir": args.temp_dir} if args.temp_dir else {})}
    cluster = Cluster()
    try:  # Ray waits 30 s for a node to register, which a loaded machine may miss: wait longer
        cluster.add_node(wait=False, **head)
        for _ in range(args.nodes - 1):
            cluster.add_node(wait=False, **node)
        cluster.wait_for_nodes(timeout=300)
        _restore(recorded, before)
        print(json.dumps({"address": cluster.address, "nodes": args.nodes,
                          "seconds": round(time.monotonic() - t0, 1)}), flush=True)
        with open(os.devnull, "w") as null:  # nobody need read on: a full pipe must not block the cluster
            os.dup2(null.fileno(), 1)
        while not stop and os.getppid() == parent and time.monotonic() - t0 < args.lifetime:
            time.sleep(0.5)
    finally:
        cluster.shutdown()
        _restore(recorded, before)
    return 0


def _restore(recorded: Path, before: str | None) -> None:
    try:
        if before is None:
            recorded.unlink(missing_ok=True)
        else:
            recorded.write_text(before)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
