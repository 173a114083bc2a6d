"""``--cluster local:N`` starts N one-VM workers that listen on loopback only."""

from __future__ import annotations

import os

import psutil

from harness.cluster.client import connect


def test_local_cluster_listens_on_loopback_only_and_offers_one_vm_per_worker():
    with connect("local:2") as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == 2
        assert all(worker["resources"] == {"VM": 1} for worker in workers.values())
        assert all(address.startswith("tcp://127.0.0.1:") for address in workers)
        me = psutil.Process(os.getpid())
        ours = {me.pid} | {child.pid for child in me.children(recursive=True)}
        listening = [
            c.laddr for c in psutil.net_connections(kind="inet") if c.status == "LISTEN" and c.pid in ours
        ]
    assert len(listening) >= 3  # the scheduler and both workers at least
    assert {address.ip for address in listening} == {"127.0.0.1"}
    assert 8787 not in {address.port for address in listening}  # no dashboard on its fixed port
