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

-- name: migration_4
-- counts(): jobs per queue and state kept in rows changed in the same transaction
-- as every change of a job (insert, delete, update of its state, queue, name or
-- available_at), so status, health and metrics read a few hundred rows whatever
-- the size of the jobs table; by the triggers below until migration 5, since then
-- by the backend (sqlite_counts.Tally). Keys (level, slot, state, queue, name):
--   level -1: jobs that are not pending, per (state, queue, name) (slot 0).
--   levels 0, 1, 2: pending jobs per queue and slot of available_at, with slots of
--   16 s, 4096 s (16 * 256) and 1048576 s (about 12 days); level 2 also per job name
--   (so it holds the pending jobs per queue and name). A pending job counts once in
--   each level. slot = floor(available_at / width), exact: the widths are powers of 2
--   (for times below 2^53 s in size and not subnormal: every real epoch time).
-- The delayed jobs (available_at > now) are then: the rest of now's 16 s slot (read
-- from jobs_due), the later 16 s slots of now's 4096 s slot, the later 4096 s slots of
-- now's 12-day slot, and every later 12-day slot: at most 255 + 255 rows per queue,
-- plus one per queue, name and 12 days of delays.
-- Rows whose n fell to 0 are deleted by heartbeat() (forget_zero_counts).
CREATE TABLE job_counts (
    level INTEGER NOT NULL,
    slot  INTEGER NOT NULL,
    state TEXT    NOT NULL,
    queue TEXT    NOT NULL,
    name  TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (level, slot, state, queue, name)
) WITHOUT ROWID;
-- forget_zero_counts finds the rows to delete here, not by reading them all.
CREATE INDEX job_counts_zero ON job_counts (level) WHERE n = 0;
-- The levels and their slot widths (level -1 has no slots).
CREATE TABLE job_count_levels (level INTEGER PRIMARY KEY, width REAL NOT NULL);
INSERT INTO job_count_levels VALUES (-1, 1.0), (0, 16.0), (1, 4096.0), (2, 1048576.0);
INSERT INTO job_counts (level, slot, state, queue, name, n)
SELECT level, CASE WHEN level < 0 THEN 0
                   ELSE CAST(available_at / width AS INTEGER)
                        - (CAST(available_at / width AS INTEGER) > available_at / width)
              END,
       state, queue, CASE WHEN level IN (-1, 2) THEN name ELSE '' END, count(*)
FROM jobs JOIN job_count_levels ON (level < 0) = (state <> 'pending')
GROUP BY 1, 2, 3, 4, 5;
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
BEGIN
    INSERT INTO job_counts (level, slot, state, queue, name, n)
    SELECT level, CASE WHEN level < 0 THEN 0
                       ELSE CAST(new.available_at / width AS INTEGER)
                            - (CAST(new.available_at / width AS INTEGER) > new.available_at / width)
                  END,
           new.state, new.queue, CASE WHEN level IN (-1, 2) THEN new.name ELSE '' END, 1
    FROM job_count_levels WHERE (level < 0) = (new.state <> 'pending')
    ON CONFLICT DO UPDATE SET n = n + excluded.n;
END;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
BEGIN
    INSERT INTO job_counts (level, slot, state, queue, name, n)
    SELECT level, CASE WHEN level < 0 THEN 0
                       ELSE CAST(old.available_at / width AS INTEGER)
                            - (CAST(old.available_at / width AS INTEGER) > old.available_at / width)
                  END,
           old.state, old.queue, CASE WHEN level IN (-1, 2) THEN old.name ELSE '' END, -1
    FROM job_count_levels WHERE (level < 0) = (old.state <> 'pending')
    ON CONFLICT DO UPDATE SET n = n + excluded.n;
END;
-- Out of the old keys, into the new ones, when the job moved: a lease renewal, an
-- attempt count or an error changes none of these columns and costs nothing here.
CREATE TRIGGER jobs_count_update AFTER UPDATE OF state, queue, name, available_at ON jobs
WHEN old.state IS NOT new.state OR old.queue IS NOT new.queue OR old.name IS NOT new.name
     OR (new.state = 'pending' AND old.available_at IS NOT new.available_at)
BEGIN
    INSERT INTO job_counts (level, slot, state, queue, name, n)
    SELECT level, CASE WHEN level < 0 THEN 0
                       ELSE CAST(old.available_at / width AS INTEGER)
                            - (CAST(old.available_at / width AS INTEGER) > old.available_at / width)
                  END,
           old.state, old.queue, CASE WHEN level IN (-1, 2) THEN old.name ELSE '' END, -1
    FROM job_count_levels WHERE (level < 0) = (old.state <> 'pending')
    ON CONFLICT DO UPDATE SET n = n + excluded.n;
    INSERT INTO job_counts (level, slot, state, queue, name, n)
    SELECT level, CASE WHEN level < 0 THEN 0
                       ELSE CAST(new.available_at / width AS INTEGER)
                            - (CAST(new.available_at / width AS INTEGER) > new.available_at / width)
                  END,
           new.state, new.queue, CASE WHEN level IN (-1, 2) THEN new.name ELSE '' END, 1
    FROM job_count_levels WHERE (level < 0) = (new.state <> 'pending')
    ON CONFLICT DO UPDATE SET n = n + excluded.n;
END;
-- pending_by_queue_and_name() now reads job_counts: the index of migration 3 would
-- only cost every enqueue and claim a write.
DROP INDEX jobs_pending_name;

-- name: migration_5
-- The triggers of migration 4 ran nine counter upserts per job (enqueue, claim,
-- settle), a third of the supervisor's transaction time. The backend now tallies each
-- transaction's moves and applies them before its COMMIT, one upsert per changed key
-- (a batch of 50 jobs of one queue: about five). The counts stay exact for every write
-- jobrt makes; a job row changed by hand in SQL is not counted.
DROP TRIGGER jobs_count_insert;
DROP TRIGGER jobs_count_delete;
DROP TRIGGER jobs_count_update;

-- name: migration_6
-- max_exceptions: how many runs of the job raised, across its attempts.
ALTER TABLE jobs ADD COLUMN exceptions INTEGER NOT NULL DEFAULT 0;

