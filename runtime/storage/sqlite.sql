-- The SQL of the SQLite backend, one `-- name:` section per statement.
-- Placeholders are positional (`?`): the hot path binds plain tuples.

-- name: migration_1
-- AUTOINCREMENT: a job id is a user's handle (`jobrt job ID`), so an id
-- freed by forget/clear must never be handed to another job.
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT    NOT NULL CHECK (typeof(queue) = 'text'),
    name          TEXT    NOT NULL CHECK (typeof(name) = 'text'),
    payload       BLOB    NOT NULL CHECK (typeof(payload) = 'blob'),
    state         TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    priority      INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    options       BLOB,
    available_at  REAL    NOT NULL,
    owner         TEXT,
    lease_expires REAL,
    created_at    REAL    NOT NULL,
    started_at    REAL,
    finished_at   REAL,
    error         TEXT,
    traceback     TEXT,
    result        BLOB,
    unique_key    TEXT,
    batch_id      TEXT
);
-- The claim walks this index in claim order and stops after LIMIT rows, so a
-- huge backlog costs nothing; partial, so finished jobs never enter it.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, available_at, id) WHERE state = 'pending';
-- next_due: min(available_at) per queue without walking the delayed backlog.
CREATE INDEX jobs_due ON jobs (queue, available_at) WHERE state = 'pending';
-- Lease renewal and rescue touch running jobs only.
CREATE INDEX jobs_owner ON jobs (owner) WHERE state = 'running';
CREATE INDEX jobs_lease ON jobs (lease_expires) WHERE state = 'running';
CREATE UNIQUE INDEX jobs_unique ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'running');
CREATE INDEX jobs_failed ON jobs (finished_at, id) WHERE state = 'failed';
CREATE INDEX jobs_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL;
CREATE TABLE supervisors (
    owner        TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    info         BLOB NOT NULL
) WITHOUT ROWID;
-- 'jobr' in ASCII: marks the file as ours, so a foreign SQLite file is refused.
PRAGMA application_id = 1785684594;

-- name: migration_2
-- prune: ended jobs, oldest first, without walking pending and running ones.
CREATE INDEX jobs_ended ON jobs (finished_at, id)
    WHERE state IN ('succeeded', 'failed', 'cancelled');

-- name: migration_3
-- jobrt health/status: pending jobs per (queue, name), counted from this index
-- alone (it covers the query, in its GROUP BY order), never from the table.
CREATE INDEX jobs_pending_name ON jobs (queue, name) WHERE state = 'pending';

-- name: identify
SELECT (SELECT user_version FROM pragma_user_version),
       (SELECT application_id FROM pragma_application_id),
       (SELECT count(*) FROM sqlite_master);

-- name: insert_job
INSERT INTO jobs (queue, name, payload, priority, options, available_at, created_at,
                  unique_key, batch_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: max_id
SELECT coalesce(max(id), 0) FROM jobs;

-- name: ids_after
SELECT id FROM jobs WHERE id > ? ORDER BY id;

-- name: find_unique
SELECT id FROM jobs
WHERE unique_key = ? AND unique_key IS NOT NULL AND state IN ('pending', 'running');

-- name: settle_succeeded
UPDATE jobs
SET state = 'succeeded', result = ?, finished_at = ?, owner = NULL, lease_expires = NULL,
    error = NULL, traceback = NULL
WHERE id = ? AND attempts = ? AND owner = ? AND state = 'running';

-- name: settle_failed
UPDATE jobs
SET state = 'failed', error = ?, traceback = ?, finished_at = ?, owner = NULL,
    lease_expires = NULL
WHERE id = ? AND attempts = ? AND owner = ? AND state = 'running';

-- name: settle_pending
UPDATE jobs
SET state = 'pending', available_at = ?, error = ?, traceback = ?, owner = NULL,
    lease_expires = NULL, attempts = attempts - ?
WHERE id = ? AND attempts = ? AND owner = ? AND state = 'running';

-- name: claim
-- INDEXED BY: left to itself the planner may pick jobs_due and sort every
-- due job of the queue. RETURNING gives rows in no promised order; they
-- carry the sort key.
UPDATE jobs
SET state = 'running', owner = ?, lease_expires = ?, attempts = attempts + 1, started_at = ?
WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_claim
             WHERE state = 'pending' AND queue = ? AND available_at <= ?
             ORDER BY priority DESC, available_at, id
             LIMIT ?)
