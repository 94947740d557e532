"""The journal's SQL, written once for SQLite (3.35+) and PostgreSQL.

No I/O. Statements use ``?`` placeholders (a backend may rewrite them) and the
column types in ``SCHEMA`` are names each backend fills in. Every statement is
built from the fixed column lists here, never from input: values are always
parameters.
"""

from __future__ import annotations

from collections.abc import Iterable


def where(conditions: Iterable[tuple[str, object]]) -> tuple[str, list[object]]:
    """``"WHERE a = ? AND b = ? "`` (or ``""``) and its parameters, for the set values.

    Args:
        conditions: ``(condition, value)`` pairs, the conditions from fixed lists
            in this package; a pair whose value is ``None`` is left out.

    Returns:
        The clause, with a trailing space, and the values as its parameters.
    """
    chosen = [(condition, value) for condition, value in conditions if value is not None]
    if not chosen:
        return "", []
    return f"WHERE {' AND '.join(c for c, _ in chosen)} ", [value for _, value in chosen]


#: The tables and indexes, with column types named for each backend to fill in.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS census_deliveries (
        id {id},
        key TEXT NOT NULL UNIQUE,
        event TEXT NOT NULL,
        workspace_id {bigint},
        sync_id {bigint},
        sync_run_id {bigint},
        alert_instance_id {bigint},
        body {bytes} NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        tries INTEGER NOT NULL,
        received_at {time} NOT NULL,
        updated_at {time} NOT NULL,
        lease_token TEXT,
        lease_until {time},
        next_attempt_at {time},
        answer_status INTEGER,
        answer_reason TEXT,
        error_type TEXT,
        error_message TEXT,
        error_traceback TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS census_deliveries_sync ON census_deliveries (sync_id, id)",
    "CREATE INDEX IF NOT EXISTS census_deliveries_run ON census_deliveries (sync_run_id)",
    "CREATE INDEX IF NOT EXISTS census_deliveries_event ON census_deliveries (event, id)",
    "CREATE INDEX IF NOT EXISTS census_deliveries_status ON census_deliveries (status, id)",
    """CREATE TABLE IF NOT EXISTS census_attempts (
        id {id},
        delivery_id {bigint} NOT NULL,
        at {time} NOT NULL,
        kind TEXT NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS census_attempts_delivery ON census_attempts (delivery_id)",
    """CREATE TABLE IF NOT EXISTS census_rejections (
        id {id},
        at {time} NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT NOT NULL,
        remote TEXT,
        size INTEGER NOT NULL
    )""",
    # One row per sync run: when each lifecycle event was first received, and the
    # status and finish time that follow from them (kept for filtering).
    """CREATE TABLE IF NOT EXISTS census_runs (
        sync_run_id {bigint} PRIMARY KEY,
        sync_id {bigint} NOT NULL,
        workspace_id {bigint} NOT NULL,
        first_seen_at {time} NOT NULL,
        triggered_at {time},
        started_at {time},
        completed_at {time},
        success_at {time},
        failed_at {time},
        completed_status TEXT,
        status TEXT NOT NULL,
        finished_at {time},
        updated_at {time} NOT NULL,
        finish_handled INTEGER NOT NULL DEFAULT 0,
        finish_token TEXT,
        finish_until {time},
        overdue_notified {time}
    )""",
    "CREATE INDEX IF NOT EXISTS census_runs_sync ON census_runs (sync_id, first_seen_at)",
    "CREATE INDEX IF NOT EXISTS census_runs_status ON census_runs (status, first_seen_at)",
    "CREATE INDEX IF NOT EXISTS census_runs_seen ON census_runs (first_seen_at)",
    """CREATE TABLE IF NOT EXISTS census_run_alerts (
        id {id},
        sync_run_id {bigint} NOT NULL,
        alert_instance_id {bigint},
        alert_type TEXT,
        kind TEXT NOT NULL,
        at {time} NOT NULL,
        message TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS census_run_alerts_run ON census_run_alerts (sync_run_id)",
)


DELIVERY_COLUMNS = (
    "id, key, event, workspace_id, sync_id, sync_run_id, alert_instance_id, body, status, "
    "attempts, tries, received_at, updated_at, answer_status, answer_reason, error_type, "
    "error_message, error_traceback, next_attempt_at"
)