-- name: migration_7
-- q.cancel of a running job: when it was asked, for the supervisor that runs it.
ALTER TABLE jobs ADD COLUMN cancel_requested REAL;

-- name: migration_8
-- unique_for (the key is free from unique_expires on) and unique_until="start".
ALTER TABLE jobs ADD COLUMN unique_expires REAL;
ALTER TABLE jobs ADD COLUMN unique_at_start INTEGER NOT NULL DEFAULT 0;

-- name: migration_9
-- The unique key held while its job lives, in a column of its own: jobs_unique's
-- predicate named the state, so every claim and settle of a unique job rewrote its
-- entry; now only the enqueue and the job's end (or unique_until="start") do.
ALTER TABLE jobs ADD COLUMN unique_held TEXT;
UPDATE jobs SET unique_held = unique_key
WHERE unique_key IS NOT NULL AND state IN ('pending', 'running');
DROP INDEX jobs_unique;
CREATE UNIQUE INDEX jobs_unique_held ON jobs (unique_held) WHERE unique_held IS NOT NULL;

-- name: migration_10
-- Gates (runtime.gates): without_overlapping and rate_limit. `blocked` holds a pending job
-- back: bit 1 while it waits for its overlap key (another job with it runs, or comes
-- first), bit 2 while it waits for its turn at its rate limiter. Each key lets one job
-- through at a time (the unique indexes say so), and the claim indexes hold only jobs
-- nothing holds back, so a claim never walks past the jobs waiting at a gate.
ALTER TABLE jobs ADD COLUMN overlap_key TEXT;
ALTER TABLE jobs ADD COLUMN rate_key TEXT;
ALTER TABLE jobs ADD COLUMN rate_max INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN rate_period REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, available_at, id)
    WHERE state = 'pending' AND blocked = 0;
DROP INDEX jobs_due;
CREATE INDEX jobs_due ON jobs (queue, available_at) WHERE state = 'pending' AND blocked = 0;
-- counts(): the held-back jobs among the delayed ones of now's 16 s slot.
CREATE INDEX jobs_blocked ON jobs (queue, available_at) WHERE state = 'pending' AND blocked <> 0;
-- The pending jobs of an overlap key, the first first; the one the key lets through.
CREATE INDEX jobs_overlap ON jobs (overlap_key, available_at, id)
    WHERE state = 'pending' AND overlap_key IS NOT NULL;
CREATE UNIQUE INDEX jobs_overlap_turn ON jobs (overlap_key)
    WHERE overlap_key IS NOT NULL AND state IN ('pending', 'running') AND blocked & 1 = 0;
-- The pending jobs of a rate key the overlap rule lets through, the first first; the one
-- whose turn it is at the limiter.
CREATE INDEX jobs_rate ON jobs (rate_key, available_at, id)
    WHERE state = 'pending' AND rate_key IS NOT NULL AND blocked & 1 = 0;
CREATE UNIQUE INDEX jobs_rate_turn ON jobs (rate_key)
    WHERE state = 'pending' AND rate_key IS NOT NULL AND blocked & 2 = 0;
-- The starts of each rate key within its period (older ones are deleted as it starts more).
CREATE TABLE rate_starts (key TEXT NOT NULL, started_at REAL NOT NULL);
CREATE INDEX rate_starts_key ON rate_starts (key, started_at);
-- Rate keys whose limiter is full, with the queue of the job waiting first: when a slot opens.
CREATE TABLE rate_parked (key TEXT PRIMARY KEY, queue TEXT NOT NULL, opens_at REAL NOT NULL)
    WITHOUT ROWID;
CREATE INDEX rate_parked_opens ON rate_parked (opens_at);
CREATE INDEX rate_parked_queue ON rate_parked (queue, opens_at);

-- name: migration_11
-- `jobrt failed retry`: when an operator retried the job, until its next claim, which
-- hands it on for the events of that run.
ALTER TABLE jobs ADD COLUMN retried_at REAL;

