"""Shared fixtures: quiet structlog by default, and a leak check on every test."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator

import pykka
import pytest
import structlog
from hypothesis import HealthCheck, settings

from daguerreo_actors import _logwriter, _pool, _supervisor, _tier_async
from daguerreo_actors.testing import VirtualClock

# Hypothesis profiles: "ci" (the default) is derandomized, so every run
# draws the same examples, and prints the blob that replays a failure;
# "soak" (`make soak`) draws SOAK_FACTOR times more examples, at random.
settings.register_profile(
    "ci",
    derandomize=True,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "soak",
    max_examples=100 * 40,  # for tests that do not say; the others use examples()
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)
SOAK_FACTOR = 40  # also in the soak profile above


def examples(ci: int) -> int:
    """How many examples a property test draws under the active profile."""
    return ci * SOAK_FACTOR if PROFILE == "soak" else ci


# Threads our engine starts: pykka names its threads after the actor class.
_ENGINE_THREAD_PREFIXES = ("JobActor", "Supervisor", "ListenerProxy")
LEAK_DEADLINE = 5.0


def engine_threads() -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith(_ENGINE_THREAD_PREFIXES) and t.is_alive()
    ]


def engine_actors() -> list[pykka.ActorRef[pykka.Actor]]:
    return [
        ref
        for ref in pykka.ActorRegistry.get_all()
        if ref.actor_class.__module__.startswith("daguerreo_actors")
    ]


def busy_pool_threads() -> int:
    pool = _pool._pool
    if pool is None:
        return 0
    with pool._lock:
        return pool._threads - pool._idle


def wait_until(predicate: object, timeout: float = LEAK_DEADLINE) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


@pytest.fixture
def clock() -> Iterator[VirtualClock]:
    """A virtual clock, moved far on afterwards: a failing test leaves no task asleep on it."""
    clock = VirtualClock()
    yield clock
    clock.advance(1000)


@pytest.fixture(autouse=True)
def _quiet_structlog() -> Iterator[None]:
    # Tests that look at log entries use the `logs` fixture; the rest keep
    # the engine's debug entries out of pytest's captured output.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
        processors=[structlog.processors.KeyValueRenderer()],
    )
    yield
    structlog.reset_defaults()


@pytest.fixture
def logs() -> Iterator[list[dict[str, object]]]:
    """Every structlog entry made during the test, debug included."""
    structlog.reset_defaults()
    with structlog.testing.capture_logs() as captured:
        yield _Flushing(captured)


class _Flushing(list[dict[str, object]]):
    """The captured entries; reading them first waits for the log writer.

    The engine writes its entries on a thread of its own (``_logwriter``):
    a test reading them right after ``job.get()`` sees every entry queued
    so far.
    """

    def __init__(self, captured: list[dict[str, object]]) -> None:
        super().__init__()
        self._captured = captured

    def _sync(self) -> None:
        _logwriter.flush(10.0)
        self[:] = self._captured

    def __iter__(self):  # type: ignore[no-untyped-def]
        self._sync()
        return super().__iter__()

    def __len__(self) -> int:
        self._sync()
        return super().__len__()

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        self._sync()
        return super().__getitem__(index)


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Like dask's check_thread_leak: nothing outlives a test's jobs.

    Every thread started during the test must be gone within the deadline
    (idle pool threads are retired at once rather than waited for), and no
    actor of ours may be left in pykka's registry.
    """
    before = set(threading.enumerate())
    # Threads of other libraries a test uses on purpose (dask starts some
    # lazily and keeps them): @pytest.mark.foreign_threads("Dask-", ...).
    marker = request.node.get_closest_marker("foreign_threads")
    foreign = tuple(marker.args) if marker else ()
    yield

    def settled() -> bool:
        # The shared threads linger for a second when idle; retire them now.
        pool = _pool._pool
        if pool is not None:
            pool.retire_idle()
        if _tier_async._loop is not None:
            _tier_async._loop.retire_idle()
        _supervisor.retire_idle()
        if "daguerreo_actors._tier_pebble" in sys.modules:
            sys.modules["daguerreo_actors._tier_pebble"].retire_idle()
        _logwriter.writer().retire_idle()
        if engine_actors() or busy_pool_threads():
            return False
        return not [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and not t.name.startswith(foreign)
        ]

    ok = wait_until(settled)
    assert ok, (
        f"leaked: threads={[t.name for t in threading.enumerate() if t not in before]} "
        f"actors={engine_actors()} busy pool threads={busy_pool_threads()}"
    )