IDENTITY_COLUMNS = (
    "key, event, workspace_id, sync_id, sync_run_id, alert_instance_id, body, status, "
    "attempts, tries, received_at, updated_at"
)
INSERT_RUNNING = (
    f"INSERT INTO census_deliveries ({IDENTITY_COLUMNS}, lease_token, lease_until) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING RETURNING id"
)
INSERT_PENDING = (
    f"INSERT INTO census_deliveries ({IDENTITY_COLUMNS}, next_attempt_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING RETURNING id"
)
INSERT_REFUSED = (
    f"INSERT INTO census_deliveries ({IDENTITY_COLUMNS}, answer_status, answer_reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING RETURNING id"
)
# A Census retry: count it, and take the delivery over when it is claimable.
CLAIMABLE = "(status IN ('failed', 'refused') OR (status = 'running' AND lease_until <= ?))"
RECLAIM = (
    "UPDATE census_deliveries SET attempts = attempts + 1, updated_at = ?, "
    f"status = CASE WHEN {CLAIMABLE} THEN 'running' ELSE status END, "
    f"tries = CASE WHEN {CLAIMABLE} THEN tries + 1 ELSE tries END, "
    f"lease_token = CASE WHEN {CLAIMABLE} THEN ? ELSE lease_token END, "
    f"lease_until = CASE WHEN {CLAIMABLE} THEN ? ELSE lease_until END "
    # SET sees the row as it was: the four tests agree, and RETURNING shows the result.
    "WHERE key = ? RETURNING id, status, lease_token"
)
COUNT_ATTEMPT = (
    "UPDATE census_deliveries SET attempts = attempts + 1, updated_at = ? "
    "WHERE key = ? RETURNING id"
)
TRIES = "SELECT tries FROM census_deliveries WHERE id = ?"
SETTLE = (
    "UPDATE census_deliveries SET status = ?, updated_at = ?, answer_status = ?, "
    "answer_reason = ?, error_type = ?, error_message = ?, error_traceback = ?, "
    "next_attempt_at = ?, lease_token = NULL, lease_until = NULL "
    "WHERE id = ? AND lease_token = ?"
)
INSERT_ATTEMPT = (
    "INSERT INTO census_attempts (delivery_id, at, kind, status, reason) VALUES (?, ?, ?, ?, ?)"
)
SELECT_ATTEMPTS = (
    "SELECT at, kind, status, reason FROM census_attempts WHERE delivery_id = ? ORDER BY id"
)
SELECT_ONE = f"SELECT {DELIVERY_COLUMNS} FROM census_deliveries WHERE id = ?"
TAKE_DUE = (
    "UPDATE census_deliveries SET status = 'running', lease_token = ?, lease_until = ?, "
    "tries = tries + 1, updated_at = ? "
    "WHERE id IN (SELECT id FROM census_deliveries WHERE "
    "(status = 'pending' AND next_attempt_at <= ?) OR (status = 'running' AND lease_until <= ?) "
    "ORDER BY id LIMIT ?{lock}) "
    # Checked again on the row itself: a concurrent worker may have taken it meanwhile.
    "AND ((status = 'pending' AND next_attempt_at <= ?) OR "
    "(status = 'running' AND lease_until <= ?)) "
    f"RETURNING {DELIVERY_COLUMNS}"
)
CLAIM_FOR_REPLAY = (
    "UPDATE census_deliveries SET status = 'running', lease_token = ?, lease_until = ?, "
    "tries = tries + 1, updated_at = ? "
    "WHERE id = ? AND (status <> 'running' OR lease_until <= ?) "
    "AND (? = 1 OR status NOT IN ('handled', 'ignored', 'dropped')) "
    f"RETURNING {DELIVERY_COLUMNS}"
)
COUNT_STATUSES = "SELECT status, COUNT(*) FROM census_deliveries GROUP BY status"
INSERT_REJECTION = (
    "INSERT INTO census_rejections (at, status, reason, remote, size) VALUES (?, ?, ?, ?, ?)"
)
SELECT_REJECTIONS = (
    "SELECT at, status, reason, remote, size FROM census_rejections ORDER BY id DESC LIMIT ?"
)
PRUNE_DELIVERIES = (
    "DELETE FROM census_deliveries WHERE updated_at < ? AND status NOT IN ('pending', 'running')"
)
PRUNE_ATTEMPTS = (
    "DELETE FROM census_attempts WHERE delivery_id NOT IN (SELECT id FROM census_deliveries)"
)
PRUNE_REJECTIONS = (
    "DELETE FROM census_rejections WHERE at < ? OR id <= "
    "(SELECT COALESCE(MAX(id), 0) FROM census_rejections) - ?"
)

# -- sync runs ---------------------------------------------------------------------------------