-- name: migration_12
-- Batches: counts kept in step with the members' states by the triggers below (in the
-- same transaction as each change), `due` when a member ended or came back, for the
-- backend to enqueue the callbacks then due (sqlite_batches, batch_rules). `fired`: bits of
-- the callbacks enqueued (1 then, 2 catch, 4 finally).
CREATE TABLE batches (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT,
    queue          TEXT    NOT NULL,
    then_job       TEXT,
    catch_job      TEXT,
    finally_job    TEXT,
    allow_failures INTEGER NOT NULL DEFAULT 0,
    total          INTEGER NOT NULL DEFAULT 0,
    succeeded      INTEGER NOT NULL DEFAULT 0,
    failed         INTEGER NOT NULL DEFAULT 0,
    cancelled      INTEGER NOT NULL DEFAULT 0,
    failed_ids     TEXT    NOT NULL DEFAULT '[]',
    created_at     REAL    NOT NULL,
    finished_at    REAL,
    cancelled_at   REAL,
    fired          INTEGER NOT NULL DEFAULT 0,
    due            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX batches_due ON batches (id) WHERE due <> 0;
CREATE INDEX batches_finished ON batches (finished_at) WHERE finished_at IS NOT NULL;
-- batch(): its running members, at most the workers' count, never all of them.
CREATE INDEX jobs_batch_running ON jobs (batch_id) WHERE state = 'running' AND batch_id IS NOT NULL;
CREATE INDEX jobs_batch_pending ON jobs (batch_id) WHERE state = 'pending' AND batch_id IS NOT NULL;
-- Pending <-> running moves no count: a claim of a member writes nothing here.
CREATE TRIGGER jobs_batch_moved AFTER UPDATE OF state ON jobs
WHEN new.batch_id IS NOT NULL AND old.state <> new.state
     AND (old.state IN ('succeeded', 'failed', 'cancelled')
          OR new.state IN ('succeeded', 'failed', 'cancelled'))
BEGIN
    UPDATE batches
    SET succeeded = succeeded + (new.state = 'succeeded') - (old.state = 'succeeded'),
        failed = failed + (new.state = 'failed') - (old.state = 'failed'),
        cancelled = cancelled + (new.state = 'cancelled') - (old.state = 'cancelled'),
        -- due when something may fire: a failure, a member back from an end (a retry),
        -- or the last member's end; not at every member's end (the drain's hot path)
        due = CASE WHEN new.state = 'failed'
                        OR old.state IN ('succeeded', 'failed', 'cancelled')
                        OR succeeded + failed + cancelled + 1 >= total THEN 1 ELSE due END
    WHERE id = CAST(new.batch_id AS INTEGER);
END;
-- The failed members' ids, in a trigger of their own: a success costs no JSON.
CREATE TRIGGER jobs_batch_failed AFTER UPDATE OF state ON jobs
WHEN new.batch_id IS NOT NULL AND old.state <> new.state
     AND (old.state = 'failed' OR new.state = 'failed')
BEGIN
    UPDATE batches
    SET failed_ids = CASE WHEN new.state = 'failed' THEN json_insert(failed_ids, '$[#]', new.id)
                          ELSE (SELECT json_group_array(value) FROM json_each(failed_ids)
                                WHERE value <> old.id) END
    WHERE id = CAST(new.batch_id AS INTEGER);
END;
CREATE TRIGGER jobs_batch_gone AFTER DELETE ON jobs
WHEN old.batch_id IS NOT NULL AND old.state IN ('pending', 'running')
BEGIN
    UPDATE batches SET total = total - 1, due = 1 WHERE id = CAST(old.batch_id AS INTEGER);
END;

-- name: migration_13
-- Chains: each step a job carrying its chain's id; a trigger marks the chain due when a
-- step ends, for the backend to enqueue the next step (or the catch callback) in that
-- transaction (sqlite_chains). `steps` holds each step as a JSON array (see
-- base.step_spec), `jobs` the job id of each step enqueued so far.
ALTER TABLE jobs ADD COLUMN chain_id INTEGER;
CREATE TABLE chains (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    queue       TEXT    NOT NULL,
    catch_job   TEXT,
    steps       TEXT    NOT NULL,
    jobs        TEXT    NOT NULL DEFAULT '[]',
    state       TEXT    NOT NULL DEFAULT 'running',
    created_at  REAL    NOT NULL,
    finished_at REAL,
    fired       INTEGER NOT NULL DEFAULT 0,
    due         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX chains_due ON chains (id) WHERE due <> 0;
CREATE TRIGGER jobs_chain_moved AFTER UPDATE OF state ON jobs
WHEN new.chain_id IS NOT NULL AND old.state <> new.state
     AND new.state IN ('succeeded', 'failed', 'cancelled')
BEGIN
    UPDATE chains SET due = 1 WHERE id = new.chain_id;
END;

-- name: migration_14
-- Nested workflows: a chain that is a member of a batch (its steps count in the batch's
-- total; steps it never ran count as cancelled), and a batch that is a step of a chain
-- (the chain goes on when the batch finished without failures).
ALTER TABLE chains ADD COLUMN batch_id INTEGER;
ALTER TABLE batches ADD COLUMN chain_id INTEGER;
-- Finished chains are pruned with the jobs' retention, as batches are.
CREATE INDEX chains_finished ON chains (finished_at) WHERE finished_at IS NOT NULL;
-- A claim of a member no longer moves it out of an index of pending members: cancelling a
-- batch (rare) reads its members through jobs_batch instead.
DROP INDEX jobs_batch_pending;
-- A member of a cancelled batch back in its queue (a retry, a rescue): its batch is due,
-- whose work cancels it (sqlite_batches.work_due).
CREATE TRIGGER jobs_batch_back AFTER UPDATE OF state ON jobs
WHEN new.batch_id IS NOT NULL AND old.state = 'running' AND new.state = 'pending'
BEGIN
    UPDATE batches SET due = 1 WHERE id = CAST(new.batch_id AS INTEGER) AND cancelled_at IS NOT NULL;
END;
CREATE TRIGGER batches_chain_step_finished AFTER UPDATE OF finished_at ON batches
WHEN new.chain_id IS NOT NULL AND new.finished_at IS NOT NULL AND old.finished_at IS NULL
BEGIN
    UPDATE chains SET due = 1 WHERE id = new.chain_id;
END;

-- name: migration_15
-- Schedule ticks (sqlite_ticks): one row per (schedule, tick time), whichever supervisor
-- inserts it first enqueues the tick's job in that transaction. outcome: enqueued (job_id
-- is its job), skipped (overlap: the previous tick's job still ran), missed (catch-up
-- recorded ticks that did not run); `missed` counts the ticks the row stands for that
-- did not run.
CREATE TABLE schedule_ticks (
    schedule   TEXT    NOT NULL,
    tick_at    REAL    NOT NULL,
    outcome    TEXT    NOT NULL CHECK (outcome IN ('enqueued', 'skipped', 'missed')),
    job_id     INTEGER,
    missed     INTEGER NOT NULL DEFAULT 0,
    created_at REAL    NOT NULL,
    UNIQUE (schedule, tick_at)
);
-- overlap: the latest earlier tick with a job, without walking the skipped ones
CREATE INDEX schedule_ticks_runs ON schedule_ticks (schedule, tick_at) WHERE job_id IS NOT NULL;
-- prune: oldest first
CREATE INDEX schedule_ticks_age ON schedule_ticks (tick_at);

-- name: migration_16
-- The dashboard (runtime.dashboard, sqlite_browse). Its lists page by id through an index
-- each: a queue's or a job name's jobs (written when a job is inserted or deleted, never
-- when its state changes), the failed and cancelled jobs (written when a job ends so).
-- job_minutes: per minute, queue and job name, what the supervisors counted (runs,
-- outcomes, run time, wait), added up by every supervisor's write; the charts read it.
CREATE INDEX jobs_queue_id ON jobs (queue, id);
CREATE INDEX jobs_name_id ON jobs (name, id);
CREATE INDEX jobs_listed ON jobs (state, id) WHERE state IN ('failed', 'cancelled');
CREATE TABLE job_minutes (
    minute      INTEGER NOT NULL,
    queue       TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    runs        INTEGER NOT NULL DEFAULT 0,
    succeeded   INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    runtime_sum REAL    NOT NULL DEFAULT 0,
    runtime_max REAL    NOT NULL DEFAULT 0,
    waits       INTEGER NOT NULL DEFAULT 0,
    wait_sum    REAL    NOT NULL DEFAULT 0,
    wait_max    REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue, name)
) WITHOUT ROWID;
-- The same added up per hour (`minute`: the hour's start), written with them: the charts of
-- a week read these, some thousand rows, not the minutes' ten thousands.
CREATE TABLE job_hours (
    minute      INTEGER NOT NULL,
    queue       TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    runs        INTEGER NOT NULL DEFAULT 0,
    succeeded   INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    runtime_sum REAL    NOT NULL DEFAULT 0,
    runtime_max REAL    NOT NULL DEFAULT 0,
    waits       INTEGER NOT NULL DEFAULT 0,
    wait_sum    REAL    NOT NULL DEFAULT 0,
    wait_max    REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue, name)
) WITHOUT ROWID;

-- name: migration_17
-- Operators' requests (sqlite_ops): a row per paused queue, which every supervisor reads on
-- its heartbeat and leaves out of the claims it makes; the latest restart request (one row,
-- its generation counting up). Tags: a row per (tag, job) that enqueue writes with a tagged
-- job, so `jobrt jobs --tag T` walks one tag's jobs in id order; a job without tags has
-- none, and its enqueue, claim and settle write nothing here. A deleted job's tags go
-- with it (the trigger: one probe of job_tags_job per deleted job).
CREATE TABLE paused_queues (
    queue     TEXT PRIMARY KEY,
    paused_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE restart_requests (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    generation   INTEGER NOT NULL,
    requested_at REAL    NOT NULL
);
CREATE TABLE job_tags (
    tag    TEXT    NOT NULL,
    job_id INTEGER NOT NULL,
    PRIMARY KEY (tag, job_id)
) WITHOUT ROWID;
CREATE INDEX job_tags_job ON job_tags (job_id);
CREATE TRIGGER jobs_untag AFTER DELETE ON jobs BEGIN
    DELETE FROM job_tags WHERE job_id = old.id;
END;

-- name: insert_tick
INSERT INTO schedule_ticks (schedule, tick_at, outcome, missed, created_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (schedule, tick_at) DO NOTHING;

-- name: tick_job
UPDATE schedule_ticks SET job_id = ? WHERE schedule = ? AND tick_at = ?;

-- name: tick_previous_state
-- The state of the job of the schedule's latest tick before this one that has a job
-- (no row: none, or its job was pruned).
SELECT state FROM jobs
WHERE id = (SELECT job_id FROM schedule_ticks INDEXED BY schedule_ticks_runs
            WHERE schedule = ? AND tick_at < ? AND job_id IS NOT NULL
            ORDER BY tick_at DESC LIMIT 1);

-- name: last_tick
SELECT t.schedule, t.tick_at, t.outcome, t.job_id, t.missed, t.created_at, j.state
FROM schedule_ticks AS t LEFT JOIN jobs AS j ON j.id = t.job_id
WHERE t.schedule = ?
ORDER BY t.tick_at DESC LIMIT 1;

-- name: prune_ticks
-- Each schedule keeps its newest row (catch-up starts there) and its newest row with a
-- job (overlap reads it): a row goes once a newer one with a job exists, or, without a
-- job itself, once any newer one does.
DELETE FROM schedule_ticks
WHERE rowid IN (SELECT t.rowid FROM schedule_ticks AS t INDEXED BY schedule_ticks_age
                WHERE t.tick_at < ?1
                  AND (EXISTS (SELECT 1 FROM schedule_ticks AS n
                               WHERE n.schedule = t.schedule AND n.tick_at > t.tick_at
                                 AND n.job_id IS NOT NULL)
                       OR (t.job_id IS NULL
                           AND EXISTS (SELECT 1 FROM schedule_ticks AS n
                                       WHERE n.schedule = t.schedule AND n.tick_at > t.tick_at)))
                ORDER BY t.tick_at, t.schedule
                LIMIT ?2);

-- name: insert_chain
INSERT INTO chains (queue, catch_job, steps, created_at, batch_id) VALUES (?, ?, ?, ?, ?);

-- name: chain_seen
UPDATE chains SET due = 0 WHERE id = ?;

-- name: batch_cancelled_at
SELECT cancelled_at FROM batches WHERE id = ?;

-- name: batch_unrun
-- The steps a chain member will not run (or, negative, will after all): cancelled members.
UPDATE batches SET cancelled = cancelled + ?, due = 1 WHERE id = ?;

-- name: chain_row
SELECT * FROM chains WHERE id = ?;

-- name: chains_due
SELECT * FROM chains INDEXED BY chains_due WHERE due <> 0 ORDER BY id;

-- name: chain_moved
UPDATE chains SET state = ?, finished_at = ?, fired = ?, jobs = ?, due = 0 WHERE id = ?;

-- name: chain_step
UPDATE jobs SET chain_id = ? WHERE id = ?;

-- name: insert_batch
INSERT INTO batches (name, queue, then_job, catch_job, finally_job, allow_failures, created_at,
                     chain_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- name: batch_grew
UPDATE batches SET total = total + ?, due = 1 WHERE id = ?;

-- name: batch_open
SELECT 1 FROM batches WHERE id = ? AND finished_at IS NULL;

-- name: batch_row
SELECT * FROM batches WHERE id = ?;

-- name: batch_rows
SELECT * FROM batches ORDER BY id DESC LIMIT ?;

-- name: batch_running
SELECT count(*) FROM jobs INDEXED BY jobs_batch_running
WHERE batch_id = ? AND state = 'running' AND batch_id IS NOT NULL;

-- name: cancelled_batches_due
SELECT id FROM batches INDEXED BY batches_due WHERE due <> 0 AND cancelled_at IS NOT NULL
ORDER BY id;

-- name: batches_due
SELECT * FROM batches INDEXED BY batches_due WHERE due <> 0 ORDER BY id;

-- name: batch_stepped
UPDATE batches SET fired = ?, finished_at = ?, cancelled_at = ?, due = 0 WHERE id = ?;

-- name: batch_cancel_members
UPDATE jobs SET state = 'cancelled', finished_at = ?, unique_held = NULL
WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_batch
             WHERE batch_id = ? AND state = 'pending' AND batch_id IS NOT NULL)
RETURNING queue, name, available_at, overlap_key, rate_key;

-- name: batch_kill_members
-- Its running members are asked to stop: their supervisors kill them, and they end cancelled.
UPDATE jobs SET cancel_requested = ?
WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_batch_running
             WHERE batch_id = ? AND state = 'running' AND batch_id IS NOT NULL);

-- name: batch_cancel_returned
UPDATE jobs SET state = 'cancelled', finished_at = ?, unique_held = NULL
WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_batch
             WHERE batch_id = ? AND state = 'pending' AND batch_id IS NOT NULL
               AND retried_at IS NULL)
RETURNING queue, name, available_at, overlap_key, rate_key;

-- name: batch_cancelled
UPDATE batches SET cancelled_at = coalesce(cancelled_at, ?), due = 1 WHERE id = ?;

-- name: insert_callback
INSERT INTO jobs (queue, name, payload, available_at, created_at) VALUES (?, ?, ?, ?, ?);

-- name: prune_batches
DELETE FROM batches
WHERE id IN (SELECT id FROM batches INDEXED BY batches_finished
             WHERE finished_at IS NOT NULL AND finished_at < ? ORDER BY finished_at, id LIMIT ?);

-- name: prune_chains
DELETE FROM chains
WHERE id IN (SELECT id FROM chains INDEXED BY chains_finished
             WHERE finished_at IS NOT NULL AND finished_at < ? ORDER BY finished_at, id LIMIT ?);

-- name: count_jobs
INSERT INTO job_counts (level, slot, state, queue, name, n) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT DO UPDATE SET n = n + excluded.n;

-- name: identify
SELECT (SELECT user_version FROM pragma_user_version),
       (SELECT application_id FROM pragma_application_id),
       (SELECT count(*) FROM sqlite_master);

-- name: insert_job
INSERT INTO jobs (queue, name, payload, priority, options, available_at, created_at,
                  unique_key, batch_id, unique_expires, unique_at_start, unique_held)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: last_id
-- The largest job id ever given (AUTOINCREMENT's counter; above max(id) when the newest
-- jobs were deleted): the next insert's first id is this plus one.
SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0),
           coalesce((SELECT max(id) FROM jobs), 0));

