"""The smoothie on a Dask cluster: a LocalCluster here, any cluster in real life.

    python examples/dask_cluster.py                       # a LocalCluster, 2 workers
    python examples/dask_cluster.py tcp://scheduler:8786  # a running cluster

The workers run the task functions; daguerreo_actors keeps the state
machine, the events, retries and timeouts in this process. The workers
need daguerreo_actors installed (``pip install 'daguerreo-actors[dask]'``)
and must be able to import the task functions (here: ``smoothie``).
"""

from __future__ import annotations

import logging
import sys
from contextlib import ExitStack

import structlog
from distributed import Client, LocalCluster
from smoothie import CTX, TASKS

import daguerreo_actors as d


def main(argv: list[str]) -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with ExitStack() as stack:
        if argv:
            client = stack.enter_context(Client(argv[0]))
        else:
            cluster = stack.enter_context(
                LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
            )
            client = stack.enter_context(Client(cluster))
        print(f"cluster: {client.scheduler.address}, {len(client.nthreads())} workers")
        job = d.run(TASKS, ctx=CTX, timeout=30.0, executor=client, listeners=[d.event_logger()])
        result = job.get(timeout=60.0)
        job.wait_for_listeners(timeout=10.0)
    print(f"\nstate: {result.state}")
    print(f"smoothie: {result.ctx.get('smoothie')!r}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
