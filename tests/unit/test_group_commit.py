"""storage.group_commit: calls that arrive while a batch is written go together in the next one."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from storage.group_commit import GroupCommit


class Recorder:
    """A ``write_batch`` that records its batches; the first batch blocks until released."""

    def __init__(self, fail_on=None, error=ValueError):
        self.batches: list[list[int]] = []
        self.first_started = threading.Event()
        self.release_first = threading.Event()
        self.fail_on, self.error = fail_on, error

    def __call__(self, params):
        self.batches.append(list(params))
        if len(self.batches) == 1:
            self.first_started.set()
            assert self.release_first.wait(5)
        if self.fail_on is not None and self.fail_on in params:
            raise self.error(f"bad value {self.fail_on}")
        return [p * 10 for p in params]


def call_in_threads(group, values):
    results, errors = {}, {}

    def run(v):
        try:
            results[v] = group(v)
        except Exception as exc:  # noqa: BLE001
            errors[v] = exc

    threads = [threading.Thread(target=run, args=(v,)) for v in values]
    for t in threads:
        t.start()
    return threads, results, errors


def wait_waiting(group, count):
    deadline = time.monotonic() + 5
    while len(group._waiting) < count:
        assert time.monotonic() < deadline, "the calls never queued"
        time.sleep(0.001)


def test_a_lone_call_is_written_at_once_and_gets_its_own_result():
    writes = []
    group = GroupCommit(lambda ps: writes.append(list(ps)) or [p + 1 for p in ps], name="test")
    assert group(1) == 2
    assert group(5) == 6
    assert writes == [[1], [5]]


@pytest.mark.parametrize("caller_writes_alone", [False, True], ids=["writer", "caller-alone"])
def test_calls_arriving_during_a_write_share_the_next_batch(caller_writes_alone):
    """The first call is written by the writer thread, or by its caller alone: either way the calls
    arriving meanwhile wait, and go together in the writer's next batch."""
    recorder = Recorder()
    group = GroupCommit(recorder, name="test", caller_writes_alone=caller_writes_alone)
    first, first_results, _ = call_in_threads(group, [0])
    assert recorder.first_started.wait(5)
    rest, results, errors = call_in_threads(group, range(1, 6))
    wait_waiting(group, 5)
    recorder.release_first.set()
    for t in [*first, *rest]:
        t.join(5)
    assert recorder.batches[0] == [0]
    assert sorted(recorder.batches[1]) == [1, 2, 3, 4, 5] and len(recorder.batches) == 2
    assert first_results == {0: 0} and results == {v: v * 10 for v in range(1, 6)} and not errors


def test_max_batch_splits_what_is_waiting():
    recorder = Recorder()
    group = GroupCommit(recorder, name="test", max_batch=2)
    first, results, _ = call_in_threads(group, [0])
    assert recorder.first_started.wait(5)
    rest, results2, _ = call_in_threads(group, [1, 2, 3, 4, 5])
    wait_waiting(group, 5)
    recorder.release_first.set()
    for t in [*first, *rest]:
        t.join(5)
    assert [len(b) for b in recorder.batches] == [1, 2, 2, 1]
    assert results2 == {v: v * 10 for v in range(1, 6)}


def test_a_bad_call_fails_alone_when_its_batch_is_written_again_one_by_one():
    recorder = Recorder(fail_on=3)
    group = GroupCommit(recorder, name="test")
    first, _, _ = call_in_threads(group, [0])
    assert recorder.first_started.wait(5)
    rest, results, errors = call_in_threads(group, [1, 2, 3, 4])
    wait_waiting(group, 4)
    recorder.release_first.set()
    for t in [*first, *rest]:
        t.join(5)
    assert results == {1: 10, 2: 20, 4: 40}
    assert list(errors) == [3] and isinstance(errors[3], ValueError)
    assert sorted(recorder.batches[1]) == [1, 2, 3, 4]  # the batch, then each call on its own
    assert sorted(p for b in recorder.batches[2:] for p in b) == [1, 2, 3, 4]