-- name: insert_gated
-- A job behind gates: let through at once where nothing else is at its gate (no job with
-- its overlap key lives; its rate key has no job let through, is not parked and has a free
-- slot), else held back, and sqlite_gates.recompute sorts the turns out. (No RETURNING:
-- it costs an insert as much again; job_blocked reads the row by its rowid.)
INSERT INTO jobs (queue, name, payload, priority, options, available_at, created_at,
                  unique_key, batch_id, unique_expires, unique_at_start, unique_held,
                  overlap_key, rate_key, rate_max, rate_period, blocked)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?13, ?14, ?15, ?16,
        (?13 IS NOT NULL
         AND EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_overlap_turn
                     WHERE overlap_key = ?13 AND overlap_key IS NOT NULL
                       AND state IN ('pending', 'running') AND blocked & 1 = 0))
        + 2 * (?14 IS NOT NULL
               AND (?13 IS NOT NULL
                    OR EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_rate_turn
                               WHERE rate_key = ?14 AND state = 'pending'
                                 AND rate_key IS NOT NULL AND blocked & 2 = 0)
                    OR EXISTS (SELECT 1 FROM rate_parked WHERE key = ?14)
                    OR (SELECT count(*) FROM rate_starts
                        WHERE key = ?14 AND started_at > ?7 - ?16) >= ?15)));

