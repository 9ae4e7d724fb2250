"""The statuses: one enum each for jobs, index runs and super weights."""

from __future__ import annotations

import enum


class SuperWeightStatus(enum.StrEnum):
    """Where a super-weight entry comes from and what validation decided."""

    REPORTED = "reported"  # published elsewhere, with its citation
    CANDIDATE = "candidate"  # detected, not validated
    CONFIRMED = "confirmed"  # validated: pruning it (alone) hurts
    SET_CONFIRMED = "set-confirmed"  # validated: pruning it hurts only together with the others
    REDUNDANT = "redundant"  # validated: another super weight does its work
    INERT = "inert"  # validated: pruning it does not hurt
    NOT_MEASURED = "not_measured"  # validation ran but could not decide it


#: measured statuses of weights that pruning showed the model does not need (hidden like inert ones)
UNNEEDED_STATUSES = (SuperWeightStatus.INERT, SuperWeightStatus.REDUNDANT)


class RunStatus(enum.StrEnum):
    """Outcome of an index run."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobStatus(enum.StrEnum):
    """Life cycle of a submission."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRY = "retry"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRY)
CLAIMABLE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RETRY)
FINISHED_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
