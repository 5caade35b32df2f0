"""The soak's job mix: every hostile case runs within the default 50 jobs, between good jobs that can show what it
costs them."""

from bench.soak_bench import schedule


def test_the_default_soak_runs_every_bad_case_between_good_jobs():
    jobs = schedule(50)
    bad = [job[1] for job in jobs if job[0] == "bad"]
    assert {"huge portrait", "hour of speech", "bool weight", "wide speech encoder", "nan cfg", "nan audio",
            "broken checkpoint", "absurd config", "384 kHz audio", "empty audio"} == set(bad)
    assert len(jobs) == 50 and sum(job[0] == "good" for job in jobs) == 16
    for i, job in enumerate(jobs[:-1]):
        if job[0] == "bad":
            assert any(later[0] == "good" for later in jobs[i + 1:i + 4])