-- name: job_blocked
SELECT blocked FROM jobs WHERE id = ?;

-- name: max_id
SELECT coalesce(max(id), 0) FROM jobs;

-- name: expire_unique
-- unique_for ran out: the live job keeps running, its key is free for a new one.
UPDATE jobs SET unique_key = NULL, unique_held = NULL
WHERE unique_held = ? AND unique_expires <= ?;

-- name: find_unique
SELECT id FROM jobs
WHERE unique_held = ?;

-- name: running_jobs
-- The runs an exchange settles that are still this owner's: the settles below
-- change these rows and no other (inside the same write transaction).
SELECT id, attempts, queue, name FROM jobs
WHERE id IN (SELECT value FROM json_each(?)) AND owner = ? AND state = 'running';

-- name: settle_succeeded
UPDATE jobs
SET state = 'succeeded', result = ?, finished_at = ?, owner = NULL, lease_expires = NULL,
    unique_held = NULL,
    error = NULL, traceback = NULL
WHERE id = ? AND attempts = ? AND owner = ? AND state = 'running';

-- name: settle_succeeded_many
-- settle_succeeded for a batch in one statement, from a JSON array of [result, finished_at,
-- id, attempt]: half the cost of executemany's row by row. The unary + keeps the planner
-- off the owner and state indexes, so it walks the array and finds each job by its rowid.
UPDATE jobs
SET state = 'succeeded', result = CAST(json_extract(o.value, '$[0]') AS BLOB),
    finished_at = json_extract(o.value, '$[1]'), owner = NULL, lease_expires = NULL,
    unique_held = NULL, error = NULL, traceback = NULL
FROM json_each(?) AS o
WHERE jobs.id = json_extract(o.value, '$[2]') AND +jobs.attempts = json_extract(o.value, '$[3]')
  AND +jobs.owner = ? AND +jobs.state = 'running';

-- name: settle_failed
UPDATE jobs
SET state = 'failed', error = ?, traceback = ?, finished_at = ?, owner = NULL, unique_held = NULL,
    lease_expires = NULL, exceptions = exceptions + ?
WHERE id = ? AND attempts = ? AND owner = ? AND state = 'running';

-- name: settle_pending
UPDATE jobs
SET state = 'pending', available_at = ?, error = ?, traceback = ?, owner = NULL,
    lease_expires = NULL, attempts = attempts - ?, exceptions = exceptions + ?,
    blocked = (overlap_key IS NOT NULL) + 2 * (rate_key IS NOT NULL)
WHERE id = ? AND attempts = ? AND owner = ? AND state = 'running';

