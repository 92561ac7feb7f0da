"""The queue's tables (SQLAlchemy 2 declarative models).

The schema is created and changed only by Alembic migrations
(``graderqueue/migrations``); these models describe it for queries.

Column names follow the original graderqueue where a client can see them
(``getjob`` returns a job under the original's names).
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Job and result JSON can be large: LONGTEXT on MariaDB/MySQL.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
# File chunks: up to 1 MiB each (graderqueue/files/blobs.py), past BLOB's 64 KiB.
LongBlob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
# Microseconds matter for ordering and wait-time statistics.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# SQLite only auto-increments INTEGER PRIMARY KEY; elsewhere ids are 64-bit.
Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Naive UTC now: every timestamp in the database is naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


class JobStatus(enum.StrEnum):
    """A job's status as stored; the original's four, then the JSON API's two.

    ``held`` waits for a ``release`` and is never handed out; ``cancelled`` is
    over, and the PHP-compatible ``getjob`` answers "Invalid jobid." for it,
    as the original did for a job its admin deleted.
    """

    QUEUED = "queued"
    SENT = "sent"
    ERROR = "error"
    DONE = "done"
    HELD = "held"
    CANCELLED = "cancelled"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    GIVEN_UP = "given_up"


class Base(DeclarativeBase):
    pass


class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)


class ServerType(Base):
    __tablename__ = "server_types"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    # `graderqueue pause --type T`: its jobs are still accepted, none handed out.
    paused: Mapped[bool] = mapped_column(Boolean, default=False)


class TypeTag(Base):
    """Tags a server type handles."""

    __tablename__ = "type_tags"
    type_id: Mapped[int] = mapped_column(ForeignKey("server_types.id"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id"), primary_key=True, index=True)


class Platform(Base):
    __tablename__ = "platforms"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # Also the JWS ``kid`` of the platform's tokens.
    name: Mapped[str] = mapped_column(String(255), unique=True)
    return_url: Mapped[str] = mapped_column(String(1000), default="")
    # Comma-separated paths; sent to grading servers as a JSON list.
    restrict_paths: Mapped[str] = mapped_column(Text, default="")
    force_tag_id: Mapped[int | None] = mapped_column(ForeignKey("tags.id"), nullable=True)
    # Demand fresh tokens (exp/iat/jti or date) from this platform.
    require_fresh: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # `platform disable`: its requests are refused, its jobs stay.
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Fair share: within one priority, jobs are handed out in proportion to it.
    weight: Mapped[int] = mapped_column(Integer, default=1)
    # At most this many queued jobs (None: no cap); more is refused at submission.
    max_queued: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # `platform update --lenient-integers`: /api.php reads its integer fields
    # as PHP's intval() did ("5.7" -> 5), for platforms moved from the PHP queue.
    lenient_integers: Mapped[bool] = mapped_column(Boolean, default=False)
    # Hosts a job's or a run's callback_url may name, by commas; empty: only
    # the return URL's host (delivery/callbacks.py).
    callback_hosts: Mapped[str] = mapped_column(Text, default="")


class PlatformKey(Base):
    """A platform's public key; several may be active during a key rotation."""

    __tablename__ = "platform_keys"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"), index=True)
    public_key: Mapped[str] = mapped_column(Text)
    # SHA-256 of the key's DER form: shown to operators and used to remove a key.
    fingerprint: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class ServerToken(Base):
    """A shared secret with which grading servers register themselves."""

    __tablename__ = "server_tokens"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    # SHA-256 hex of the token: the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    type_id: Mapped[int] = mapped_column(ForeignKey("server_types.id"))
    max_concurrent_jobs: Mapped[int] = mapped_column(Integer, default=1)
    wakeup_secret: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Server(Base):
    __tablename__ = "servers"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    type_id: Mapped[int] = mapped_column(ForeignKey("server_types.id"), index=True)
    # Normalized client-certificate identity (see auth.normalize_*).
    ssl_serial: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ssl_dn: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    ssl_key: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    wakeup_url: Mapped[str] = mapped_column(String(1000), default="")
    wakeup_secret: Mapped[str] = mapped_column(String(255), default="")
    max_concurrent_jobs: Mapped[int] = mapped_column(Integer, default=1)
    last_poll_time: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    wakeup_fails: Mapped[int] = mapped_column(Integer, default=0)
    last_wakeup_time: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    # Set for servers registered by a server token.
    token_id: Mapped[int | None] = mapped_column(ForeignKey("server_tokens.id"), nullable=True)
    ip: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # `server drain`: no new job; the jobs it holds finish.
    drained: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_servers_token_ip", "token_id", "ip", unique=True),)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    platform_id: Mapped[int | None] = mapped_column(ForeignKey("platforms.id"), nullable=True)
    # Who sent it when not a platform: "interface", "remote:<user>", "debug".
    received_via: Mapped[str] = mapped_column(String(255), default="")
    name: Mapped[str] = mapped_column(String(255))
    jobusertaskid: Mapped[str] = mapped_column(String(255))
    # jobusertaskid while the job is not done, NULL once done: a unique index
    # on (platform_id, dedup_key) makes the id unique among live jobs only.
    dedup_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    job_repeats: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    timeout_sec: Mapped[int] = mapped_column(Integer, default=300)
    nb_fails: Mapped[int] = mapped_column(Integer, default=0)
    received_time: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    sent_to: Mapped[int | None] = mapped_column(ForeignKey("servers.id"), nullable=True)
    grading_start_time: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    lease_expires: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    grading_end_time: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    tags: Mapped[str] = mapped_column(Text, default="")
    taskrevision: Mapped[str] = mapped_column(String(255), default="")
    jobdata: Mapped[str] = mapped_column(LongText)
    # A run's job (queue/runs.py): its run, its role in it ("pre", "roster",
    # "post"), and whether its end was counted (once, whatever requeues it).
    run_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    run_role: Mapped[str | None] = mapped_column(String(8), nullable=True)
    run_ended: Mapped[bool] = mapped_column(Boolean, default=False)
    # A URL the job's result is posted to besides the return URL (callbacks.py).
    callback_url: Mapped[str] = mapped_column(String(1000), default="")

    __table_args__ = (
        Index("ix_jobs_dedup", "platform_id", "dedup_key", unique=True),
        # Finds sent jobs whose lease ran out without scanning the queue.
        Index("ix_jobs_status_lease", "status", "lease_expires"),
        # Counts the jobs a server holds; finds them for nbtasks=0.
        Index("ix_jobs_sent_to_status", "sent_to", "status"),
        Index("ix_jobs_status_received", "status", "received_time"),
        Index("ix_jobs_end_time", "grading_end_time"),
        Index("ix_jobs_platform_id", "platform_id", "id"),
        # The JSON API's job lists by state, newest first (keyset on the id).
        Index("ix_jobs_status_id", "status", "id"),
        Index("ix_jobs_platform_status_id", "platform_id", "status", "id"),
        # ... and by name or jobusertaskid; the ETA's "finished lately".
        Index("ix_jobs_name", "name"),
        Index("ix_jobs_platform_name", "platform_id", "name"),
        Index("ix_jobs_usertask", "jobusertaskid"),
        Index("ix_jobs_status_end", "status", "grading_end_time"),
        # A run's jobs by role and state (its status, its stage changes).
        Index("ix_jobs_run", "run_id", "run_role", "status"),
    )


