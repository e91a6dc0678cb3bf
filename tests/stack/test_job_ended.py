"""functions/job_ended: a job's execution ended, whatever way; invoked with Step Functions' status
change events (events/job_ended/) as `sam local invoke` would."""

from __future__ import annotations

import pytest
from styleservice.jobs import Jobs
from styleservice.limits import Admissions

from .local_aws import LocalAws, event, queued_results

FUNCTION = "JobEndedFunction"
JOB_ID = event("job_ended/aborted.json")["detail"]["name"]


@pytest.fixture
def admitted(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    """A job admitted and running, as TRANSFER_STYLE and RecordJob leave it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    Admissions(aws.refs["RateLimitsTable"]).admit(JOB_ID, 5)
    Jobs(aws.refs["JobsTable"]).create({"jobId": JOB_ID, "connectionId": "requester=", "isPrivate": True})
    Jobs(aws.refs["JobsTable"]).set_progress(JOB_ID, 0.5)  # RUNNING
    return aws


def in_flight(aws: LocalAws) -> int:
    return Admissions(aws.refs["RateLimitsTable"]).in_flight()


def test_an_execution_that_succeeded_gives_back_its_place_and_leaves_the_job_as_it_recorded_it(admitted: LocalAws):
    assert in_flight(admitted) == 1
    assert admitted.invoke(FUNCTION, "job_ended/succeeded.json") == {"released": True, "failed": False}
    assert in_flight(admitted) == 0
    assert Jobs(admitted.refs["JobsTable"]).get(JOB_ID)["status"] == "RUNNING"  # its own states record its end
    assert queued_results(admitted) == []


def test_a_stopped_execution_gives_back_its_place_and_ends_the_job_telling_its_requester(admitted: LocalAws):
    assert admitted.invoke(FUNCTION, "job_ended/aborted.json") == {"released": True, "failed": True}
    job = Jobs(admitted.refs["JobsTable"]).get(JOB_ID)
    assert (job["status"], job["error"]) == (
        "FAILED",
        "the style transfer was stopped before it finished; please try again",
    )
    assert queued_results(admitted) == [{"requestId": JOB_ID, "type": "failed", "error": job["error"]}]

    again = admitted.invoke(FUNCTION, "job_ended/aborted.json")  # EventBridge delivers at least once

    assert again == {"released": False, "failed": False}
    assert in_flight(admitted) == 0  # never counted out twice
    assert queued_results(admitted) == []


def test_an_execution_that_is_not_a_jobs_changes_nothing(admitted: LocalAws):
    stray = event("job_ended/aborted.json")
    stray["detail"]["name"] = "not-a-job"
    assert admitted.invoke(FUNCTION, stray) == {"released": False, "failed": False}
    assert in_flight(admitted) == 1