-- name: failure_hooks
-- The failure hooks (`@fn.on_failure`) of jobs just failed for good, ? a JSON list of
-- their ids: each hook a job of its own, made in the transaction that failed its job, so
-- it is made exactly once. Its one argument is the failed job's record; one try.
INSERT INTO jobs (queue, name, payload, priority, options, available_at, created_at)
SELECT queue, json_extract(CAST(options AS TEXT), '$.on_failure'),
       CAST(json_array(json_array(json_object(
           'id', id, 'name', name, 'queue', queue,
           'args', json(json_extract(CAST(payload AS TEXT), '$[0]')),
           'kwargs', json(json_extract(CAST(payload AS TEXT), '$[1]')),
           'attempts', attempts, 'error', error)), json_object()) AS BLOB),
       priority,
       CAST(json_object('tries', 1, 'timeout', json_extract(CAST(options AS TEXT), '$.timeout'))
            AS BLOB),
       finished_at, finished_at
FROM jobs
WHERE id IN (SELECT value FROM json_each(?)) AND state = 'failed'
  AND json_extract(CAST(options AS TEXT), '$.on_failure') IS NOT NULL
ORDER BY id  -- the hooks' ids in the order of their jobs', as in every backend
RETURNING queue, name, available_at;

-- name: settle_cancelled
UPDATE jobs
SET state = 'cancelled', error = ?, finished_at = ?, owner = NULL, lease_expires = NULL,
    unique_held = NULL
WHERE id = ? AND attempts = ? AND owner = ? AND state = 'running';

-- name: cancel_retried
-- A job asked to cancel while it ran, then put back to wait (a retry, a release, a
-- rescue) before its supervisor saw the request: cancelled instead.
-- ? is a JSON list of [job id, when it was put back].
UPDATE jobs
SET state = 'cancelled', unique_held = NULL,
    finished_at = (SELECT json_extract(value, '$[1]') FROM json_each(?1)
                   WHERE json_extract(value, '$[0]') = jobs.id)
WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(?1)) AND state = 'pending'
  AND cancel_requested IS NOT NULL
RETURNING queue, name, available_at, overlap_key, rate_key;

-- name: claim
-- INDEXED BY: left to itself the planner may pick jobs_due and sort every
-- due job of the queue. RETURNING gives rows in no promised order; they
-- carry the sort key.
UPDATE jobs
SET state = 'running', owner = ?, lease_expires = ?, attempts = attempts + 1, started_at = ?,
    unique_key = CASE WHEN unique_at_start THEN NULL ELSE unique_key END
WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_claim
             WHERE state = 'pending' AND blocked = 0 AND queue = ? AND available_at <= ?
             ORDER BY priority DESC, available_at, id
             LIMIT ?)
RETURNING id, queue, name, payload, attempts, options, priority, available_at, exceptions,
          unique_at_start, overlap_key, rate_key, rate_period, retried_at, batch_id, chain_id;

-- name: retried_seen
-- The first run since an operator's retry was claimed: the next ones are plain runs.
UPDATE jobs SET retried_at = NULL WHERE id IN (SELECT value FROM json_each(?));

-- name: free_at_start
-- unique_until="start": the keys of jobs just claimed are free.
UPDATE jobs SET unique_held = NULL WHERE id IN (SELECT value FROM json_each(?));

-- name: next_due
SELECT min(at) FROM (
    SELECT min(available_at) AS at FROM jobs INDEXED BY jobs_due
    WHERE state = 'pending' AND blocked = 0 AND queue = ?1
    UNION ALL
    SELECT min(opens_at) FROM rate_parked WHERE queue = ?1);

-- name: oldest_pending
-- The first available_at of each queue that has pending jobs (one seek each in
-- jobs_due and jobs_blocked), the least of those, if it is due.
SELECT min(first) FROM (
    SELECT nullif(min(coalesce((SELECT min(available_at) FROM jobs INDEXED BY jobs_due
                                WHERE state = 'pending' AND blocked = 0 AND queue = q.queue),
                               9e999),
                      -- jobs waiting at a gate wait too
                      coalesce((SELECT min(available_at) FROM jobs INDEXED BY jobs_blocked
                                WHERE state = 'pending' AND blocked <> 0 AND queue = q.queue),
                               9e999)), 9e999) AS first
    FROM (SELECT queue FROM job_counts WHERE level = 2
          GROUP BY queue HAVING sum(n) > 0) AS q)
WHERE first <= ?;

-- name: pending_by_queue_and_name
SELECT queue, name, sum(n) FROM job_counts WHERE level = 2
GROUP BY queue, name HAVING sum(n) > 0
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
    error = 'its supervisor ' || owner || ' died; returned to the queue',
    blocked = (overlap_key IS NOT NULL) + 2 * (rate_key IS NOT NULL)
WHERE owner = ? AND state = 'running'
RETURNING id, queue, name, available_at, overlap_key, rate_key;

-- name: rescue_expired
UPDATE jobs
SET state = 'pending', owner = NULL, lease_expires = NULL, traceback = NULL,
    error = 'lease expired: its supervisor ' || owner
            || ' stopped renewing it; returned to the queue',
    blocked = (overlap_key IS NOT NULL) + 2 * (rate_key IS NOT NULL)
WHERE lease_expires < ? AND state = 'running'
RETURNING id, queue, name, available_at, overlap_key, rate_key;

-- name: get
SELECT * FROM jobs WHERE id = ?;

