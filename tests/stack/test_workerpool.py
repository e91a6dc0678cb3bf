"""The worker pool's table (workerpool) against moto: the rule for how many workers, and the
transitions that keep the pool's count true under races."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from workerpool import BUSY, IDLE, Registry, Worker, desired_workers, new_worker_id

from .local_aws import LocalAws

counts = st.integers(min_value=0, max_value=50)


@given(busy=counts, waiting=counts, per=st.integers(1, 10), min_warm=counts, max_workers=st.integers(1, 60))
def test_the_rule_wants_the_busy_plus_one_per_jobs_per_worker_waiting_within_its_bounds(
    busy: int, waiting: int, per: int, min_warm: int, max_workers: int
):
    wanted = desired_workers(
        busy=busy, waiting=waiting, jobs_per_worker=per, min_warm=min_warm, max_workers=max_workers
    )
    assert wanted <= max_workers
    assert wanted >= min(max_workers, min_warm)
    rule = max(min_warm, busy + -(-waiting // per))  # -(-a // b): a / b rounded up
    assert wanted == min(rule, max_workers)
    more = desired_workers(busy=busy, waiting=waiting + 1, jobs_per_worker=per, min_warm=min_warm,
                           max_workers=max_workers)  # fmt: skip
    assert wanted <= more <= wanted + 1  # one more job never wants fewer, nor two more workers


def test_one_job_and_no_busy_worker_wants_one_worker():
    assert desired_workers(busy=0, waiting=1, jobs_per_worker=4, min_warm=0, max_workers=4) == 1
    assert desired_workers(busy=0, waiting=0, jobs_per_worker=4, min_warm=0, max_workers=4) == 0


@pytest.fixture
def registry(aws: LocalAws) -> Registry:
    return Registry(aws.refs["WorkersTable"], aws.client("dynamodb"))


def test_reservations_racing_start_only_as_many_as_desired(registry: Registry):
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(registry.reserve(new_worker_id(), 3, 60)))
               for _ in range(10)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 3
    state = registry.state()
    assert state.counted == len(state.workers) == 3


def test_an_idle_worker_leaves_unless_min_warm_keeps_it_or_a_job_waits(registry: Registry):
    first, second = new_worker_id(), new_worker_id()
    assert registry.reserve(first, 2, 60)
    assert registry.reserve(second, 2, 60)

    assert registry.retire(first, keep=1)  # 2 > 1: one may go
    assert not registry.retire(second, keep=1)  # it is the one MinWarmWorkers keeps
    registry.arrived()
    assert not registry.retire(second, keep=0)  # a job waits for it
    registry.taken()
    assert registry.retire(second, keep=0)
    state = registry.state()
    assert (state.workers, state.counted) == ([], 0)


def test_a_lapsed_worker_is_reaped_only_as_it_was_seen(registry: Registry):
    worker_id = new_worker_id()
    assert registry.reserve(worker_id, 1, 60)
    [seen] = registry.state().workers
    time.sleep(0.01)
    assert registry.renew(worker_id, IDLE, 60)  # it renewed after the scaler looked

    assert not registry.reap(seen)  # not forgotten: its lease is not the one that lapsed
    [now] = registry.state().workers
    assert registry.reap(now)
    assert registry.state().counted == 0
    assert not registry.renew(worker_id, BUSY, 60)  # a reaped worker learns it is out of the pool


def test_a_busy_worker_records_the_job_it_holds_and_forgets_it_when_idle(registry: Registry):
    worker_id = new_worker_id()
    assert registry.reserve(worker_id, 1, 60)
    assert registry.renew(worker_id, BUSY, 60, job=("a" * 32, "receipt"), jobs_done=3)
    [busy] = registry.state().workers
    assert busy == Worker(worker_id, BUSY, busy.lease_until, None, "a" * 32, "receipt", 3)
    assert registry.renew(worker_id, IDLE, 60, jobs_done=4)
    [idle] = registry.state().workers
    assert (idle.status, idle.job_id, idle.receipt_handle, idle.jobs_done) == (IDLE, None, None, 4)