RETURNING id, queue, name, payload, attempts, options, priority, available_at;

-- name: next_due
SELECT min(available_at) FROM jobs WHERE state = 'pending' AND queue = ?;

-- name: oldest_pending
SELECT min(available_at) FROM jobs WHERE state = 'pending' AND available_at <= ?;

-- name: pending_by_queue_and_name
-- INDEXED BY: a covering walk of the pending entries in group order; the state
-- test must stay word for word the index's own.
SELECT queue, name, count(*) FROM jobs INDEXED BY jobs_pending_name
WHERE state = 'pending'
GROUP BY queue, name
ORDER BY queue, name;

-- name: upsert_supervisor
INSERT INTO supervisors (owner, host, pid, started_at, heartbeat_at, info)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (owner) DO UPDATE
SET host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at, info = excluded.info;

-- name: renew_leases
UPDATE jobs SET lease_expires = ? WHERE owner = ? AND state = 'running';

-- name: renew_held_leases
UPDATE jobs SET lease_expires = ?
WHERE owner = ? AND state = 'running' AND id IN (SELECT value FROM json_each(?));

-- name: supervisors
SELECT owner, host, pid, started_at, heartbeat_at, info FROM supervisors
ORDER BY started_at, owner;

-- name: remove_supervisor
DELETE FROM supervisors WHERE owner = ?;

-- name: rescue_owner
UPDATE jobs
SET state = 'pending', owner = NULL, lease_expires = NULL, traceback = NULL,
    error = 'its supervisor ' || owner || ' died; returned to the queue'
WHERE owner = ? AND state = 'running';

-- name: rescue_expired
UPDATE jobs
SET state = 'pending', owner = NULL, lease_expires = NULL, traceback = NULL,
    error = 'lease expired: its supervisor ' || owner
            || ' stopped renewing it; returned to the queue'
WHERE lease_expires < ? AND state = 'running';

-- name: get
SELECT * FROM jobs WHERE id = ?;

-- name: counts
SELECT queue,
       CASE WHEN state = 'pending' AND available_at > ? THEN 'delayed' ELSE state END AS bucket,
       count(*)
FROM jobs GROUP BY queue, bucket;

-- name: failed
SELECT * FROM jobs WHERE state = 'failed' ORDER BY finished_at DESC, id DESC LIMIT ?;

-- name: failed_ids
SELECT id FROM jobs INDEXED BY jobs_failed WHERE state = 'failed';

-- name: retry_failed
-- OR IGNORE: a failed job whose unique key is held by a live job stays failed.
UPDATE OR IGNORE jobs
SET state = 'pending', attempts = 0, available_at = ?, owner = NULL, lease_expires = NULL,
    finished_at = NULL
WHERE id = ? AND state = 'failed';

-- name: forget
DELETE FROM jobs WHERE id = ? AND state = 'failed';

-- name: flush_failed
DELETE FROM jobs WHERE state = 'failed';

-- name: cancel
UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ? AND state = 'pending';

-- name: clear
DELETE FROM jobs WHERE queue = ? AND state = 'pending';

-- name: prune
-- INDEXED BY: the state test must stay word for word the index's own, or
-- SQLite could not use the partial index (and this would fail, not crawl).
DELETE FROM jobs
WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_ended
             WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at < ?
             ORDER BY finished_at, id
             LIMIT ?);