def test_a_lost_connection_fails_the_whole_batch_without_retrying_it():
    recorder = Recorder(fail_on=2, error=psycopg.OperationalError)
    group = GroupCommit(recorder, name="test")
    first, _, _ = call_in_threads(group, [0])
    assert recorder.first_started.wait(5)
    rest, results, errors = call_in_threads(group, [1, 2])
    wait_waiting(group, 2)
    recorder.release_first.set()
    for t in [*first, *rest]:
        t.join(5)
    assert not results and set(errors) == {1, 2}
    assert all(isinstance(e, psycopg.OperationalError) for e in errors.values())
    assert len(recorder.batches) == 2


def test_a_call_not_written_in_time_gives_up_and_is_withdrawn():
    recorder = Recorder()
    group = GroupCommit(recorder, name="test", wait_s=0.6)
    first, _, _ = call_in_threads(group, [0])
    assert recorder.first_started.wait(5)
    with pytest.raises(TimeoutError, match="test write was not done"):
        group(1)
    assert group._waiting == []
    recorder.release_first.set()
    first[0].join(5)
    assert recorder.batches == [[0]]  # the withdrawn call was never written


def test_a_batch_that_dies_of_the_unforeseen_fails_its_calls_and_the_writer_goes_on():
    def explode(params):
        raise SystemExit  # not even an Exception

    group = GroupCommit(explode, name="test")
    with pytest.raises(RuntimeError, match="interrupted"):
        group(1)
    group.write_batch = lambda ps: list(ps)
    assert group(7) == 7


def test_a_forked_child_writes_with_a_writer_of_its_own():
    import os

    group = GroupCommit(lambda ps: [(os.getpid(), p) for p in ps], name="test", wait_s=5)
    assert group(1) == (os.getpid(), 1)  # the parent's writer thread is running
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's writer thread did not come along
        ok = False
        try:
            ok = group(2) == (os.getpid(), 2)
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)


def test_each_batch_is_reported_to_the_observer_and_a_failing_observer_changes_nothing():
    recorder = Recorder()
    group = GroupCommit(recorder, name="test")
    seen = []
    group.on_batch = lambda name, size: seen.append((name, size))
    first, _, _ = call_in_threads(group, [0])
    assert recorder.first_started.wait(5)
    rest, results, _ = call_in_threads(group, [1, 2, 3])
    wait_waiting(group, 3)
    recorder.release_first.set()
    for t in [*first, *rest]:
        t.join(5)
    assert seen == [("test", 1), ("test", 3)]

    def broken(name, size):
        raise RuntimeError("observer down")

    group.on_batch = broken
    assert group(4) == 40


def test_a_lone_caller_writes_its_call_itself_when_it_may():
    threads = []
    group = GroupCommit(lambda ps: threads.append(threading.current_thread()) or list(ps), name="test",
                        caller_writes_alone=True)
    assert group(3) == 3
    assert threads == [threading.current_thread()] and group._writer is None


class Interrupted(BaseException):
    """Stands for Dramatiq's TimeLimitExceeded, raised in a worker thread."""


def test_a_caller_interrupted_while_writing_alone_gets_the_interrupt_and_the_others_are_still_written():
    started, release = threading.Event(), threading.Event()
    batches = []

    def write(params):
        batches.append(list(params))
        if params == [0]:
            started.set()
            assert release.wait(5)
            raise Interrupted
        return list(params)

    group = GroupCommit(write, name="test", caller_writes_alone=True)
    outcome = {}

    def interrupted_caller():
        try:
            group(0)
        except Interrupted:
            outcome["interrupted"] = True

    caller = threading.Thread(target=interrupted_caller)
    caller.start()
    assert started.wait(5)
    rest, results, errors = call_in_threads(group, [1, 2])
    wait_waiting(group, 2)
    release.set()
    for t in [caller, *rest]:
        t.join(5)
    assert outcome == {"interrupted": True}
    assert results == {1: 1, 2: 2} and not errors and sorted(batches[1]) == [1, 2]
    assert group(3) == 3  # nothing is left marked as being written