-- name: counts
-- From job_counts (migration 4), (queue, bucket, n) rows to add up: a bucket is a
-- state (pending: due and delayed jobs) or 'delayed': the delayed jobs of the later
-- slots of each level, and those in the rest of now's 16 s slot, counted in jobs_due.
-- ?1 is now; s0, s1, s2 are its slots, floored as the counted slots are.
WITH b AS (
    SELECT ?1 AS now,
           CAST(?1 / 16.0 AS INTEGER) - (CAST(?1 / 16.0 AS INTEGER) > ?1 / 16.0) AS s0,
           CAST(?1 / 4096.0 AS INTEGER) - (CAST(?1 / 4096.0 AS INTEGER) > ?1 / 4096.0) AS s1,
           CAST(?1 / 1048576.0 AS INTEGER)
               - (CAST(?1 / 1048576.0 AS INTEGER) > ?1 / 1048576.0) AS s2
),
pending AS (SELECT queue, sum(n) AS n FROM job_counts WHERE level = 2 GROUP BY queue)
SELECT queue, state, n FROM job_counts WHERE level = -1
UNION ALL
SELECT queue, 'pending', n FROM pending
UNION ALL
SELECT c.queue, 'delayed', c.n FROM job_counts AS c, b
WHERE c.level = 0 AND c.slot > b.s0 AND c.slot < (b.s1 + 1) * 256
UNION ALL
SELECT c.queue, 'delayed', c.n FROM job_counts AS c, b
WHERE c.level = 1 AND c.slot > b.s1 AND c.slot < (b.s2 + 1) * 256
UNION ALL
SELECT c.queue, 'delayed', c.n FROM job_counts AS c, b
WHERE c.level = 2 AND c.slot > b.s2
UNION ALL
SELECT q.queue, 'delayed',
       (SELECT count(*) FROM jobs INDEXED BY jobs_due
        WHERE state = 'pending' AND blocked = 0 AND queue = q.queue
          AND available_at > b.now AND available_at < (b.s0 + 1) * 16.0)
       + (SELECT count(*) FROM jobs INDEXED BY jobs_blocked
          WHERE state = 'pending' AND blocked <> 0 AND queue = q.queue
            AND available_at > b.now AND available_at < (b.s0 + 1) * 16.0)
FROM pending AS q, b WHERE q.n > 0;

-- name: forget_zero_counts
-- Up to ? rows of job_counts whose jobs all left (past slots, emptied queues), found
-- in job_counts_zero: a heartbeat after a huge clear() stays short, the next go on.
DELETE FROM job_counts
WHERE (level, slot, state, queue, name) IN (SELECT level, slot, state, queue, name
                                            FROM job_counts WHERE n = 0 LIMIT ?);

-- name: failed
SELECT * FROM jobs WHERE state = 'failed' ORDER BY finished_at DESC, id DESC LIMIT ?;

-- name: failed_ids
SELECT id FROM jobs INDEXED BY jobs_failed WHERE state = 'failed';

-- name: retry_failed
-- OR IGNORE: a failed job whose unique key is held by a live job stays failed.
UPDATE OR IGNORE jobs
SET state = 'pending', attempts = 0, available_at = ?1, owner = NULL, lease_expires = NULL,
    unique_held = unique_key,
    finished_at = NULL, cancel_requested = NULL, retried_at = ?1,
    blocked = (overlap_key IS NOT NULL) + 2 * (rate_key IS NOT NULL)
WHERE id = ?2 AND state = 'failed'
RETURNING queue, name, available_at, overlap_key, rate_key;

-- name: forget
DELETE FROM jobs WHERE id = ? AND state = 'failed'
RETURNING state, queue, name, CASE WHEN state = 'pending' THEN available_at END;

-- name: flush_failed
DELETE FROM jobs WHERE state = 'failed'
RETURNING state, queue, name, CASE WHEN state = 'pending' THEN available_at END;

-- name: job_state
SELECT state FROM jobs WHERE id = ?;

-- name: cancel
UPDATE jobs SET state = 'cancelled', finished_at = ?, cancel_requested = ?, unique_held = NULL
WHERE id = ? AND state = 'pending'
RETURNING queue, name, available_at, overlap_key, rate_key;

-- name: request_cancel
UPDATE jobs SET cancel_requested = ? WHERE id = ? AND state = 'running';

-- name: cancel_requests
SELECT id, attempts FROM jobs
WHERE owner = ? AND state = 'running' AND cancel_requested IS NOT NULL;

-- name: clear
DELETE FROM jobs WHERE queue = ? AND state = 'pending'
RETURNING state, queue, name, CASE WHEN state = 'pending' THEN available_at END,
          overlap_key, rate_key;

-- name: count_states
SELECT state, count(*) FROM jobs WHERE id IN (SELECT value FROM json_each(?)) GROUP BY state;

-- name: delete_jobs
-- Running jobs stay: their supervisor settles them (runtime.storage.job_sets).
DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?)) AND state <> 'running'
RETURNING state, queue, name, CASE WHEN state = 'pending' THEN available_at END,
          overlap_key, rate_key;

-- name: overlap_holder
-- The job its overlap key lets through: running, or the next to run.
SELECT id, state, rate_key FROM jobs INDEXED BY jobs_overlap_turn
WHERE overlap_key = ? AND overlap_key IS NOT NULL AND state IN ('pending', 'running')
  AND blocked & 1 = 0;

-- name: overlap_first
SELECT id, rate_key FROM jobs INDEXED BY jobs_overlap
WHERE overlap_key = ? AND state = 'pending' AND overlap_key IS NOT NULL
ORDER BY available_at, id LIMIT 1;

-- name: overlap_wait
UPDATE jobs SET blocked = blocked | 1 WHERE id = ?;

-- name: overlap_go
UPDATE jobs SET blocked = blocked & ~1 WHERE id = ?;

-- name: rate_head
SELECT id FROM jobs INDEXED BY jobs_rate_turn
WHERE rate_key = ? AND state = 'pending' AND rate_key IS NOT NULL AND blocked & 2 = 0;

-- name: rate_first
SELECT id, queue, rate_max, rate_period FROM jobs INDEXED BY jobs_rate
WHERE rate_key = ? AND state = 'pending' AND rate_key IS NOT NULL AND blocked & 1 = 0
ORDER BY available_at, id LIMIT 1;

-- name: rate_wait
UPDATE jobs SET blocked = blocked | 2 WHERE id = ?;

-- name: rate_go
UPDATE jobs SET blocked = blocked & ~2 WHERE id = ?;

-- name: rate_full_since
-- The rate_max-th latest start within the period (?2: its start), if there are that many:
-- a slot is free again one period after it.
SELECT started_at FROM rate_starts WHERE key = ?1 AND started_at > ?2
ORDER BY started_at DESC LIMIT 1 OFFSET ?3 - 1;

-- name: rate_park
INSERT INTO rate_parked (key, queue, opens_at) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET queue = excluded.queue, opens_at = excluded.opens_at;

-- name: rate_unpark
DELETE FROM rate_parked WHERE key = ?;

