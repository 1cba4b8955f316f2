"""pgalert's scheduled jobs (rules, escalations, hold releases, flapping, grouping, the heartbeat), run by the
dispatchers where pg_cron does not run them: `--scheduler auto` (pg_cron while it can), `dispatcher` or
`pg_cron`. Every few seconds the scheduler thread asks which is in force (monitoring_scheduler_mode); when it
is the dispatchers, it runs each job's due tick through monitoring_run_scheduled_job, one transaction per
job. The SQL runs a tick once across any number of dispatchers; one killed mid-tick leaves its tick to the
next that looks, so a dead dispatcher hands over within SCHEDULER_POLL_SECONDS."""

from __future__ import annotations

import threading
from collections.abc import Callable

from dispatcher import db, logs
from dispatcher.metrics import Metrics
from dispatcher.worker.connector import Connector, repeat_on_a_session

# how often a dispatcher looks for due ticks: a job runs this soon after its minute, and after a handover
SCHEDULER_POLL_SECONDS = 5.0


def run_due_jobs(queries: db.DispatcherQueries, requested: str, metrics: Metrics) -> int:
    """One look: note the scheduler in force and, when it is the dispatchers, run every due tick. Returns how
    many ticks this dispatcher ran."""
    mode, reason = queries.scheduler_mode(requested)
    if (mode, reason) != (metrics.scheduler_mode, metrics.scheduler_reason):
        # said when it starts or changes, not at every look
        log = logs.info if mode == "pg_cron" or requested == "dispatcher" else logs.warning
        log("scheduled jobs run " + ("under pg_cron" if mode == "pg_cron" else "in the dispatchers"),
            scheduler=requested, **({"pg_cron_cannot": reason} if reason else {}))
        if requested == "dispatcher" and reason is None:
            logs.warning("pg_cron runs pgalert's jobs too, so a tick may run twice: unschedule them from pg_cron "
                         "or run the dispatchers with --scheduler auto")
    metrics.set_scheduler(mode, reason)
    if mode != "dispatcher":
        return 0
    ran = 0
    for job_name, tick, timeout_ms in queries.due_scheduled_jobs():
        if queries.run_scheduled_job(job_name, tick, timeout_ms):
            metrics.scheduled_runs.labels(job_name).inc()
            ran += 1
    return ran


def schedule_forever(connector: Connector, requested: str, metrics: Metrics, stopping: threading.Event,
                     clean: Callable[[str | None], str | None], every: float = SCHEDULER_POLL_SECONDS) -> None:
    # a scheduler that cannot reach the database retries every second or more
    repeat_on_a_session(connector, "scheduler", lambda queries: run_due_jobs(queries, requested, metrics), every,
                        stopping, clean, "scheduler paused", least_delay=1.0)