RUN_COLUMNS = (
    "sync_run_id, sync_id, workspace_id, triggered_at, started_at, completed_at, success_at, "
    "failed_at, completed_status, status, finished_at"
)
#: Column of ``census_runs`` holding when each lifecycle event was first received.
RUN_EVENT_COLUMNS = {
    "sync.triggered": "triggered_at",
    "sync.started": "started_at",
    "sync.completed": "completed_at",
    "sync.success": "success_at",
    "sync.failed": "failed_at",
}
# The first receipt of a lifecycle event: the earliest time wins, whatever the order.
NOTE_RUN = (
    "INSERT INTO census_runs (sync_run_id, sync_id, workspace_id, first_seen_at, updated_at, "
    "status, {column}) VALUES (?, ?, ?, ?, ?, 'triggered', ?) "
    "ON CONFLICT (sync_run_id) DO UPDATE SET "
    "{column} = CASE WHEN census_runs.{column} IS NULL OR excluded.{column} < census_runs.{column} "
    "THEN excluded.{column} ELSE census_runs.{column} END, "
    "first_seen_at = CASE WHEN excluded.first_seen_at < census_runs.first_seen_at "
    "THEN excluded.first_seen_at ELSE census_runs.first_seen_at END, "
    "updated_at = excluded.updated_at "
    f"RETURNING {RUN_COLUMNS}"
)
SET_COMPLETED_STATUS = (
    "UPDATE census_runs SET completed_status = ? WHERE sync_run_id = ? AND completed_status IS NULL"
)
SET_RUN_STATUS = "UPDATE census_runs SET status = ?, finished_at = ? WHERE sync_run_id = ?"
INSERT_RUN_ALERT = (
    "INSERT INTO census_run_alerts (sync_run_id, alert_instance_id, alert_type, kind, at, message) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
# A finished run whose on_run_finished hooks have not run: its finish lease, taken.
TAKE_FINISH = (
    "UPDATE census_runs SET finish_token = ?, finish_until = ? "
    "WHERE sync_run_id = ? AND finished_at IS NOT NULL AND finish_handled = 0 "
    "AND (finish_token IS NULL OR finish_until <= ?) "
    f"RETURNING {RUN_COLUMNS}"
)
SETTLE_FINISH = (
    "UPDATE census_runs SET finish_handled = ?, finish_token = NULL, finish_until = NULL "
    "WHERE sync_run_id = ? AND finish_token = ?"
)
SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM census_runs WHERE sync_run_id = ?"
SELECT_RUN_ALERTS = (
    "SELECT sync_run_id, alert_instance_id, alert_type, kind, at, message "
    "FROM census_run_alerts WHERE sync_run_id IN ({ids}) ORDER BY id"
)
SELECT_SYNCS = (
    "SELECT sync_id, MAX(first_seen_at) AS seen FROM census_runs GROUP BY sync_id "
    "ORDER BY seen DESC LIMIT ?"
)
# Overdue: triggered or started, not finished within ``after``; each notified once.
CLAIM_OVERDUE = (
    "UPDATE census_runs SET overdue_notified = ? "
    "WHERE status IN ('triggered', 'started') "
    "AND COALESCE(started_at, triggered_at, first_seen_at) <= ? "
    "AND (overdue_notified IS NULL OR overdue_notified < ?) "
    f"RETURNING {RUN_COLUMNS}"
)
UNCLAIM_OVERDUE = "UPDATE census_runs SET overdue_notified = NULL WHERE sync_run_id = ?"
PRUNE_RUNS = "DELETE FROM census_runs WHERE updated_at < ? AND status IN ('succeeded', 'failed')"
# An alert may come before its run's first lifecycle event: only old ones without a run go.
PRUNE_RUN_ALERTS = (
    "DELETE FROM census_run_alerts WHERE at < ? "
    "AND sync_run_id NOT IN (SELECT sync_run_id FROM census_runs)"
)
RENEW_LEASE = "UPDATE census_deliveries SET lease_until = ? WHERE id = ? AND lease_token = ?"
# A claim whose answer never came, applied after all: freed for the next attempt.
RELEASE_UNANSWERED = (
    "UPDATE census_deliveries SET status = 'failed', lease_token = NULL, lease_until = NULL, "
    "updated_at = ? WHERE key = ? AND lease_token = ? AND status = 'running'"
)
# A sync's latest runs, only what its health needs.
SELECT_HEALTH = (
    "SELECT status, started_at, finished_at FROM census_runs WHERE sync_id = ? "
    "ORDER BY first_seen_at DESC LIMIT ?"
)