-- name: rate_reopen
SELECT key FROM rate_parked INDEXED BY rate_parked_opens WHERE opens_at <= ? ORDER BY key;

-- name: rate_start
INSERT INTO rate_starts (key, started_at) VALUES (?, ?);

-- name: rate_forget
DELETE FROM rate_starts WHERE key = ? AND started_at <= ?;

-- name: prune
-- INDEXED BY: the state test must stay word for word the index's own, or
-- SQLite could not use the partial index (and this would fail, not crawl).
DELETE FROM jobs
WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_ended
             WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at < ?
             ORDER BY finished_at, id
             LIMIT ?)
RETURNING state, queue, name, CASE WHEN state = 'pending' THEN available_at END;

-- name: jobs_page_listed
-- The failed or cancelled jobs (jobs_listed), newest first, further filtered.
SELECT * FROM jobs INDEXED BY jobs_listed
WHERE state = :state AND state IN ('failed', 'cancelled') AND id < :before
  AND (:queue IS NULL OR queue = :queue) AND (:name IS NULL OR name = :name)
  AND (:batch IS NULL OR batch_id = :batch)
ORDER BY id DESC LIMIT :limit;

-- name: jobs_page_running
-- The running jobs (a few per worker: jobs_lease holds them all), sorted.
SELECT * FROM jobs INDEXED BY jobs_lease
WHERE state = 'running' AND id < :before
  AND (:queue IS NULL OR queue = :queue) AND (:name IS NULL OR name = :name)
  AND (:batch IS NULL OR batch_id = :batch)
ORDER BY id DESC LIMIT :limit;

-- name: jobs_page_batch
-- A batch's members (jobs_batch: its entries are in id order within a batch).
SELECT * FROM jobs INDEXED BY jobs_batch
WHERE batch_id = :batch AND batch_id IS NOT NULL AND id < :before
  AND (:state IS NULL OR state = :state)
  AND (:queue IS NULL OR queue = :queue) AND (:name IS NULL OR name = :name)
ORDER BY id DESC LIMIT :limit;

-- name: jobs_page_queue
SELECT * FROM jobs INDEXED BY jobs_queue_id
WHERE queue = :queue AND id < :before
  AND (:state IS NULL OR state = :state) AND (:name IS NULL OR name = :name)
ORDER BY id DESC LIMIT :limit;

-- name: jobs_page_name
SELECT * FROM jobs INDEXED BY jobs_name_id
WHERE name = :name AND id < :before AND (:state IS NULL OR state = :state)
ORDER BY id DESC LIMIT :limit;

-- name: jobs_page_all
-- No filter, or pending or succeeded jobs: the table in id order.
SELECT * FROM jobs
WHERE id < :before AND (:state IS NULL OR state = :state)
ORDER BY id DESC LIMIT :limit;

-- name: batches_page
SELECT * FROM batches WHERE id < ? ORDER BY id DESC LIMIT ?;

-- name: record_minute
INSERT INTO job_minutes (minute, queue, name, runs, succeeded, failed, runtime_sum,
                         runtime_max, waits, wait_sum, wait_max)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (minute, queue, name) DO UPDATE SET
    runs = runs + excluded.runs, succeeded = succeeded + excluded.succeeded,
    failed = failed + excluded.failed, runtime_sum = runtime_sum + excluded.runtime_sum,
    runtime_max = max(runtime_max, excluded.runtime_max), waits = waits + excluded.waits,
    wait_sum = wait_sum + excluded.wait_sum, wait_max = max(wait_max, excluded.wait_max);

-- name: minute_series_queue
SELECT minute - minute % ?2 AS at, queue, sum(runs), sum(succeeded), sum(failed),
       sum(runtime_sum), max(runtime_max), sum(waits), sum(wait_sum), max(wait_max)
FROM job_minutes WHERE minute >= ?1
GROUP BY at, queue;

-- name: minute_series_name
SELECT minute - minute % ?2 AS at, name, sum(runs), sum(succeeded), sum(failed),
       sum(runtime_sum), max(runtime_max), sum(waits), sum(wait_sum), max(wait_max)
FROM job_minutes WHERE minute >= ?1
GROUP BY at, name;

-- name: prune_minutes
DELETE FROM job_minutes WHERE minute < ?;

-- name: pause_queue
INSERT INTO paused_queues (queue, paused_at) VALUES (?, ?) ON CONFLICT (queue) DO NOTHING;

-- name: resume_queue
DELETE FROM paused_queues WHERE queue = ?;

-- name: paused_queues
SELECT queue, paused_at FROM paused_queues ORDER BY queue;

-- name: request_restart
INSERT INTO restart_requests (id, generation, requested_at) VALUES (1, 1, ?)
ON CONFLICT (id) DO UPDATE SET generation = generation + 1, requested_at = excluded.requested_at
RETURNING generation;

-- name: controls
-- A supervisor's read on each heartbeat: the paused queues, then the restart generation.
SELECT queue, NULL FROM paused_queues
UNION ALL
SELECT NULL, generation FROM restart_requests;

-- name: prune_failed
-- INDEXED BY: the state test must stay word for word the index's own (as prune's).
DELETE FROM jobs
WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_failed
             WHERE state = 'failed' AND finished_at < ?
             ORDER BY finished_at, id
             LIMIT ?)
RETURNING state, queue, name;

-- name: insert_tag
INSERT OR IGNORE INTO job_tags (tag, job_id) VALUES (?, ?);

-- name: tags_of
-- ? is a JSON list of job ids.
SELECT job_id, tag FROM job_tags INDEXED BY job_tags_job
WHERE job_id IN (SELECT value FROM json_each(?)) ORDER BY job_id, tag;

-- name: jobs_page_tag
-- A tag's jobs (job_tags, in id order within a tag), newest first, further filtered.
SELECT jobs.* FROM job_tags CROSS JOIN jobs ON jobs.id = job_tags.job_id
WHERE job_tags.tag = :tag AND job_tags.job_id < :before
  AND (:state IS NULL OR jobs.state = :state)
  AND (:queue IS NULL OR jobs.queue = :queue) AND (:name IS NULL OR jobs.name = :name)
  AND (:batch IS NULL OR jobs.batch_id = :batch)
ORDER BY job_tags.job_id DESC LIMIT :limit;
