"""Background jobs: progress, publish, cancel, failure."""

from __future__ import annotations

import threading

from fisher_core.workspace import Job, JobRegistry


def test_job_reports_and_returns():
    gate = threading.Event()

    def work(job, n):
        for i in range(n):
            job.report(i + 1, n, f"step {i + 1}")
        job.publish(curve=[1, 2, 3])
        gate.wait(5)
        return n * 2

    job = Job("w", work, 4).start()
    while job.snapshot().done < 4:
        pass
    snap = job.snapshot()
    assert snap.status == "running" and snap.message == "step 4" and snap.fraction == 1.0
    gate.set()
    assert job.wait(5)
    snap = job.snapshot()
    assert (snap.status, job.result, snap.published["curve"]) == ("done", 8, [1, 2, 3])


def test_cancel_and_failure():
    def loop(job):
        while not job.cancelled:
            job.cancel_event.wait(0.01)
        return "stopped"

    job = Job("c", loop).start()
    job.cancel()
    assert job.wait(5) and job.snapshot().status == "cancelled"

    def boom(job):
        raise ValueError("bad parameter K")

    job = Job("f", boom).start()
    job.wait(5)
    snap = job.snapshot()
    assert snap.status == "failed" and snap.error == "ValueError: bad parameter K"


def test_registry_one_live_job_per_name():
    gate = threading.Event()
    reg = JobRegistry()
    a = reg.submit("x", lambda job: gate.wait(5))
    b = reg.submit("x", lambda job: None)
    assert a is b and reg.running() == [a]
    gate.set()
    a.wait(5)
    c = reg.submit("x", lambda job: 1)
    assert c is not a
    c.wait(5)
    reg.forget("x")
    assert reg.get("x") is None


def test_snapshot_eta_is_the_rate_so_far_and_describe_says_it():
    from fisher_core.workspace import JobSnapshot

    def snap(done, elapsed, status="running"):
        return JobSnapshot("j", status, done, 10.0, "epoch 2", elapsed, None)

    assert snap(2.5, 30.0).eta == 90.0  # a quarter in 30 s: three quarters left take 90 s
    assert snap(2.5, 30.0).describe() == "epoch 2 · 30 s · about 1 min 30 s left"
    assert snap(0.1, 30.0).eta is None  # 1 %: too little to extrapolate from
    assert snap(5.0, 1.0).eta is None  # too early
    assert snap(10.0, 3725.0, "done").describe() == "epoch 2 · 1 h 02 min · done"
    assert snap(10.0, 3725.0, "done").eta is None


def test_registry_lists_all_jobs_oldest_first():
    reg = JobRegistry()
    a = reg.submit("a", lambda job: 1)
    b = reg.submit("b", lambda job: 2)
    a.wait(5), b.wait(5)
    assert [j.name for j in reg.all()] == ["a", "b"]
