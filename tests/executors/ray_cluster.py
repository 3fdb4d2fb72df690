"""A two-node Ray cluster on 127.0.0.1 for the executor tests (run as a script).

Starts a head node and a worker node (each its own raylet, worker processes and
object store; the worker node has the custom resource ``worker_node``), prints
``{"address", "worker_raylet"}`` as one JSON line, and shuts the cluster down when
its standard input closes. ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps every Ray
process on loopback; ``ray start`` refuses a second node in that mode, so the nodes
are started with Ray's own ``ray.cluster_utils.Cluster``.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main() -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=1, resources={"worker_node": 1})
        raylet = next(p.process.pid for name, procs in worker.all_processes.items() if "raylet" in name for p in procs)
        print(json.dumps({"address": cluster.address, "worker_raylet": raylet}), flush=True)
        sys.stdin.read()  # until the test closes our stdin
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