class JobType(Base):
    """The server types a job may run on.

    ``status`` and ``priority`` are copies of the job's, kept in step by
    ``jobs.py`` alone, so that one index serves the claim directly:
    (type_id, status, priority DESC, job_id) in the claim's ORDER BY.
    """

    __tablename__ = "job_types"
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    type_id: Mapped[int] = mapped_column(ForeignKey("server_types.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # Fair share's place in line within one priority (queue/fair_share.py),
    # set when the job is queued: the claim reads the index in this order.
    vstart: Mapped[int] = mapped_column(BigInteger, default=0)


Index(
    "ix_job_types_claim",
    JobType.type_id,
    JobType.status,
    JobType.priority.desc(),
    JobType.vstart,
    JobType.job_id,
)


class FairShare(Base):
    """Each sender's last place in line (``vstart`` of its last job, plus its step).

    ``sender`` is the platform's id, or 0 for jobs without a platform.
    """

    __tablename__ = "fair_share"
    sender: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    last_finish: Mapped[int] = mapped_column(BigInteger, default=0)


class QueueFlag(Base):
    """Queue-wide switches every node reads: ``paused`` (`graderqueue pause`)."""

    __tablename__ = "queue_flags"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


def _verdict_of_success(context: Any) -> str:
    return "passed" if context.get_current_parameters().get("is_success") else "failed"


class Result(Base):
    """The result of a done job, with the original's statistics columns."""

    __tablename__ = "results"
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    resultdata: Mapped[str] = mapped_column(LongText)
    cpu_time_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    real_time_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    max_real_time_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    is_success: Mapped[bool] = mapped_column(Boolean, default=False)
    task_path: Mapped[str] = mapped_column(String(1000), default="")
    task_name: Mapped[str] = mapped_column(String(255), default="")
    language: Mapped[str] = mapped_column(String(64), default="")
    # passed, failed or grader_error (queue/verdicts.py), kept so that lists
    # filter on it without reading the result JSON. complete() always sets
    # it; a row written without it (a tool, a test) follows is_success.
    verdict: Mapped[str] = mapped_column(String(16), default=_verdict_of_success)

    __table_args__ = (
        Index("ix_results_task_name", "task_name"),
        Index("ix_results_language", "language"),
        Index("ix_results_verdict", "verdict", "job_id"),
    )


class Handout(Base):
    """Each time a job was handed to a grading server (the job's timeline)."""

    __tablename__ = "job_handouts"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    server_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    time: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Artifact(Base):
    """What a grading server sent back beside the result: ``stdout``, ``stderr``."""

    __tablename__ = "job_artifacts"
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    content: Mapped[str] = mapped_column(LongText)
    # Bytes the server captured, before the queue's own cap.
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)


class IdempotencyKey(Base):
    """An ``Idempotency-Key`` of ``POST /api/v1/jobs``, remembered with its answer.

    ``caller`` is ``platform:<id>`` or ``operator:<token name>``: one caller's
    keys never meet another's. ``request_hash`` tells a retry (same body)
    from a reuse of the key for another request (refused).
    """

    __tablename__ = "idempotency_keys"
    caller: Mapped[str] = mapped_column(String(300), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    answer: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)


class Event(Base):
    """The event log: timeouts, bad results, wake-up failures, admin actions."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    time: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    server_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        Index("ix_events_time", "time"),
        Index("ix_events_kind_time", "kind", "time"),
        Index("ix_events_job", "job_id"),
        Index("ix_events_server", "server_id", "time"),
    )


class Delivery(Base):
    """Outbox row: a done job's result owed to its platform's return URL.

    Written in the transaction that completes the job, so a result is never
    done without a delivery being owed.
    """

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"))
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    # A worker's claim on the row while it posts, so two nodes never post the same.
    locked_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)

    __table_args__ = (
        Index("ix_deliveries_due", "state", "next_attempt_at"),
        Index("ix_deliveries_platform", "platform_id", "created_at"),
    )


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    time: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


def new_session_stamp() -> str:
    """A fresh value for ``AdminUser.session_stamp``."""
    return secrets.token_urlsafe(24)


class AdminUser(Base):
    __tablename__ = "admin_users"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_login: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    # Every session cookie of this account carries the stamp it was made
    # with; a new stamp (logout, new password) ends them all on every node.
    # Random, not a counter: an account removed and made again under the
    # same name (SQLite may even give it the same id) must not revive them.
    session_stamp: Mapped[str] = mapped_column(String(64), default=new_session_stamp)

    def end_sessions(self) -> None:
        """Refuse every session cookie made so far for this account, on every node."""
        self.session_stamp = new_session_stamp()


class LoginThrottle(Base):
    """Recent admin log-in attempts per account and per address (``login_throttle.py``).

    ``subject`` is ``account:<user name, case-folded>`` or ``address:<IP>``;
    the count runs from ``window_start`` and the row is deleted once the
    window is over.
    """

    __tablename__ = "login_throttle"
    subject: Mapped[str] = mapped_column(String(300), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(Timestamp, index=True)
    attempts: Mapped[int] = mapped_column(Integer)


class ApiToken(Base):
    """An operator's bearer token for the JSON API (``graderqueue api-token``).

    Only the token's SHA-256 is kept: the token itself is shown once, when made.
    ``scope`` is ``read`` (look) or ``write`` (look and act).
    """

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    scope: Mapped[str] = mapped_column(String(8))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class RemoteUser(Base):
    """Users of the ``rRequest`` way in (remote testing tools)."""

    __tablename__ = "remote_users"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class SeenTokenId(Base):
    """``jti`` values already used, to refuse replayed fresh tokens."""

    __tablename__ = "seen_token_ids"
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)


class Listener(Base):
    """A web worker process waiting for "new job" hints on a UDP port.

    Any process that queues a job sends a datagram to every live listener,
    so long-polls in other processes and on other nodes wake at once.
    """

    __tablename__ = "listeners"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    pid: Mapped[int] = mapped_column(Integer)
    heartbeat: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)


class Lock(Base):
    """Named leases for work that one node at a time should do (cron)."""

    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(Timestamp)


class AlertSent(Base):
    """When each kind of admin alert was last e-mailed, to avoid repeats."""

    __tablename__ = "alerts_sent"
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_sent_at: Mapped[datetime] = mapped_column(Timestamp)
    fingerprint: Mapped[str] = mapped_column(String(255), default="")


class AutoscaleState(Base):
    """What `graderqueue autoscale` last decided per server type: the memory the
    scale-down delay needs, shared by every node that runs it (docs/AUTOSCALING.md).

    ``type_id`` has no foreign key, so removing a type needs no care here:
    autoscale drops the rows of types that are gone. ``wanted`` is None until
    the first decision; ``changed_at`` is when ``wanted`` last changed.
    """

    __tablename__ = "autoscale_state"
    type_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    wanted: Mapped[int | None] = mapped_column(Integer, nullable=True)
    changed_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


# -- Files (labs): docs/API.md "Files (labs)", graderqueue/files/ ---------------


class FileBlob(Base):
    """One file's bytes, stored once per platform however many labs and jobs hold them.

    Content-addressed by SHA-256 within a platform: uploading the same bytes
    to another lab, or again, finds this row. The bytes are in
    :class:`FileChunk` rows, written in the blob's own transaction, so no one
    ever reads half a file.
    """

    __tablename__ = "file_blobs"
    __table_args__ = (UniqueConstraint("platform_id", "sha256", name="uq_file_blobs_platform_sha"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    md5: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)


class FileChunk(Base):
    """A piece of a blob's bytes, ``seq`` from 0: rows below MariaDB's packet limit."""

    __tablename__ = "file_chunks"
    blob_id: Mapped[int] = mapped_column(
        ForeignKey("file_blobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LongBlob)


class LabFile(Base):
    """A named file in one of a platform's labs: the name points at a blob."""

    __tablename__ = "lab_files"
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"), primary_key=True)
    lab: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    blob_id: Mapped[int] = mapped_column(ForeignKey("file_blobs.id"), index=True)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class JobFile(Base):
    """A file a job takes to its grading server, bound to its content at submission."""

    __tablename__ = "job_files"
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    dest: Mapped[str] = mapped_column(String(255), primary_key=True)
    blob_id: Mapped[int] = mapped_column(ForeignKey("file_blobs.id"), index=True)


class JobOutput(Base):
    """A job's ``output_file``: the file its grading server sends back as ``output``."""

    __tablename__ = "job_outputs"
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    output_file: Mapped[str] = mapped_column(String(255))
    # None: only the queue's artifact_max_bytes caps it.
    max_kb: Mapped[int | None] = mapped_column(Integer, nullable=True)


class RunState(enum.StrEnum):
    """A run's stages, in order, then how it ended (queue/runs.py)."""

    READY = "READY"
    PRE = "PRE_PROCESSING_STAGE"
    STUDENTS = "STUDENTS_STAGE"
    POST = "POST_PROCESSING_STAGE"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Run(Base):
    """Many jobs that belong together: a pre job, one job per roster entry, a post job.

    Stage changes are conditional UPDATEs of ``state`` in the transaction
    that ends a job (queue/runs_progress.py), so they happen once whatever
    the number of app nodes. ``spec`` holds what the stages still need
    (env, roster, the job specs) as JSON; ``roster_created`` is how many
    roster jobs exist (made in batches), ``roster_ended`` how many ended.
    """

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    platform_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    received_via: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(32), default=RunState.READY)
    spec: Mapped[str] = mapped_column(LongText)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    roster_total: Mapped[int] = mapped_column(Integer, default=0)
    roster_created: Mapped[int] = mapped_column(Integer, default=0)
    roster_ended: Mapped[int] = mapped_column(Integer, default=0)
    pre_job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    post_job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    callback_url: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)

    __table_args__ = (Index("ix_runs_state", "state"),)


class Callback(Base):
    """Outbox row for a callback URL: a job's result (``job_id``) or a run's end
    (``run_id``, its final status in ``body``). Written in the transaction that
    ends the job or the run; posted like a return-URL delivery (same token,
    retries and backoff) by delivery/callbacks.py.
    """

    __tablename__ = "callbacks"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    platform_id: Mapped[int] = mapped_column(BigInteger)
    url: Mapped[str] = mapped_column(String(1000))
    job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    run_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    body: Mapped[str] = mapped_column(LongText)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)

    __table_args__ = (Index("ix_callbacks_due", "state", "next_attempt_at"),)


class RunFile(Base):
    """A blob a run's specs bound at its submission: kept from the clean-up
    (files/cleanup.py) until the run is purged, as its jobs are made later."""

    __tablename__ = "run_files"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    blob_id: Mapped[int] = mapped_column(ForeignKey("file_blobs.id"), primary_key=True, index=True)
