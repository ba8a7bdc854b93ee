-- The SQL of the PostgreSQL backend, one `-- name:` section per statement.
-- Placeholders are psycopg's (`%(name)s`); batches travel as arrays through
-- unnest(), so a batch of any size is one statement. Tables carry a `jobrt_`
-- prefix: a shared database or schema keeps its own names.

-- name: migration_1
-- Times are epoch seconds in double precision, as in SQLite, so records compare
-- equal across backends. Payloads, options and results are the exact JSON bytes
-- given (bytea): storage never re-encodes them.
-- ALWAYS AS IDENTITY: a job id is a user's handle (`jobrt job ID`); a sequence
-- never hands out a value twice, so ids freed by forget/clear are never reused.
CREATE TABLE jobrt_jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue         text             NOT NULL,
    name          text             NOT NULL,
    payload       bytea            NOT NULL,
    state         text             NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    priority      bigint           NOT NULL DEFAULT 0,
    attempts      integer          NOT NULL DEFAULT 0,
    options       bytea,
    available_at  double precision NOT NULL,
    owner         text,
    lease_expires double precision,
    created_at    double precision NOT NULL,
    started_at    double precision,
    finished_at   double precision,
    error         text,
    traceback     text,
    result        bytea,
    unique_key    text,
    batch_id      text
);
-- The claim walks this index in claim order and stops after LIMIT rows, so a
-- huge backlog costs nothing; partial, so finished jobs never enter it.
CREATE INDEX jobrt_jobs_claim ON jobrt_jobs (queue, priority DESC, available_at, id)
    WHERE state = 'pending';
-- next_due: min(available_at) per queue without walking the delayed backlog.
CREATE INDEX jobrt_jobs_due ON jobrt_jobs (queue, available_at) WHERE state = 'pending';
-- Lease renewal and rescue touch running jobs only.
CREATE INDEX jobrt_jobs_owner ON jobrt_jobs (owner) WHERE state = 'running';
CREATE INDEX jobrt_jobs_lease ON jobrt_jobs (lease_expires) WHERE state = 'running';
CREATE UNIQUE INDEX jobrt_jobs_unique ON jobrt_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'running');
CREATE INDEX jobrt_jobs_failed ON jobrt_jobs (finished_at, id) WHERE state = 'failed';
CREATE INDEX jobrt_jobs_batch ON jobrt_jobs (batch_id) WHERE batch_id IS NOT NULL;
CREATE TABLE jobrt_supervisors (
    owner        text PRIMARY KEY,
    host         text             NOT NULL,
    pid          bigint           NOT NULL,
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    info         bytea            NOT NULL
);

-- name: migration_2
-- prune: ended jobs, oldest first, without walking pending and running ones.
CREATE INDEX jobrt_jobs_ended ON jobrt_jobs (finished_at, id)
    WHERE state IN ('succeeded', 'failed', 'cancelled');

-- name: migration_3
-- jobrt health/status: pending jobs per (queue, name), counted from this index
-- (an index-only scan in GROUP BY order) instead of the table.
CREATE INDEX jobrt_jobs_pending_name ON jobrt_jobs (queue, name) WHERE state = 'pending';

-- name: migration_4
-- counts(): jobs per queue and state kept in rows changed in the same transaction as
-- every change of jobrt_jobs (by triggers), so status, health and metrics read a few
-- hundred rows whatever the size of the jobs table. Keys (level, slot, state, queue,
-- name), as in the SQLite backend's job_counts:
--   level -1: jobs that are not pending, per (state, queue, name) (slot 0).
--   levels 0, 1, 2: pending jobs per queue and slot of available_at, with slots of
--   16 s, 4096 s (16 * 256) and 1048576 s (about 12 days); level 2 also per job name
--   (so it holds the pending jobs per queue and name). A pending job counts once in
--   each level. slot = floor(available_at / width), exact: the widths are powers of 2
--   (for times below 2^53 s in size and not subnormal: every real epoch time).
-- The delayed jobs (available_at > now) are then: the rest of now's 16 s slot (read
-- from jobrt_jobs_due), the later 16 s slots of now's 4096 s slot, the later 4096 s
-- slots of now's 12-day slot, and every later 12-day slot: at most 255 + 255 keys per
-- queue, plus one per queue, name and 12 days of delays.
-- No writer of jobs updates a count, though: the triggers insert into
-- jobrt_count_changes one row per key a statement changed, n the change. So writers
-- never wait on each other (nor on a hot row) for a count, and cannot deadlock over
-- one. heartbeat() folds the changes into jobrt_counts, one row per key (fold_counts);
-- the reads add up both tables (the view jobrt_count_rows), so changes not folded yet
-- cost a read only in the slot ranges it reads.
-- The table is locked first: no job can change between the backfill and the triggers.
LOCK TABLE jobrt_jobs IN SHARE ROW EXCLUSIVE MODE;
CREATE TABLE jobrt_counts (
    level smallint         NOT NULL,
    slot  double precision NOT NULL,
    state text             NOT NULL,
    queue text             NOT NULL,
    name  text             NOT NULL,
    n     bigint           NOT NULL,
    PRIMARY KEY (level, slot, state, queue, name)
);
-- forget_zero_counts finds the keys whose jobs all left here, not by reading them all.
CREATE INDEX jobrt_counts_zero ON jobrt_counts (level) WHERE n = 0;
CREATE TABLE jobrt_count_changes (
    level smallint         NOT NULL,
    slot  double precision NOT NULL,
    state text             NOT NULL,
    queue text             NOT NULL,
    name  text             NOT NULL,
    n     bigint           NOT NULL
);
CREATE INDEX jobrt_count_changes_slot ON jobrt_count_changes (level, slot);
CREATE VIEW jobrt_count_rows AS
    SELECT level, slot, state, queue, name, n FROM jobrt_counts
    UNION ALL
    SELECT level, slot, state, queue, name, n FROM jobrt_count_changes;
-- The keys a job (state, queue, name, available_at) counts under.
CREATE FUNCTION jobrt_count_keys(text, text, text, double precision)
RETURNS TABLE (level smallint, slot double precision, state text, queue text, name text)
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT l.level, CASE WHEN l.level < 0 THEN 0 ELSE floor($4 / l.width) END, $1, $2,
           CASE WHEN l.level IN (-1, 2) THEN $3 ELSE '' END
    FROM (VALUES (-1::smallint, 1.0::float8), (0, 16.0), (1, 4096.0), (2, 1048576.0))
         AS l (level, width)
    WHERE (l.level < 0) = ($1 <> 'pending')
$fn$;
-- Statement triggers: one row per key the statement changed, whatever its row count.
-- SECURITY DEFINER: a role that may change jobs needs no rights on the counts.
CREATE FUNCTION jobrt_count_jobs() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO jobrt_count_changes (level, slot, state, queue, name, n)
        SELECT k.*, count(*)
        FROM new_jobs AS j, jobrt_count_keys(j.state, j.queue, j.name, j.available_at) AS k
        GROUP BY 1, 2, 3, 4, 5;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO jobrt_count_changes (level, slot, state, queue, name, n)
        SELECT k.*, -count(*)
        FROM old_jobs AS j, jobrt_count_keys(j.state, j.queue, j.name, j.available_at) AS k
        GROUP BY 1, 2, 3, 4, 5;
    ELSE
        -- Out of the old keys, into the new ones: a lease renewal's rows cancel out.
        INSERT INTO jobrt_count_changes (level, slot, state, queue, name, n)
        SELECT k.*, sum(j.sign)
        FROM (SELECT state, queue, name, available_at, -1 AS sign FROM old_jobs
              UNION ALL
              SELECT state, queue, name, available_at, 1 FROM new_jobs) AS j,
             jobrt_count_keys(j.state, j.queue, j.name, j.available_at) AS k
        GROUP BY 1, 2, 3, 4, 5
        HAVING sum(j.sign) <> 0;
    END IF;
    RETURN NULL;
END
$fn$;
CREATE FUNCTION jobrt_count_truncate() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
BEGIN
    DELETE FROM jobrt_counts;
    DELETE FROM jobrt_count_changes;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER jobrt_jobs_count_insert AFTER INSERT ON jobrt_jobs
    REFERENCING NEW TABLE AS new_jobs FOR EACH STATEMENT EXECUTE FUNCTION jobrt_count_jobs();
CREATE TRIGGER jobrt_jobs_count_update AFTER UPDATE ON jobrt_jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobrt_count_jobs();
CREATE TRIGGER jobrt_jobs_count_delete AFTER DELETE ON jobrt_jobs
    REFERENCING OLD TABLE AS old_jobs FOR EACH STATEMENT EXECUTE FUNCTION jobrt_count_jobs();
CREATE TRIGGER jobrt_jobs_count_truncate AFTER TRUNCATE ON jobrt_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobrt_count_truncate();
REVOKE EXECUTE ON FUNCTION jobrt_count_jobs(), jobrt_count_truncate() FROM PUBLIC;
INSERT INTO jobrt_counts (level, slot, state, queue, name, n)
SELECT k.*, count(*)
FROM jobrt_jobs AS j, jobrt_count_keys(j.state, j.queue, j.name, j.available_at) AS k
GROUP BY 1, 2, 3, 4, 5;
-- pending_by_queue_and_name() now reads the counts: the index of migration 3 would
-- only cost every enqueue and claim a write.
DROP INDEX jobrt_jobs_pending_name;

-- name: schema_exists
SELECT to_regclass('jobrt_migrations') IS NOT NULL;

-- name: migration_5
-- max_exceptions: how many runs of the job raised, across its attempts.
ALTER TABLE jobrt_jobs ADD COLUMN exceptions integer NOT NULL DEFAULT 0;

-- name: migration_6
-- q.cancel of a running job: when it was asked, for the supervisor that runs it.
ALTER TABLE jobrt_jobs ADD COLUMN cancel_requested double precision;

-- name: migration_7
-- unique_for (the key is free from unique_expires on) and unique_until="start".
ALTER TABLE jobrt_jobs ADD COLUMN unique_expires double precision;
ALTER TABLE jobrt_jobs ADD COLUMN unique_at_start boolean NOT NULL DEFAULT false;

-- name: migration_8
-- The functions below run with their owner's rights (SECURITY DEFINER), as the counts'
-- triggers do: a role that may change jobs needs no rights on the gates' tables to cancel.
-- Gates (runtime.gates): without_overlapping and rate_limit, as in the SQLite backend
-- (its migration 10 and sqlite_gates.py say how). `blocked` holds a pending job back: bit
-- 1 while it waits for its overlap key, bit 2 while it waits for its turn at its rate
-- limiter. The claim indexes hold only jobs nothing holds back.
ALTER TABLE jobrt_jobs ADD COLUMN overlap_key text, ADD COLUMN rate_key text,
    ADD COLUMN rate_max integer NOT NULL DEFAULT 0,
    ADD COLUMN rate_period double precision NOT NULL DEFAULT 0,
    ADD COLUMN blocked smallint NOT NULL DEFAULT 0;
DROP INDEX jobrt_jobs_claim;
-- `blocked <= 0` (it is never negative): a predicate jobrt_jobs_due's does not imply, so
-- the claim, which says the same, can only walk this index in claim order. Left to choose
-- (before the table's first ANALYZE, every index looks one row long) the planner took
-- jobrt_jobs_due and sorted every due job of the queue at each claim: 30 ms at 50k.
CREATE INDEX jobrt_jobs_claim ON jobrt_jobs (queue, priority DESC, available_at, id)
    WHERE state = 'pending' AND blocked <= 0;
DROP INDEX jobrt_jobs_due;
CREATE INDEX jobrt_jobs_due ON jobrt_jobs (queue, available_at)
    WHERE state = 'pending' AND blocked = 0;
CREATE INDEX jobrt_jobs_blocked ON jobrt_jobs (queue, available_at)
    WHERE state = 'pending' AND blocked <> 0;
CREATE INDEX jobrt_jobs_overlap ON jobrt_jobs (overlap_key, available_at, id)
    WHERE state = 'pending' AND overlap_key IS NOT NULL;
CREATE UNIQUE INDEX jobrt_jobs_overlap_turn ON jobrt_jobs (overlap_key)
    WHERE overlap_key IS NOT NULL AND state IN ('pending', 'running') AND blocked & 1 = 0;
CREATE INDEX jobrt_jobs_rate ON jobrt_jobs (rate_key, available_at, id)
    WHERE state = 'pending' AND rate_key IS NOT NULL AND blocked & 1 = 0;
CREATE UNIQUE INDEX jobrt_jobs_rate_turn ON jobrt_jobs (rate_key)
    WHERE state = 'pending' AND rate_key IS NOT NULL AND blocked & 2 = 0;
CREATE TABLE jobrt_rate_starts (key text NOT NULL, started_at double precision NOT NULL);
CREATE INDEX jobrt_rate_starts_key ON jobrt_rate_starts (key, started_at);
CREATE TABLE jobrt_rate_parked (
    key      text PRIMARY KEY,
    queue    text NOT NULL,
    opens_at double precision NOT NULL
);
CREATE INDEX jobrt_rate_parked_opens ON jobrt_rate_parked (opens_at);
CREATE INDEX jobrt_rate_parked_queue ON jobrt_rate_parked (queue, opens_at);

-- Let the first pending job with overlap key k through, unless one with it runs; returns
-- the rate keys of the jobs whose overlap bit changed. A job that came first meanwhile
-- takes the turn of the one let through before, unless that one is being claimed right
-- now (locked): then it runs first, which is as good.
CREATE FUNCTION jobrt_gate_overlap(k text) RETURNS text[] LANGUAGE plpgsql 
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    holder_id bigint;
    holder_state text;
    holder_rate text;
    next_id bigint;
    next_rate text;
BEGIN
    SELECT id, state, rate_key INTO holder_id, holder_state, holder_rate FROM jobrt_jobs
    WHERE overlap_key = k AND state IN ('pending', 'running') AND blocked & 1 = 0;
    IF holder_state = 'running' THEN
        RETURN '{}';
    END IF;
    SELECT id, rate_key INTO next_id, next_rate FROM jobrt_jobs
    WHERE overlap_key = k AND state = 'pending' ORDER BY available_at, id LIMIT 1;
    IF next_id IS NULL OR next_id = holder_id THEN
        RETURN '{}';
    END IF;
    IF holder_id IS NOT NULL THEN
        UPDATE jobrt_jobs SET blocked = blocked | 1
        WHERE id = (SELECT id FROM jobrt_jobs WHERE id = holder_id FOR UPDATE SKIP LOCKED);
        IF NOT FOUND THEN
            RETURN '{}';
        END IF;
    END IF;
    UPDATE jobrt_jobs SET blocked = blocked & ~1 WHERE id = next_id;
    RETURN array_remove(ARRAY[next_rate, holder_rate], NULL);
END $$;

-- Let the first pending job of rate key k that its overlap key lets through go, if its
-- limiter has a free slot at `now` (returns true); else park k until one opens.
CREATE FUNCTION jobrt_gate_rate(k text, now double precision) RETURNS boolean
LANGUAGE plpgsql 
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    head_id bigint;
    next_id bigint;
    next_queue text;
    most integer;
    period double precision;
    full_since double precision;
BEGIN
    SELECT id INTO head_id FROM jobrt_jobs
    WHERE rate_key = k AND state = 'pending' AND rate_key IS NOT NULL AND blocked & 2 = 0;
    SELECT id, queue, rate_max, rate_period INTO next_id, next_queue, most, period FROM jobrt_jobs
    WHERE rate_key = k AND state = 'pending' AND rate_key IS NOT NULL AND blocked & 1 = 0
    ORDER BY available_at, id LIMIT 1;
    IF next_id IS NULL THEN
        DELETE FROM jobrt_rate_parked WHERE key = k;
        RETURN false;
    END IF;
    IF head_id IS NOT NULL THEN
        IF head_id = next_id THEN
            RETURN false;
        END IF;
        UPDATE jobrt_jobs SET blocked = blocked | 2
        WHERE id = (SELECT id FROM jobrt_jobs WHERE id = head_id FOR UPDATE SKIP LOCKED);
        IF NOT FOUND THEN
            RETURN false;
        END IF;
    END IF;
    SELECT started_at INTO full_since FROM jobrt_rate_starts
    WHERE key = k AND started_at > now - period
    ORDER BY started_at DESC OFFSET most - 1 LIMIT 1;
    IF full_since IS NULL THEN
        UPDATE jobrt_jobs SET blocked = blocked & ~2 WHERE id = next_id;
        DELETE FROM jobrt_rate_parked WHERE key = k;
        RETURN true;
    END IF;
    INSERT INTO jobrt_rate_parked (key, queue, opens_at) VALUES (k, next_queue, full_since + period)
    ON CONFLICT (key) DO UPDATE SET queue = excluded.queue, opens_at = excluded.opens_at;
    RETURN false;
END $$;

-- The turns at these keys, under one lock all gate changes take (held to the end of the
-- transaction, so the next one sees this one's changes): overlap keys first, their
-- rate keys after. Wakes the supervisors when it let a job through. Returns how many.
CREATE FUNCTION jobrt_regate(okeys text[], rkeys text[], now double precision, channel text)
RETURNS integer LANGUAGE plpgsql 
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    k text;
    rates text[] := coalesce(rkeys, '{}');
    changed text[];
    went integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(7670369553237075827);  -- 'jobrtgat'
    FOR k IN SELECT DISTINCT x FROM unnest(okeys) AS x WHERE x IS NOT NULL ORDER BY 1 LOOP
        changed := jobrt_gate_overlap(k);
        rates := rates || changed;
        IF cardinality(changed) > 0 THEN
            went := went + 1;
        END IF;
    END LOOP;
    FOR k IN SELECT DISTINCT x FROM unnest(rates) AS x WHERE x IS NOT NULL ORDER BY 1 LOOP
        IF jobrt_gate_rate(k, now) THEN
            went := went + 1;
        END IF;
    END LOOP;
    IF went > 0 AND channel IS NOT NULL THEN
        PERFORM pg_notify(channel, '');
    END IF;
    RETURN went;
END $$;

-- Before a claim: the rate keys whose limiter has had a free slot since `now` or earlier.
CREATE FUNCTION jobrt_reopen(now double precision, channel text) RETURNS integer
LANGUAGE plpgsql 
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    keys text[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM jobrt_rate_parked WHERE opens_at <= now) THEN
        RETURN 0;  -- nearly always: no lock taken
    END IF;
    PERFORM pg_advisory_xact_lock(7670369553237075827);
    WITH opened AS (DELETE FROM jobrt_rate_parked WHERE opens_at <= now RETURNING key)
    SELECT array_agg(key) INTO keys FROM opened;
    RETURN jobrt_regate('{}', keys, now, channel);
END $$;

-- After a claim: the jobs of rate keys `who` claimed at `now` started; count them, forget
-- the starts that fell out of their period, and let the next job of each key through.
CREATE FUNCTION jobrt_started(who text, now double precision, channel text) RETURNS integer
LANGUAGE plpgsql 
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    keys text[];
BEGIN
    SELECT array_agg(rate_key) INTO keys FROM jobrt_jobs
    WHERE owner = who AND state = 'running' AND started_at = now AND rate_key IS NOT NULL;
    IF keys IS NULL THEN
        RETURN 0;  -- nearly always: no lock taken
    END IF;
    PERFORM pg_advisory_xact_lock(7670369553237075827);
    INSERT INTO jobrt_rate_starts (key, started_at) SELECT unnest(keys), now;
    DELETE FROM jobrt_rate_starts AS s USING jobrt_jobs AS j
    WHERE j.owner = who AND j.state = 'running' AND j.started_at = now AND j.rate_key = s.key
      AND s.started_at <= now - j.rate_period;
    RETURN jobrt_regate('{}', keys, now, channel);
END $$;

-- name: migration_9
-- `jobrt failed retry`: when an operator retried the job, until its next claim, which
-- hands it on for the events of that run.
ALTER TABLE jobrt_jobs ADD COLUMN retried_at double precision;

-- name: migration_10
-- Batches, as in the SQLite backend (its migration 12, sqlite_batches.py, batch_rules.py):
-- counts kept in step with the members' states by a row trigger (a claim, pending to
-- running, fires nothing), `due` when a member ended or came back; jobrt_batch_due then
-- enqueues the callbacks due, in the same transaction.
CREATE TABLE jobrt_batches (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text,
    queue          text             NOT NULL,
    then_job       text,
    catch_job      text,
    finally_job    text,
    allow_failures boolean          NOT NULL DEFAULT false,
    total          integer          NOT NULL DEFAULT 0,
    succeeded      integer          NOT NULL DEFAULT 0,
    failed         integer          NOT NULL DEFAULT 0,
    cancelled      integer          NOT NULL DEFAULT 0,
    failed_ids     jsonb            NOT NULL DEFAULT '[]',
    created_at     double precision NOT NULL,
    finished_at    double precision,
    cancelled_at   double precision,
    fired          integer          NOT NULL DEFAULT 0,
    due            integer          NOT NULL DEFAULT 0
);
CREATE INDEX jobrt_batches_due ON jobrt_batches (id) WHERE due <> 0;
CREATE INDEX jobrt_batches_finished ON jobrt_batches (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobrt_jobs_batch_running ON jobrt_jobs (batch_id)
    WHERE state = 'running' AND batch_id IS NOT NULL;
CREATE INDEX jobrt_jobs_batch_pending ON jobrt_jobs (batch_id)
    WHERE state = 'pending' AND batch_id IS NOT NULL;

-- Per statement, not per row: a settle of 50 members of one batch changes its row once
-- (one row updated per member made a hot row PostgreSQL had to chase through versions).
CREATE FUNCTION jobrt_batch_moved() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE jobrt_batches AS b SET total = b.total - gone.n, due = 1
        FROM (SELECT batch_id::bigint AS id, count(*) AS n FROM old_jobs
              WHERE batch_id IS NOT NULL AND state IN ('pending', 'running')
              GROUP BY 1) AS gone
        WHERE b.id = gone.id;
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM new_jobs WHERE batch_id IS NOT NULL) THEN
        RETURN NULL;  -- most statements: no member of any batch, no join
    END IF;
    UPDATE jobrt_batches AS b
    SET succeeded = b.succeeded + d.succeeded, failed = b.failed + d.failed,
        cancelled = b.cancelled + d.cancelled,
        failed_ids = CASE WHEN d.failing IS NULL AND d.back IS NULL THEN b.failed_ids
                          ELSE (SELECT coalesce(jsonb_agg(v), '[]')
                                FROM jsonb_array_elements(b.failed_ids) AS v
                                WHERE d.back IS NULL OR NOT v::bigint = ANY(d.back))
                               || coalesce(d.failing, '[]') END,
        -- due when something may fire: a failure, a member back from an end (a retry),
        -- or the last members' end; not at every member's end (the drain's hot path)
        due = CASE WHEN d.failing IS NOT NULL OR d.back IS NOT NULL
                        OR b.succeeded + b.failed + b.cancelled + d.succeeded + d.failed
                           + d.cancelled >= b.total THEN 1 ELSE b.due END
    FROM (SELECT n.batch_id::bigint AS id,
                 sum((n.state = 'succeeded')::int - (o.state = 'succeeded')::int) AS succeeded,
                 sum((n.state = 'failed')::int - (o.state = 'failed')::int) AS failed,
                 sum((n.state = 'cancelled')::int - (o.state = 'cancelled')::int) AS cancelled,
                 jsonb_agg(n.id ORDER BY n.id) FILTER (WHERE n.state = 'failed') AS failing,
                 array_agg(n.id) FILTER (WHERE o.state = 'failed') AS back
          FROM new_jobs AS n JOIN old_jobs AS o ON o.id = n.id
          WHERE n.batch_id IS NOT NULL AND o.state <> n.state
            AND (o.state IN ('succeeded', 'failed', 'cancelled')
                 OR n.state IN ('succeeded', 'failed', 'cancelled'))
          GROUP BY 1) AS d
    WHERE b.id = d.id;
    RETURN NULL;
END $$;
CREATE TRIGGER jobrt_jobs_batch_moved AFTER UPDATE ON jobrt_jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobrt_batch_moved();
CREATE TRIGGER jobrt_jobs_batch_gone AFTER DELETE ON jobrt_jobs
    REFERENCING OLD TABLE AS old_jobs FOR EACH STATEMENT EXECUTE FUNCTION jobrt_batch_moved();

-- The callbacks due of every batch marked due, in id order (batch_rules.step in PL/pgSQL).
-- SKIP LOCKED: a batch another transaction holds, it marked due itself, and it runs this
-- before it commits. Wakes the supervisors when it enqueued a callback. Returns how many.
CREATE FUNCTION jobrt_batch_due(now double precision, channel text) RETURNS integer
LANGUAGE plpgsql 
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    b jobrt_batches%ROWTYPE;
    callbacks text[];
    v_fired integer;
    v_cancel boolean;
    v_cancelled_at double precision;
    v_finished boolean;
    v_running integer;
    v_ended integer;
    v_record jsonb;
    v_keys record;
    made integer := 0;
BEGIN
    FOR b IN SELECT * FROM jobrt_batches WHERE due <> 0 ORDER BY id FOR UPDATE SKIP LOCKED LOOP
        callbacks := '{}';
        LOOP
            v_fired := b.fired;
            v_cancel := false;
            v_cancelled_at := b.cancelled_at;
            IF b.failed > 0 AND v_fired & 2 = 0 THEN
                v_fired := v_fired | 2;
                IF b.catch_job IS NOT NULL THEN
                    callbacks := callbacks || b.catch_job;
                END IF;
                IF NOT b.allow_failures AND v_cancelled_at IS NULL THEN
                    v_cancel := true;
                    v_cancelled_at := now;
                END IF;
            END IF;
            v_finished := NOT v_cancel AND b.succeeded + b.failed + b.cancelled >= b.total;
            IF v_finished AND b.failed = 0 AND b.cancelled = 0 AND v_fired & 1 = 0 THEN
                v_fired := v_fired | 1;
                IF b.then_job IS NOT NULL THEN
                    callbacks := callbacks || b.then_job;
                END IF;
            END IF;
            IF v_finished AND v_fired & 4 = 0 THEN
                v_fired := v_fired | 4;
                IF b.finally_job IS NOT NULL THEN
                    callbacks := callbacks || b.finally_job;
                END IF;
            END IF;
            UPDATE jobrt_batches AS u
            SET fired = v_fired,
                finished_at = CASE WHEN v_finished THEN coalesce(u.finished_at, now) END,
                cancelled_at = v_cancelled_at, due = 0
            WHERE u.id = b.id;
            EXIT WHEN NOT v_cancel;
            WITH gone AS (
                UPDATE jobrt_jobs SET state = 'cancelled', finished_at = now
                WHERE batch_id = b.id::text AND state = 'pending'
                RETURNING overlap_key, rate_key
            )
            SELECT array_agg(overlap_key) AS o, array_agg(rate_key) AS r INTO v_keys FROM gone;
            IF v_keys.o IS NOT NULL THEN
                PERFORM jobrt_regate(v_keys.o, v_keys.r, now, channel);
            END IF;
            SELECT * INTO b FROM jobrt_batches WHERE id = b.id;
        END LOOP;
        IF cardinality(callbacks) > 0 THEN
            SELECT * INTO b FROM jobrt_batches WHERE id = b.id;
            SELECT count(*) INTO v_running FROM jobrt_jobs
            WHERE batch_id = b.id::text AND state = 'running' AND batch_id IS NOT NULL;
            v_ended := b.succeeded + b.failed + b.cancelled;
            v_record := jsonb_build_object(
                'id', b.id, 'name', b.name, 'queue', b.queue, 'total', b.total,
                'pending', b.total - v_ended - v_running, 'running', v_running,
                'succeeded', b.succeeded, 'failed', b.failed, 'cancelled', b.cancelled,
                'progress', CASE WHEN b.total = 0 THEN 100 ELSE v_ended * 100 / b.total END,
                'created_at', b.created_at, 'finished_at', b.finished_at,
                'cancelled_at', b.cancelled_at,
                'failed_job_ids', (SELECT coalesce(jsonb_agg(v ORDER BY v::bigint), '[]')
                                   FROM jsonb_array_elements(b.failed_ids) AS v),
                'allow_failures', b.allow_failures, 'then', b.then_job, 'catch', b.catch_job,
                'finally', b.finally_job);
            INSERT INTO jobrt_jobs (queue, name, payload, available_at, created_at)
            SELECT b.queue, c.name,
                   convert_to(jsonb_build_array(jsonb_build_array(v_record), '{}'::jsonb)::text,
                              'UTF8'),
                   now, now
            FROM unnest(callbacks) WITH ORDINALITY AS c (name, ord) ORDER BY c.ord;
            made := made + cardinality(callbacks);
        END IF;
    END LOOP;
    IF made > 0 AND channel IS NOT NULL THEN
        PERFORM pg_notify(channel, '');
    END IF;
    RETURN made;
END $$;

-- name: migration_11
-- Chains, as in the SQLite backend (its migration 13, sqlite_chains.py): a row trigger
-- marks a chain due when its step ends; jobrt_chain_due (run by jobrt_batch_due, so
-- wherever batches move on) enqueues the next step, or ends the chain and enqueues catch.
ALTER TABLE jobrt_jobs ADD COLUMN chain_id bigint;
CREATE TABLE jobrt_chains (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text             NOT NULL,
    catch_job   text,
    steps       jsonb            NOT NULL,
    jobs        jsonb            NOT NULL DEFAULT '[]',
    state       text             NOT NULL DEFAULT 'running',
    created_at  double precision NOT NULL,
    finished_at double precision,
    fired       boolean          NOT NULL DEFAULT false,
    due         integer          NOT NULL DEFAULT 0
);
CREATE INDEX jobrt_chains_due ON jobrt_chains (id) WHERE due <> 0;
CREATE FUNCTION jobrt_chain_moved() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE jobrt_chains SET due = 1 WHERE id = new.chain_id;
    RETURN NULL;
END $$;
CREATE TRIGGER jobrt_jobs_chain_moved AFTER UPDATE OF state ON jobrt_jobs FOR EACH ROW
WHEN (new.chain_id IS NOT NULL AND old.state <> new.state
      AND new.state IN ('succeeded', 'failed', 'cancelled'))
EXECUTE FUNCTION jobrt_chain_moved();

-- Enqueue step `step` (a JSON array, as base.step_spec makes it) of chain `chain`,
-- through its gates like any insert; returns its job id.
CREATE FUNCTION jobrt_chain_step(chain bigint, step jsonb, now double precision, channel text)
RETURNS bigint LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    made bigint;
BEGIN
    INSERT INTO jobrt_jobs (queue, name, payload, priority, options, available_at, created_at,
                            overlap_key, rate_key, rate_max, rate_period, blocked, chain_id)
    VALUES (step ->> 0, step ->> 1, convert_to(step ->> 2, 'UTF8'), (step ->> 3)::bigint,
            CASE WHEN step -> 4 = 'null' THEN NULL ELSE convert_to(step ->> 4, 'UTF8') END,
            now + (step ->> 5)::float8, now, step ->> 6, step ->> 7, (step ->> 8)::integer,
            (step ->> 9)::float8,
            (step ->> 6 IS NOT NULL)::int + 2 * (step ->> 7 IS NOT NULL)::int, chain)
    RETURNING id INTO made;
    IF step ->> 6 IS NOT NULL OR step ->> 7 IS NOT NULL THEN
        PERFORM jobrt_regate(ARRAY[step ->> 6], ARRAY[step ->> 7], now, channel);
    END IF;
    RETURN made;
END $$;

CREATE FUNCTION jobrt_chain_due(now double precision, channel text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    c jobrt_chains%ROWTYPE;
    v_step text;
    v_state text;
    v_finished double precision;
    v_fired boolean;
    v_jobs jsonb;
    v_catch boolean;
    made integer := 0;
BEGIN
    FOR c IN SELECT * FROM jobrt_chains WHERE due <> 0 ORDER BY id FOR UPDATE SKIP LOCKED LOOP
        v_state := c.state;
        v_finished := c.finished_at;
        v_fired := c.fired;
        v_jobs := c.jobs;
        v_catch := false;
        SELECT state INTO v_step FROM jobrt_jobs WHERE id = (c.jobs ->> -1)::bigint;
        IF v_step = 'succeeded' AND jsonb_array_length(c.jobs) < jsonb_array_length(c.steps) THEN
            v_state := 'running';
            v_finished := NULL;
            v_jobs := v_jobs || to_jsonb(jobrt_chain_step(
                c.id, c.steps -> jsonb_array_length(c.jobs), now, channel));
            made := made + 1;
        ELSIF v_step = 'succeeded' THEN
            v_state := 'succeeded';
            v_finished := now;
        ELSIF v_step IN ('failed', 'cancelled') THEN
            v_state := v_step;
            v_finished := now;
            v_catch := v_step = 'failed' AND NOT c.fired AND c.catch_job IS NOT NULL;
            v_fired := c.fired OR v_step = 'failed';
        END IF;
        UPDATE jobrt_chains SET state = v_state, finished_at = v_finished, fired = v_fired,
                                jobs = v_jobs, due = 0
        WHERE id = c.id;
        IF v_catch THEN
            INSERT INTO jobrt_jobs (queue, name, payload, available_at, created_at)
            VALUES (c.queue, c.catch_job, convert_to(jsonb_build_array(jsonb_build_array(
                        jsonb_build_object(
                            'id', c.id, 'queue', c.queue, 'state', v_state,
                            'steps', (SELECT coalesce(jsonb_agg(s -> 1 ORDER BY n), '[]')
                                      FROM jsonb_array_elements(c.steps) WITH ORDINALITY AS e (s, n)),
                            'jobs', v_jobs, 'created_at', c.created_at,
                            'finished_at', v_finished, 'catch', c.catch_job)),
                        '{}'::jsonb)::text, 'UTF8'),
                    now, now);
            made := made + 1;
        END IF;
    END LOOP;
    IF made > 0 AND channel IS NOT NULL THEN
        PERFORM pg_notify(channel, '');
    END IF;
    RETURN made;
END $$;

-- name: migration_12
-- Nested workflows, as in the SQLite backend (its migration 14, sqlite_chains.py,
-- chain_rules.py): a chain as a batch's member (chain.batch_id; its steps carry the batch's
-- id), a batch as a chain's step (batch.chain_id; its end marks the chain due).
ALTER TABLE jobrt_chains ADD COLUMN batch_id bigint;
ALTER TABLE jobrt_batches ADD COLUMN chain_id bigint;
-- Finished chains are pruned with the jobs' retention, as batches are.
CREATE INDEX jobrt_chains_finished ON jobrt_chains (finished_at) WHERE finished_at IS NOT NULL;
-- A claim of a member no longer moves it out of an index of pending members: cancelling a
-- batch (rare) reads its members through its batch index instead.
DROP INDEX jobrt_jobs_batch_pending;
-- A member of a cancelled batch back in its queue (a retry, a rescue): its batch is due,
-- whose work cancels it (jobrt_workflows_due).
CREATE FUNCTION jobrt_batch_back() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_jobs WHERE batch_id IS NOT NULL AND state = 'pending') THEN
        RETURN NULL;  -- a claim, a settle of successes: nothing came back
    END IF;
    UPDATE jobrt_batches AS b SET due = 1
    FROM (SELECT DISTINCT n.batch_id::bigint AS id FROM new_jobs AS n
          JOIN old_jobs AS o ON o.id = n.id
          WHERE n.batch_id IS NOT NULL AND o.state = 'running' AND n.state = 'pending') AS back
    WHERE b.id = back.id AND b.cancelled_at IS NOT NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER jobrt_jobs_batch_back AFTER UPDATE ON jobrt_jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobrt_batch_back();
CREATE FUNCTION jobrt_batch_step_finished() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE jobrt_chains SET due = 1 WHERE id = new.chain_id;
    RETURN NULL;
END $$;
CREATE TRIGGER jobrt_batches_chain_step_finished AFTER UPDATE OF finished_at ON jobrt_batches
FOR EACH ROW WHEN (new.chain_id IS NOT NULL AND new.finished_at IS NOT NULL
                   AND old.finished_at IS NULL)
EXECUTE FUNCTION jobrt_batch_step_finished();

-- A job step (of chain `chain`, a member of batch `batch`; either may be NULL), through
-- its gates like any insert; returns its job id.
CREATE FUNCTION jobrt_chain_step(chain bigint, step jsonb, now double precision, channel text,
                                 batch bigint)
RETURNS bigint LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    made bigint;
BEGIN
    INSERT INTO jobrt_jobs (queue, name, payload, priority, options, available_at, created_at,
                            overlap_key, rate_key, rate_max, rate_period, blocked, chain_id,
                            batch_id)
    VALUES (step ->> 0, step ->> 1, convert_to(step ->> 2, 'UTF8'), (step ->> 3)::bigint,
            CASE WHEN step -> 4 = 'null' THEN NULL ELSE convert_to(step ->> 4, 'UTF8') END,
            now + (step ->> 5)::float8, now, step ->> 6, step ->> 7, (step ->> 8)::integer,
            (step ->> 9)::float8,
            (step ->> 6 IS NOT NULL)::int + 2 * (step ->> 7 IS NOT NULL)::int, chain,
            batch::text)
    RETURNING id INTO made;
    IF step ->> 6 IS NOT NULL OR step ->> 7 IS NOT NULL THEN
        PERFORM jobrt_regate(ARRAY[step ->> 6], ARRAY[step ->> 7], now, channel);
    END IF;
    RETURN made;
END $$;
DROP FUNCTION jobrt_chain_step(bigint, jsonb, double precision, text);

-- Enqueue step `spec` of chain `chain` (a member of batch `batch`, or NULL): a job, whose
-- id it returns, or a batch step ({"batch": [...], "members": [...]}, base.step_spec),
-- made with its members and due, returned as {"batch": id}.
CREATE FUNCTION jobrt_chain_enqueue(chain bigint, batch bigint, spec jsonb,
                                    now double precision, channel text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    made bigint;
    member jsonb;
BEGIN
    IF jsonb_typeof(spec) <> 'object' THEN
        RETURN to_jsonb(jobrt_chain_step(chain, spec, now, channel, batch));
    END IF;
    INSERT INTO jobrt_batches (name, queue, then_job, catch_job, finally_job, allow_failures,
                               created_at, chain_id)
    VALUES (spec #>> '{batch,1}', spec #>> '{batch,0}', spec #>> '{batch,2}',
            spec #>> '{batch,3}', spec #>> '{batch,4}', (spec #>> '{batch,5}')::boolean, now,
            chain)
    RETURNING id INTO made;
    FOR member IN SELECT m FROM jsonb_array_elements(spec -> 'members') WITH ORDINALITY AS e (m, n)
                  ORDER BY n LOOP
        PERFORM jobrt_chain_step(NULL, member, now, channel, made);
    END LOOP;
    UPDATE jobrt_batches SET total = jsonb_array_length(spec -> 'members'), due = 1
    WHERE id = made;
    RETURN jsonb_build_object('batch', made);
END $$;

-- Move on the chains marked due (chain_rules.move in PL/pgSQL); returns how many batches
-- that made or changed, whose work is due then (jobrt_workflows_due runs it).
CREATE OR REPLACE FUNCTION jobrt_chain_due(now double precision, channel text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    c jobrt_chains%ROWTYPE;
    b jobrt_batches%ROWTYPE;
    v_last jsonb;
    v_outcome text;
    v_member boolean;
    v_member_cancelled boolean;
    v_stopped boolean;
    v_left integer;
    v_state text;
    v_catch boolean;
    v_unrun integer;
    v_jobs jsonb;
    v_entry jsonb;
    touched integer := 0;
    woke boolean := false;
BEGIN
    FOR c IN SELECT * FROM jobrt_chains WHERE due <> 0 ORDER BY id FOR UPDATE SKIP LOCKED LOOP
        v_last := c.jobs -> -1;
        v_outcome := NULL;
        IF jsonb_typeof(v_last) = 'object' THEN
            SELECT * INTO b FROM jobrt_batches WHERE id = (v_last ->> 'batch')::bigint;
            IF FOUND AND b.finished_at IS NOT NULL THEN
                v_outcome := CASE WHEN b.failed > 0 THEN 'failed'
                                  WHEN b.cancelled = 0 THEN 'succeeded' ELSE 'cancelled' END;
            END IF;
        ELSE
            SELECT state INTO v_outcome FROM jobrt_jobs WHERE id = (v_last #>> '{}')::bigint;
        END IF;
        SELECT cancelled_at IS NOT NULL INTO v_member_cancelled FROM jobrt_batches
        WHERE id = c.batch_id;
        v_member := FOUND;
        v_stopped := c.state IN ('failed', 'cancelled') AND v_member;
        v_left := jsonb_array_length(c.steps) - jsonb_array_length(c.jobs);
        v_state := NULL;
        v_catch := false;
        v_unrun := 0;
        IF v_outcome = 'succeeded' AND v_left > 0 AND NOT (v_member AND v_member_cancelled) THEN
            v_state := 'running';
            IF v_stopped THEN
                v_unrun := -v_left;
            END IF;
        ELSE
            IF v_outcome = 'succeeded' AND v_left > 0 THEN
                v_outcome := 'cancelled';  -- its batch was cancelled
            END IF;
            IF v_outcome IN ('succeeded', 'failed', 'cancelled') THEN
                v_state := v_outcome;
            END IF;
            IF v_outcome IN ('failed', 'cancelled') THEN
                v_catch := v_outcome = 'failed' AND NOT c.fired AND c.catch_job IS NOT NULL;
                IF v_member AND NOT v_stopped THEN
                    v_unrun := v_left;
                END IF;
            END IF;
        END IF;
        IF v_state IS NULL THEN
            UPDATE jobrt_chains SET due = 0 WHERE id = c.id;
            CONTINUE;
        END IF;
        IF v_unrun <> 0 THEN
            UPDATE jobrt_batches SET cancelled = cancelled + v_unrun, due = 1 WHERE id = c.batch_id;
            touched := touched + 1;
        END IF;
        v_jobs := c.jobs;
        IF v_state = 'running' THEN
            v_entry := jobrt_chain_enqueue(c.id, c.batch_id,
                                           c.steps -> jsonb_array_length(c.jobs), now, channel);
            v_jobs := v_jobs || jsonb_build_array(v_entry);
            IF jsonb_typeof(v_entry) = 'object' THEN
                touched := touched + 1;
            END IF;
            woke := true;
        END IF;
        UPDATE jobrt_chains
        SET state = v_state, finished_at = CASE WHEN v_state = 'running' THEN NULL ELSE now END,
            fired = c.fired OR v_state = 'failed', jobs = v_jobs, due = 0
        WHERE id = c.id;
        IF v_catch THEN
            INSERT INTO jobrt_jobs (queue, name, payload, available_at, created_at)
            VALUES (c.queue, c.catch_job, convert_to(jsonb_build_array(jsonb_build_array(
                        jsonb_build_object(
                            'id', c.id, 'queue', c.queue, 'state', v_state,
                            'steps', (SELECT coalesce(jsonb_agg(
                                          CASE WHEN jsonb_typeof(s) = 'object'
                                               THEN jsonb_build_object(
                                                   'batch', s #> '{batch,1}',
                                                   'members', jsonb_array_length(s -> 'members'))
                                               ELSE s -> 1 END ORDER BY n), '[]')
                                      FROM jsonb_array_elements(c.steps) WITH ORDINALITY AS e (s, n)),
                            'jobs', v_jobs, 'created_at', c.created_at,
                            'finished_at', now, 'catch', c.catch_job, 'batch_id', c.batch_id)),
                        '{}'::jsonb)::text, 'UTF8'),
                    now, now);
            woke := true;
        END IF;
    END LOOP;
    IF woke AND channel IS NOT NULL THEN
        PERFORM pg_notify(channel, '');
    END IF;
    RETURN touched;
END $$;

-- The batches' callbacks due, then the chains' moves, again while those made or changed a
-- batch (the order every backend keeps).
CREATE FUNCTION jobrt_workflows_due(now double precision, channel text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    v_batch bigint;
    v_keys record;
BEGIN
    LOOP
        -- A cancelled batch's members back in their queues (a retry, a rescue; not an
        -- operator's retry of the failed ones) are cancelled.
        FOR v_batch IN SELECT id FROM jobrt_batches WHERE due <> 0 AND cancelled_at IS NOT NULL
                       ORDER BY id FOR UPDATE SKIP LOCKED LOOP
            WITH gone AS (
                UPDATE jobrt_jobs SET state = 'cancelled', finished_at = now
                WHERE batch_id = v_batch::text AND state = 'pending' AND retried_at IS NULL
                RETURNING overlap_key, rate_key
            )
            SELECT array_agg(overlap_key) AS o, array_agg(rate_key) AS r INTO v_keys FROM gone;
            IF v_keys.o IS NOT NULL THEN
                PERFORM jobrt_regate(v_keys.o, v_keys.r, now, channel);
            END IF;
        END LOOP;
        PERFORM jobrt_batch_due(now, channel);
        EXIT WHEN jobrt_chain_due(now, channel) = 0;
    END LOOP;
END $$;

-- name: migration_13
-- Schedule ticks, as in the SQLite backend (its migration 15, sqlite_ticks.py): the primary
-- key makes two supervisors' inserts of one tick one row (ON CONFLICT DO NOTHING).
CREATE TABLE jobrt_schedule_ticks (
    schedule   text             NOT NULL,
    tick_at    double precision NOT NULL,
    outcome    text             NOT NULL CHECK (outcome IN ('enqueued', 'skipped', 'missed')),
    job_id     bigint,
    missed     integer          NOT NULL DEFAULT 0,
    created_at double precision NOT NULL,
    PRIMARY KEY (schedule, tick_at)
);
CREATE INDEX jobrt_schedule_ticks_runs ON jobrt_schedule_ticks (schedule, tick_at)
    WHERE job_id IS NOT NULL;
CREATE INDEX jobrt_schedule_ticks_age ON jobrt_schedule_ticks (tick_at);

-- name: migration_14
-- The dashboard (runtime.dashboard, pgbrowse), as the SQLite backend's migration 16: its
-- lists page by id through an index each (a queue's, a job name's, a batch's jobs: written
-- when a job is inserted or deleted, never when its state changes; the failed and
-- cancelled jobs: written when a job ends so), and jobrt_job_minutes, the per-minute
-- aggregates the supervisors add to, which the charts read. The batch index gains the id
-- (a batch's members newest first) and replaces the one of migration 1.
CREATE INDEX jobrt_jobs_queue_id ON jobrt_jobs (queue, id);
CREATE INDEX jobrt_jobs_name_id ON jobrt_jobs (name, id);
CREATE INDEX jobrt_jobs_listed ON jobrt_jobs (state, id) WHERE state IN ('failed', 'cancelled');
CREATE INDEX jobrt_jobs_batch_id ON jobrt_jobs (batch_id, id) WHERE batch_id IS NOT NULL;
DROP INDEX jobrt_jobs_batch;
CREATE TABLE jobrt_job_minutes (
    minute      bigint           NOT NULL,
    queue       text             NOT NULL,
    name        text             NOT NULL,
    runs        bigint           NOT NULL DEFAULT 0,
    succeeded   bigint           NOT NULL DEFAULT 0,
    failed      bigint           NOT NULL DEFAULT 0,
    runtime_sum double precision NOT NULL DEFAULT 0,
    runtime_max double precision NOT NULL DEFAULT 0,
    waits       bigint           NOT NULL DEFAULT 0,
    wait_sum    double precision NOT NULL DEFAULT 0,
    wait_max    double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue, name)
);
-- The same added up per hour (`minute`: the hour's start), written with them: the charts of
-- a week read these, some thousand rows, not the minutes' ten thousands.
CREATE TABLE jobrt_job_hours (LIKE jobrt_job_minutes INCLUDING ALL);

-- name: migration_15
-- Operators' requests and job tags, as the SQLite backend's migration 17 (pgops): a row per
-- paused queue, the latest restart request, and a row per (tag, job) that enqueue writes
-- with a tagged job (a job without tags writes none). A deleted job's tags go with it
-- (the foreign key's cascade: one probe of jobrt_job_tags_job per deleted job).
CREATE TABLE jobrt_paused_queues (
    queue     text PRIMARY KEY,
    paused_at double precision NOT NULL
);
CREATE TABLE jobrt_restart_requests (
    id           integer PRIMARY KEY CHECK (id = 1),
    generation   bigint           NOT NULL,
    requested_at double precision NOT NULL
);
CREATE TABLE jobrt_job_tags (
    tag    text   NOT NULL,
    job_id bigint NOT NULL REFERENCES jobrt_jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (tag, job_id)
);
CREATE INDEX jobrt_job_tags_job ON jobrt_job_tags (job_id);

-- name: migration_16
-- Autovacuum of the jobs table after a fixed number of dead rows, not after a fifth of
-- the table. Each claim and each settle leaves a dead row version, and the claimed job's
-- entry stays in jobrt_jobs_claim, ahead of every pending job, until a vacuum removes it:
-- each claim walks past all of them (about 4 ns each, 75 us per claimed job with a million
-- measured by benchmarks/claim_scale.py). With jobs kept for retention the table is large,
-- and the default (50 + 20 % of its rows) let a table of a million ended jobs gather 200k
-- dead rows (100k claim entries) before a vacuum: +7 us per claimed job. 20,000 is about
-- 10,000 jobs; each autovacuum round (once a minute by default) clears what the minute
-- before left.
ALTER TABLE jobrt_jobs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000);

-- name: migration_17
-- Chain steps carry their tags: a job step's spec (workflows.step_spec) holds them as its
-- 11th element when it has any; a step is enqueued with them, in the same statement's
-- transaction. Specs stored before this have 10 elements: no tags.
CREATE OR REPLACE FUNCTION jobrt_chain_step(chain bigint, step jsonb, now double precision,
                                            channel text, batch bigint)
RETURNS bigint LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    made bigint;
BEGIN
    INSERT INTO jobrt_jobs (queue, name, payload, priority, options, available_at, created_at,
                            overlap_key, rate_key, rate_max, rate_period, blocked, chain_id,
                            batch_id)
    VALUES (step ->> 0, step ->> 1, convert_to(step ->> 2, 'UTF8'), (step ->> 3)::bigint,
            CASE WHEN step -> 4 = 'null' THEN NULL ELSE convert_to(step ->> 4, 'UTF8') END,
            now + (step ->> 5)::float8, now, step ->> 6, step ->> 7, (step ->> 8)::integer,
            (step ->> 9)::float8,
            (step ->> 6 IS NOT NULL)::int + 2 * (step ->> 7 IS NOT NULL)::int, chain,
            batch::text)
    RETURNING id INTO made;
    IF jsonb_typeof(step -> 10) = 'array' THEN
        INSERT INTO jobrt_job_tags (tag, job_id)
        SELECT tag, made FROM jsonb_array_elements_text(step -> 10) AS t (tag)
        ON CONFLICT DO NOTHING;
    END IF;
    IF step ->> 6 IS NOT NULL OR step ->> 7 IS NOT NULL THEN
        PERFORM jobrt_regate(ARRAY[step ->> 6], ARRAY[step ->> 7], now, channel);
    END IF;
    RETURN made;
END $$;

-- name: schema_version
SELECT coalesce(max(version), 0) FROM jobrt_migrations;

-- name: migration_lock
-- Held until the migrating transaction ends: of two supervisors starting at
-- once, the second waits here, then finds the schema current.
SELECT pg_advisory_xact_lock(%(key)s);

-- name: migrations_table
CREATE TABLE IF NOT EXISTS jobrt_migrations (
    version    integer PRIMARY KEY,
    applied_at double precision NOT NULL
);

-- name: record_migration
INSERT INTO jobrt_migrations (version, applied_at) VALUES (%(version)s, %(at)s);

-- name: whereami
SELECT current_database(), coalesce(current_schema(), '');

-- name: clock
-- The server's time now (not the transaction's start), as epoch seconds.
SELECT extract(epoch FROM clock_timestamp())::double precision;

-- name: insert_jobs
-- Rows are inserted in batch order, so identity values rise in batch order.
INSERT INTO jobrt_jobs (queue, name, payload, priority, options, available_at, created_at,
                        unique_key, batch_id)
SELECT queue, name, payload, priority, options, available_at, %(now)s, unique_key, batch_id
FROM unnest(%(queue)s::text[], %(name)s::text[], %(payload)s::bytea[], %(priority)s::bigint[],
            %(options)s::bytea[], %(available_at)s::float8[], %(unique_key)s::text[],
            %(batch_id)s::text[])
     WITH ORDINALITY AS new (queue, name, payload, priority, options, available_at, unique_key,
                             batch_id, ord)
ORDER BY ord
RETURNING id;

-- name: insert_gated_jobs
-- A batch with gates and no unique keys, after gate_lock (so what it reads is settled): a
-- job is let through at once where nothing else is at its gate (no live job with its
-- overlap key, and it is the batch's first with that key; its rate key has no job let
-- through, is not parked, has a free slot, and it is the batch's first with that key),
-- else held back, and the caller has jobrt_regate sort out the turns of those.
INSERT INTO jobrt_jobs (queue, name, payload, priority, options, available_at, created_at,
                        unique_key, batch_id, overlap_key, rate_key, rate_max, rate_period,
                        blocked)
SELECT queue, name, payload, priority, options, available_at, %(now)s, NULL, batch_id,
       overlap_key, rate_key, rate_max, rate_period,
       (overlap_key IS NOT NULL
        AND (first_overlap > 1
             OR EXISTS (SELECT 1 FROM jobrt_jobs AS j
                        WHERE j.overlap_key = new.overlap_key
                          AND j.state IN ('pending', 'running') AND j.blocked & 1 = 0)))::int
       + 2 * (rate_key IS NOT NULL
              AND (overlap_key IS NOT NULL OR first_rate > 1
                   OR EXISTS (SELECT 1 FROM jobrt_jobs AS j
                              WHERE j.rate_key = new.rate_key AND j.state = 'pending'
                                AND j.rate_key IS NOT NULL AND j.blocked & 2 = 0)
                   OR EXISTS (SELECT 1 FROM jobrt_rate_parked AS p WHERE p.key = new.rate_key)
                   OR (SELECT count(*) FROM jobrt_rate_starts AS s
                       WHERE s.key = new.rate_key
                         AND s.started_at > %(now)s - new.rate_period) >= new.rate_max))::int
FROM (SELECT given.*,
             row_number() OVER (PARTITION BY overlap_key ORDER BY available_at, ord)
                 AS first_overlap,
             row_number() OVER (PARTITION BY rate_key ORDER BY available_at, ord) AS first_rate
      FROM unnest(%(queue)s::text[], %(name)s::text[], %(payload)s::bytea[],
                  %(priority)s::bigint[], %(options)s::bytea[], %(available_at)s::float8[],
                  %(batch_id)s::text[], %(overlap_key)s::text[], %(rate_key)s::text[],
                  %(rate_max)s::integer[], %(rate_period)s::float8[])
           WITH ORDINALITY AS given (queue, name, payload, priority, options, available_at,
                                     batch_id, overlap_key, rate_key, rate_max, rate_period,
                                     ord)) AS new
ORDER BY ord
RETURNING id, blocked, overlap_key, rate_key;

-- name: insert_unique
-- DO NOTHING covers a race with another client inserting the same key; the
-- caller then looks the winner up.
INSERT INTO jobrt_jobs (queue, name, payload, priority, options, available_at, created_at,
                        unique_key, batch_id, unique_expires, unique_at_start, overlap_key,
                        rate_key, rate_max, rate_period, blocked)
VALUES (%(queue)s, %(name)s, %(payload)s, %(priority)s, %(options)s, %(available_at)s, %(now)s,
        %(unique_key)s, %(batch_id)s, %(unique_expires)s, %(unique_at_start)s,
        %(overlap_key)s, %(rate_key)s, %(rate_max)s, %(rate_period)s,
        (%(overlap_key)s::text IS NOT NULL)::int + 2 * (%(rate_key)s::text IS NOT NULL)::int)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('pending', 'running')
DO NOTHING
RETURNING id;

-- name: expire_unique
-- unique_for ran out: the live job keeps running, its key is free for a new one.
UPDATE jobrt_jobs SET unique_key = NULL
WHERE unique_key = %(key)s AND unique_expires <= %(now)s AND state IN ('pending', 'running');

-- name: expire_unique_keys
UPDATE jobrt_jobs SET unique_key = NULL
WHERE unique_key = ANY(%(keys)s) AND unique_expires <= %(now)s AND state IN ('pending', 'running');

-- name: live_unique_keys
SELECT unique_key, id FROM jobrt_jobs
WHERE unique_key = ANY(%(keys)s) AND state IN ('pending', 'running');

-- name: insert_keyed
-- Jobs without keys and with new keys (the caller left out the live ones), in batch
-- order: DO NOTHING covers a race with another client inserting one of the keys, whose
-- winner the caller then looks up.
INSERT INTO jobrt_jobs (queue, name, payload, priority, options, available_at, created_at,
                        unique_key, batch_id, unique_expires, unique_at_start, overlap_key,
                        rate_key, rate_max, rate_period, blocked)
SELECT queue, name, payload, priority, options, available_at, %(now)s, unique_key, batch_id,
       unique_expires, unique_at_start, overlap_key, rate_key, rate_max, rate_period,
       (overlap_key IS NOT NULL)::int + 2 * (rate_key IS NOT NULL)::int
FROM unnest(%(queue)s::text[], %(name)s::text[], %(payload)s::bytea[], %(priority)s::bigint[],
            %(options)s::bytea[], %(available_at)s::float8[], %(unique_key)s::text[],
            %(batch_id)s::text[], %(unique_expires)s::float8[], %(unique_at_start)s::boolean[],
            %(overlap_key)s::text[], %(rate_key)s::text[], %(rate_max)s::integer[],
            %(rate_period)s::float8[])
     WITH ORDINALITY AS new (queue, name, payload, priority, options, available_at, unique_key,
                             batch_id, unique_expires, unique_at_start, overlap_key, rate_key,
                             rate_max, rate_period, ord)
ORDER BY ord
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('pending', 'running')
DO NOTHING
RETURNING unique_key, id;

-- name: find_unique
SELECT id FROM jobrt_jobs
WHERE unique_key = %(key)s AND unique_key IS NOT NULL AND state IN ('pending', 'running');

-- name: regate
SELECT jobrt_regate(%(overlap_keys)s::text[], %(rate_keys)s::text[], %(now)s, %(channel)s);

-- name: reopen
SELECT jobrt_reopen(%(now)s, %(channel)s);

-- name: started
SELECT jobrt_started(%(owner)s, %(now)s, %(channel)s);

-- name: gate_lock
-- Admin verbs that move gated jobs take the gates' lock before any job row (a claim
-- takes rows first, then the lock; the gates skip a row being claimed, never wait).
SELECT pg_advisory_xact_lock(7670369553237075827);

-- name: batch_due
-- The batches' callbacks due, then the chains' moves (the order every backend keeps).
SELECT jobrt_workflows_due(%(now)s, %(channel)s);

-- name: insert_batch
INSERT INTO jobrt_batches (name, queue, then_job, catch_job, finally_job, allow_failures,
                           created_at)
VALUES (%(name)s, %(queue)s, %(then)s, %(catch)s, %(finally)s, %(allow_failures)s, %(now)s)
RETURNING id;

-- name: batch_grew
-- The members made (a job whose unique key a live job held is not) and the steps of the
-- chains among them, then the batch due.
UPDATE jobrt_batches
SET total = total + %(steps)s + (SELECT count(*) FROM jobrt_jobs
                                 WHERE id = ANY(%(ids)s::bigint[]) AND batch_id = %(batch)s::text
                                   AND xmin = pg_current_xact_id()::xid),  -- made now
    due = 1
WHERE id = %(batch)s;

-- name: batch_open
SELECT 1 FROM jobrt_batches WHERE id = %(batch)s AND finished_at IS NULL FOR UPDATE;

-- name: batch_row
SELECT * FROM jobrt_batches WHERE id = %(batch)s;

-- name: batch_rows
SELECT * FROM jobrt_batches ORDER BY id DESC LIMIT %(limit)s;

-- name: batch_running
SELECT count(*) FROM jobrt_jobs
WHERE batch_id = %(batch)s::text AND state = 'running' AND batch_id IS NOT NULL;

-- name: batch_cancel
-- The state before (NULL: no batch); an open batch's pending members are cancelled and
-- jobrt_batch_due (next) enqueues what that makes due.
WITH found AS (SELECT id, finished_at FROM jobrt_batches WHERE id = %(batch)s FOR UPDATE),
marked AS (
    UPDATE jobrt_batches AS b SET cancelled_at = coalesce(b.cancelled_at, %(now)s), due = 1
    FROM found WHERE b.id = found.id AND found.finished_at IS NULL
)
SELECT finished_at IS NULL FROM found;

-- name: batch_kill_members
-- Its running members are asked to stop: their supervisors kill them, and they end cancelled.
UPDATE jobrt_jobs SET cancel_requested = %(now)s
WHERE batch_id = %(batch)s::text AND state = 'running';

-- name: batch_cancel_members
WITH gone AS (
    UPDATE jobrt_jobs SET state = 'cancelled', finished_at = %(now)s
    WHERE batch_id = %(batch)s::text AND state = 'pending'
    RETURNING overlap_key, rate_key
)
SELECT jobrt_regate(array_agg(overlap_key), array_agg(rate_key), %(now)s, %(channel)s)
FROM gone;

-- name: prune_batches
DELETE FROM jobrt_batches
WHERE id IN (SELECT id FROM jobrt_batches
             WHERE finished_at IS NOT NULL AND finished_at < %(before)s
             ORDER BY finished_at, id LIMIT %(limit)s);

-- name: prune_chains
DELETE FROM jobrt_chains
WHERE id IN (SELECT id FROM jobrt_chains
             WHERE finished_at IS NOT NULL AND finished_at < %(before)s
             ORDER BY finished_at, id LIMIT %(limit)s);

-- name: insert_chain
INSERT INTO jobrt_chains (queue, catch_job, steps, created_at, batch_id)
VALUES (%(queue)s, %(catch)s, %(steps)s::jsonb, %(now)s, %(batch)s)
RETURNING id;

-- name: chain_first
-- Its first step: a job's id, or {"batch": id} when it is a batch.
UPDATE jobrt_chains
SET jobs = jsonb_build_array(jobrt_chain_enqueue(id, batch_id, steps -> 0, %(now)s, %(channel)s))
WHERE id = %(chain)s
RETURNING jobs -> 0;

-- name: chain_row
SELECT * FROM jobrt_chains WHERE id = %(chain)s;

-- name: tick_lock
-- The ticks of one schedule, one transaction at a time (taken in name order): a skip then
-- sees the previous tick's job, even one a transaction that began earlier enqueues.
SELECT pg_advisory_xact_lock(hashtextextended('jobrt_tick:' || %(schedule)s, 0));

-- name: insert_tick
INSERT INTO jobrt_schedule_ticks (schedule, tick_at, outcome, missed, created_at)
VALUES (%(schedule)s, %(tick_at)s, %(outcome)s, %(missed)s, %(now)s)
ON CONFLICT (schedule, tick_at) DO NOTHING
RETURNING 1;

-- name: tick_job
UPDATE jobrt_schedule_ticks SET job_id = %(job_id)s
WHERE schedule = %(schedule)s AND tick_at = %(tick_at)s;

-- name: tick_previous_state
SELECT state FROM jobrt_jobs
WHERE id = (SELECT job_id FROM jobrt_schedule_ticks
            WHERE schedule = %(schedule)s AND tick_at < %(tick_at)s AND job_id IS NOT NULL
            ORDER BY tick_at DESC LIMIT 1);

-- name: last_tick
SELECT t.schedule, t.tick_at, t.outcome, t.job_id, t.missed, t.created_at, j.state
FROM jobrt_schedule_ticks AS t LEFT JOIN jobrt_jobs AS j ON j.id = t.job_id
WHERE t.schedule = %(schedule)s
ORDER BY t.tick_at DESC LIMIT 1;

-- name: prune_ticks
-- As the SQLite backend's: each schedule keeps its newest row and its newest row with a job.
DELETE FROM jobrt_schedule_ticks
WHERE (schedule, tick_at) IN (
    SELECT t.schedule, t.tick_at FROM jobrt_schedule_ticks AS t
    WHERE t.tick_at < %(before)s
      AND (EXISTS (SELECT 1 FROM jobrt_schedule_ticks AS n
                   WHERE n.schedule = t.schedule AND n.tick_at > t.tick_at
                     AND n.job_id IS NOT NULL)
           OR (t.job_id IS NULL
               AND EXISTS (SELECT 1 FROM jobrt_schedule_ticks AS n
                           WHERE n.schedule = t.schedule AND n.tick_at > t.tick_at)))
    ORDER BY t.tick_at, t.schedule COLLATE "C"
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED);

-- name: wake
-- Delivered to every LISTENing supervisor when the enqueue commits, never before.
SELECT pg_notify(%(channel)s, '');

-- name: settle_succeeded
-- Fenced by (id, attempt, owner, running); the caller sends each (id, attempt) once.
UPDATE jobrt_jobs AS j
SET state = 'succeeded', result = o.result, finished_at = o.at, owner = NULL,
    lease_expires = NULL, error = NULL, traceback = NULL
FROM unnest(%(id)s::bigint[], %(attempt)s::integer[], %(result)s::bytea[], %(at)s::float8[])
     AS o (id, attempt, result, at)
WHERE j.id = o.id AND j.attempts = o.attempt AND j.owner = %(owner)s AND j.state = 'running';

-- name: settle_failed
-- With the failure hooks (`@fn.on_failure`) of the jobs it failed: each a job of its own,
-- made in this statement, so exactly once; its one argument is the failed job's record.
WITH failed AS (
    UPDATE jobrt_jobs AS j
    SET state = 'failed', error = o.error, traceback = o.traceback, finished_at = o.at,
        owner = NULL, lease_expires = NULL, exceptions = j.exceptions + o.exception
    FROM unnest(%(id)s::bigint[], %(attempt)s::integer[], %(error)s::text[],
                %(traceback)s::text[], %(at)s::float8[], %(exception)s::integer[])
         AS o (id, attempt, error, traceback, at, exception)
    WHERE j.id = o.id AND j.attempts = o.attempt AND j.owner = %(owner)s AND j.state = 'running'
    RETURNING j.id, j.queue, j.name, j.payload, j.priority, j.options, j.attempts, j.error,
              o.at
),
hooked AS (
    SELECT f.*, convert_from(f.options, 'UTF8')::jsonb AS opts FROM failed AS f
    WHERE f.options IS NOT NULL
),
hooks AS (
INSERT INTO jobrt_jobs (queue, name, payload, priority, options, available_at, created_at)
SELECT queue, opts ->> 'on_failure',
       convert_to(jsonb_build_array(jsonb_build_array(jsonb_build_object(
           'id', id, 'name', name, 'queue', queue,
           'args', convert_from(payload, 'UTF8')::jsonb -> 0,
           'kwargs', convert_from(payload, 'UTF8')::jsonb -> 1,
           'attempts', attempts, 'error', error)), '{}'::jsonb)::text, 'UTF8'),
       priority, convert_to(jsonb_build_object('tries', 1, 'timeout', opts -> 'timeout')::text, 'UTF8'),
       at, at
FROM hooked WHERE opts ? 'on_failure'
ORDER BY id  -- the hooks' ids in the order of their jobs', as in every backend
RETURNING 1
)
SELECT count(*) FROM failed;  -- the outcomes it settled (the others were stale)

-- name: settle_pending
UPDATE jobrt_jobs AS j
SET state = CASE WHEN j.cancel_requested IS NULL THEN 'pending' ELSE 'cancelled' END,
    finished_at = CASE WHEN j.cancel_requested IS NULL THEN NULL ELSE o.at END,
    available_at = o.available_at, error = o.error, traceback = o.traceback,
    owner = NULL, lease_expires = NULL, attempts = j.attempts - o.undo,
    exceptions = j.exceptions + o.exception,
    blocked = (j.overlap_key IS NOT NULL)::int + 2 * (j.rate_key IS NOT NULL)::int
FROM unnest(%(id)s::bigint[], %(attempt)s::integer[], %(available_at)s::float8[],
            %(error)s::text[], %(traceback)s::text[], %(undo)s::integer[],
            %(exception)s::integer[], %(at)s::float8[])
     AS o (id, attempt, available_at, error, traceback, undo, exception, at)
WHERE j.id = o.id AND j.attempts = o.attempt AND j.owner = %(owner)s AND j.state = 'running';

-- name: settle_cancelled
UPDATE jobrt_jobs AS j
SET state = 'cancelled', error = o.error, finished_at = o.at, owner = NULL,
    lease_expires = NULL
FROM unnest(%(id)s::bigint[], %(attempt)s::integer[], %(error)s::text[], %(at)s::float8[])
     AS o (id, attempt, error, at)
WHERE j.id = o.id AND j.attempts = o.attempt AND j.owner = %(owner)s AND j.state = 'running';

-- name: claim
-- Queues in strict order: the lateral subquery runs once per queue, in array
-- order, and the outer LIMIT stops pulling rows once `limit` are picked, so a
-- later queue is read (and its rows locked) only while earlier ones fall short.
-- SKIP LOCKED: a job another supervisor is claiming right now is passed over,
-- never waited for nor taken twice. MATERIALIZED: the pick runs exactly once.
WITH picked AS MATERIALIZED (
    SELECT due.id, q.ord
    FROM unnest(%(queues)s::text[]) WITH ORDINALITY AS q (name, ord)
    CROSS JOIN LATERAL (
        SELECT id FROM jobrt_jobs
        -- blocked <= 0: only jobrt_jobs_claim answers it (see migration 8)
        WHERE state = 'pending' AND blocked <= 0 AND queue = q.name
          AND available_at <= %(now)s
        ORDER BY priority DESC, available_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS due
    LIMIT %(limit)s
)
UPDATE jobrt_jobs AS j
SET state = 'running', owner = %(owner)s, lease_expires = %(lease_expires)s,
    attempts = j.attempts + 1, started_at = %(now)s,
    unique_key = CASE WHEN j.unique_at_start THEN NULL ELSE j.unique_key END,
    retried_at = NULL
FROM picked, jobrt_jobs AS before  -- before: the row as it was, for its retried_at
WHERE j.id = picked.id AND before.id = picked.id
RETURNING j.id, j.queue, j.name, j.payload, j.attempts, j.options,
          picked.ord, j.priority, j.available_at, j.exceptions, j.overlap_key, j.rate_key,
          before.retried_at, j.batch_id, j.chain_id;

-- name: next_due
SELECT min(due.at)
FROM unnest(%(queues)s::text[]) AS q (name)
CROSS JOIN LATERAL (SELECT least((SELECT min(available_at) FROM jobrt_jobs
                                   WHERE state = 'pending' AND blocked = 0 AND queue = q.name),
                                  (SELECT min(opens_at) FROM jobrt_rate_parked
                                   WHERE queue = q.name)) AS at) AS due;

-- name: oldest_pending
-- The first available_at of each queue that has pending jobs (one probe each in
-- jobrt_jobs_due), the least of those, if it is due.
SELECT min(first.at)
FROM (SELECT queue FROM jobrt_count_rows WHERE level = 2
      GROUP BY queue HAVING sum(n) > 0) AS q
CROSS JOIN LATERAL (SELECT least((SELECT min(available_at) FROM jobrt_jobs
                                   WHERE state = 'pending' AND blocked = 0 AND queue = q.queue),
                                  -- jobs waiting at a gate wait too
                                  (SELECT min(available_at) FROM jobrt_jobs
                                   WHERE state = 'pending' AND blocked <> 0
                                     AND queue = q.queue)) AS at) AS first
WHERE first.at <= %(now)s;

-- name: pending_by_queue_and_name
SELECT queue, name, sum(n)::bigint FROM jobrt_count_rows WHERE level = 2
GROUP BY queue, name HAVING sum(n) > 0;

-- name: upsert_supervisor
INSERT INTO jobrt_supervisors (owner, host, pid, started_at, heartbeat_at, info)
VALUES (%(owner)s, %(host)s, %(pid)s, %(started_at)s, %(now)s, %(info)s)
ON CONFLICT (owner) DO UPDATE
SET host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at, info = excluded.info;

-- name: renew_leases
UPDATE jobrt_jobs SET lease_expires = %(lease_expires)s
WHERE owner = %(owner)s AND state = 'running';

-- name: renew_held_leases
UPDATE jobrt_jobs SET lease_expires = %(lease_expires)s
WHERE owner = %(owner)s AND state = 'running' AND id = ANY(%(held)s::bigint[]);

-- name: supervisors
SELECT owner, host, pid, started_at, heartbeat_at, info FROM jobrt_supervisors
ORDER BY started_at, owner;

-- name: remove_supervisor
DELETE FROM jobrt_supervisors WHERE owner = %(owner)s;

-- name: rescue_owner
-- A job asked to cancel while it ran is cancelled instead of put back (and in
-- rescue_expired and settle_pending).
-- Returns how many jobs it moved and the gate keys among them.
WITH moved AS (
    UPDATE jobrt_jobs
    SET state = CASE WHEN cancel_requested IS NULL THEN 'pending' ELSE 'cancelled' END,
        finished_at = CASE WHEN cancel_requested IS NULL THEN NULL ELSE %(now)s END,
        owner = NULL, lease_expires = NULL, traceback = NULL,
        error = 'its supervisor ' || owner || ' died; returned to the queue',
        blocked = (overlap_key IS NOT NULL)::int + 2 * (rate_key IS NOT NULL)::int
    WHERE owner = %(owner)s AND state = 'running'
    RETURNING overlap_key, rate_key
)
SELECT count(*), array_agg(DISTINCT overlap_key) FILTER (WHERE overlap_key IS NOT NULL),
       array_agg(DISTINCT rate_key) FILTER (WHERE rate_key IS NOT NULL)
FROM moved;

-- name: rescue_expired
-- Returns how many jobs it moved and the gate keys among them.
WITH moved AS (
    UPDATE jobrt_jobs
    SET state = CASE WHEN cancel_requested IS NULL THEN 'pending' ELSE 'cancelled' END,
        finished_at = CASE WHEN cancel_requested IS NULL THEN NULL ELSE %(now)s END,
        owner = NULL, lease_expires = NULL, traceback = NULL,
        error = 'lease expired: its supervisor ' || owner
                || ' stopped renewing it; returned to the queue',
        blocked = (overlap_key IS NOT NULL)::int + 2 * (rate_key IS NOT NULL)::int
    WHERE lease_expires < %(now)s AND state = 'running'
    RETURNING overlap_key, rate_key
)
SELECT count(*), array_agg(DISTINCT overlap_key) FILTER (WHERE overlap_key IS NOT NULL),
       array_agg(DISTINCT rate_key) FILTER (WHERE rate_key IS NOT NULL)
FROM moved;

-- name: get
SELECT * FROM jobrt_jobs WHERE id = %(id)s;

-- name: counts
-- From the counts (migration 4), (queue, bucket, n) rows to add up: a bucket is a state
-- (pending: due and delayed jobs) or 'delayed': the delayed jobs of the later slots of
-- each level, and those in the rest of now's 16 s slot, counted in jobrt_jobs_due.
-- s0, s1, s2 are now's slots.
WITH b AS (
    SELECT now, floor(now / 16) AS s0, floor(now / 4096) AS s1, floor(now / 1048576) AS s2
    FROM (SELECT %(now)s::float8 AS now) AS given
),
pending AS (
    SELECT queue, sum(n)::bigint AS n FROM jobrt_count_rows WHERE level = 2 GROUP BY queue
)
SELECT queue, state, n FROM jobrt_count_rows WHERE level = -1
UNION ALL
SELECT queue, 'pending', n FROM pending
UNION ALL
SELECT c.queue, 'delayed', c.n FROM jobrt_count_rows AS c, b
WHERE c.level = 0 AND c.slot > b.s0 AND c.slot < (b.s1 + 1) * 256
UNION ALL
SELECT c.queue, 'delayed', c.n FROM jobrt_count_rows AS c, b
WHERE c.level = 1 AND c.slot > b.s1 AND c.slot < (b.s2 + 1) * 256
UNION ALL
SELECT c.queue, 'delayed', c.n FROM jobrt_count_rows AS c, b
WHERE c.level = 2 AND c.slot > b.s2
UNION ALL
SELECT q.queue, 'delayed',
       (SELECT count(*) FROM jobrt_jobs
        WHERE state = 'pending' AND blocked = 0 AND queue = q.queue
          AND available_at > b.now AND available_at < (b.s0 + 1) * 16)
       + (SELECT count(*) FROM jobrt_jobs
          WHERE state = 'pending' AND blocked <> 0 AND queue = q.queue
            AND available_at > b.now AND available_at < (b.s0 + 1) * 16)
FROM pending AS q, b WHERE q.n > 0;

-- name: fold_counts
-- Up to `limit` changes the triggers wrote, summed into jobrt_counts; returns how
-- many. One folder at a time (the others skip: their turn comes at their next
-- heartbeat), so it never waits: changes are only ever inserted by anyone else, and
-- are not seen before they commit.
WITH turn AS (
    SELECT pg_try_advisory_xact_lock(%(lock)s) AS mine
),
moved AS (
    DELETE FROM jobrt_count_changes
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM jobrt_count_changes
                           WHERE (SELECT mine FROM turn) LIMIT %(limit)s))
    RETURNING level, slot, state, queue, name, n
),
folded AS (
    INSERT INTO jobrt_counts AS c (level, slot, state, queue, name, n)
    SELECT level, slot, state, queue, name, sum(n) FROM moved
    GROUP BY level, slot, state, queue, name
    HAVING sum(n) <> 0
    ON CONFLICT (level, slot, state, queue, name) DO UPDATE SET n = c.n + excluded.n
)
SELECT count(*) FROM moved;

-- name: forget_zero_counts
-- Keys whose jobs all left (past slots, emptied queues), found in jobrt_counts_zero;
-- by the folder only (the lock is its own already), after its fold.
DELETE FROM jobrt_counts WHERE n = 0 AND (SELECT pg_try_advisory_xact_lock(%(lock)s));

-- name: failed
SELECT * FROM jobrt_jobs WHERE state = 'failed' ORDER BY finished_at DESC, id DESC
LIMIT %(limit)s;

-- name: retry_failed
-- A failed job whose unique key a live job holds stays failed; of several
-- failed jobs sharing a key, the oldest (lowest id) comes back.
-- Returns how many jobs it moved and the gate keys among them.
WITH moved AS (
    UPDATE jobrt_jobs
    SET state = 'pending', attempts = 0, available_at = %(now)s, owner = NULL,
        lease_expires = NULL, finished_at = NULL, cancel_requested = NULL,
        retried_at = %(now)s,
        blocked = (overlap_key IS NOT NULL)::int + 2 * (rate_key IS NOT NULL)::int
    WHERE id IN (
        SELECT DISTINCT ON (f.unique_key, CASE WHEN f.unique_key IS NULL THEN f.id END) f.id
        FROM jobrt_jobs AS f
        WHERE f.state = 'failed' AND (%(all)s OR f.id = ANY(%(ids)s::bigint[]))
          AND NOT EXISTS (SELECT 1 FROM jobrt_jobs AS live
                          WHERE live.unique_key = f.unique_key
                            AND live.state IN ('pending', 'running'))
        ORDER BY f.unique_key, CASE WHEN f.unique_key IS NULL THEN f.id END, f.id
    )
    RETURNING overlap_key, rate_key
)
SELECT count(*), array_agg(DISTINCT overlap_key) FILTER (WHERE overlap_key IS NOT NULL),
       array_agg(DISTINCT rate_key) FILTER (WHERE rate_key IS NOT NULL)
FROM moved;

-- name: forget
DELETE FROM jobrt_jobs WHERE id = %(id)s AND state = 'failed';

-- name: flush_failed
DELETE FROM jobrt_jobs WHERE state = 'failed';

-- name: cancel
-- The state before: a pending job is cancelled, a running one marked for its supervisor
-- (FOR UPDATE: a claim or a settle of it waits, or is waited for), an ended one left.
WITH found AS (SELECT id, state FROM jobrt_jobs WHERE id = %(id)s FOR UPDATE),
changed AS (
    UPDATE jobrt_jobs AS j
    SET state = CASE WHEN found.state = 'pending' THEN 'cancelled' ELSE j.state END,
        finished_at = CASE WHEN found.state = 'pending' THEN %(now)s ELSE j.finished_at END,
        cancel_requested = %(now)s
    FROM found WHERE j.id = found.id AND found.state IN ('pending', 'running')
    RETURNING j.overlap_key, j.rate_key
)
SELECT found.state, changed.overlap_key, changed.rate_key
FROM found LEFT JOIN changed ON found.state = 'pending';

-- name: cancel_requests
SELECT id, attempts FROM jobrt_jobs
WHERE owner = %(owner)s AND state = 'running' AND cancel_requested IS NOT NULL;

-- name: clear
-- Returns how many jobs it moved and the gate keys among them.
WITH moved AS (
    DELETE FROM jobrt_jobs WHERE queue = %(queue)s AND state = 'pending'
    RETURNING overlap_key, rate_key
)
SELECT count(*), array_agg(DISTINCT overlap_key) FILTER (WHERE overlap_key IS NOT NULL),
       array_agg(DISTINCT rate_key) FILTER (WHERE rate_key IS NOT NULL)
FROM moved;

-- name: count_states
SELECT state, count(*) FROM jobrt_jobs WHERE id = ANY(%(ids)s::bigint[]) GROUP BY state;

-- name: delete_jobs
-- Running jobs stay: their supervisor settles them (runtime.storage.job_sets). Returns how
-- many it deleted and the gate keys of the pending ones among them.
WITH moved AS (
    DELETE FROM jobrt_jobs WHERE id = ANY(%(ids)s::bigint[]) AND state <> 'running'
    RETURNING state, overlap_key, rate_key
)
SELECT count(*),
       array_agg(DISTINCT overlap_key) FILTER (WHERE overlap_key IS NOT NULL AND state = 'pending'),
       array_agg(DISTINCT rate_key) FILTER (WHERE rate_key IS NOT NULL AND state = 'pending')
FROM moved;

-- name: prune
-- SKIP LOCKED: a row that `failed retry` is bringing back right now is left for
-- the next call, never waited for; FOR UPDATE re-checks the state once locked.
DELETE FROM jobrt_jobs
WHERE id IN (SELECT id FROM jobrt_jobs
             WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at < %(before)s
             ORDER BY finished_at, id
             LIMIT %(limit)s
             FOR UPDATE SKIP LOCKED);

-- name: jobs_page_listed
-- The failed or cancelled jobs (jobrt_jobs_listed), newest first, further filtered.
SELECT * FROM jobrt_jobs
WHERE state = %(state)s::text AND state IN ('failed', 'cancelled') AND id < %(before)s
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text) AND (%(name)s::text IS NULL OR name = %(name)s::text) AND (%(batch)s::text IS NULL OR batch_id = %(batch)s::text)
ORDER BY id DESC LIMIT %(limit)s;

-- name: jobs_page_running
-- The running jobs (a few per worker, all in jobrt_jobs_lease), sorted.
SELECT * FROM jobrt_jobs
WHERE state = 'running' AND id < %(before)s
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text) AND (%(name)s::text IS NULL OR name = %(name)s::text) AND (%(batch)s::text IS NULL OR batch_id = %(batch)s::text)
ORDER BY id DESC LIMIT %(limit)s;

-- name: jobs_page_batch
SELECT * FROM jobrt_jobs
WHERE batch_id = %(batch)s::text AND batch_id IS NOT NULL AND id < %(before)s
  AND (%(state)s::text IS NULL OR state = %(state)s::text) AND (%(queue)s::text IS NULL OR queue = %(queue)s::text) AND (%(name)s::text IS NULL OR name = %(name)s::text)
ORDER BY id DESC LIMIT %(limit)s;

-- name: jobs_page_queue
SELECT * FROM jobrt_jobs
WHERE queue = %(queue)s::text AND id < %(before)s
  AND (%(state)s::text IS NULL OR state = %(state)s::text) AND (%(name)s::text IS NULL OR name = %(name)s::text)
ORDER BY id DESC LIMIT %(limit)s;

-- name: jobs_page_name
SELECT * FROM jobrt_jobs
WHERE name = %(name)s::text AND id < %(before)s
  AND (%(state)s::text IS NULL OR state = %(state)s::text)
ORDER BY id DESC LIMIT %(limit)s;

-- name: jobs_page_all
-- No filter, or pending or succeeded jobs: the primary key in id order.
SELECT * FROM jobrt_jobs
WHERE true AND id < %(before)s
  AND (%(state)s::text IS NULL OR state = %(state)s::text)
ORDER BY id DESC LIMIT %(limit)s;

-- name: batches_page
SELECT * FROM jobrt_batches WHERE id < %(before)s ORDER BY id DESC LIMIT %(limit)s;

-- name: record_minutes
INSERT INTO jobrt_job_minutes AS m (minute, queue, name, runs, succeeded, failed, runtime_sum,
                                    runtime_max, waits, wait_sum, wait_max)
SELECT * FROM unnest(%(minute)s::bigint[], %(queue)s::text[], %(name)s::text[],
                     %(runs)s::bigint[], %(succeeded)s::bigint[], %(failed)s::bigint[],
                     %(runtime_sum)s::float8[], %(runtime_max)s::float8[], %(waits)s::bigint[],
                     %(wait_sum)s::float8[], %(wait_max)s::float8[])
ON CONFLICT (minute, queue, name) DO UPDATE SET
    runs = m.runs + excluded.runs, succeeded = m.succeeded + excluded.succeeded,
    failed = m.failed + excluded.failed, runtime_sum = m.runtime_sum + excluded.runtime_sum,
    runtime_max = greatest(m.runtime_max, excluded.runtime_max), waits = m.waits + excluded.waits,
    wait_sum = m.wait_sum + excluded.wait_sum, wait_max = greatest(m.wait_max, excluded.wait_max);

-- name: minute_series_queue
SELECT minute - minute %% %(bucket)s::bigint AS at, queue, sum(runs)::bigint,
       sum(succeeded)::bigint, sum(failed)::bigint, sum(runtime_sum), max(runtime_max),
       sum(waits)::bigint, sum(wait_sum), max(wait_max)
FROM jobrt_job_minutes WHERE minute >= %(since)s::bigint
GROUP BY at, queue;

-- name: minute_series_name
SELECT minute - minute %% %(bucket)s::bigint AS at, name, sum(runs)::bigint,
       sum(succeeded)::bigint, sum(failed)::bigint, sum(runtime_sum), max(runtime_max),
       sum(waits)::bigint, sum(wait_sum), max(wait_max)
FROM jobrt_job_minutes WHERE minute >= %(since)s::bigint
GROUP BY at, name;

-- name: prune_minutes
DELETE FROM jobrt_job_minutes WHERE minute < %(before)s::bigint;

-- name: pause_queues
INSERT INTO jobrt_paused_queues (queue, paused_at)
SELECT queue, %(now)s FROM unnest(%(queues)s::text[]) AS queue
ON CONFLICT (queue) DO NOTHING
RETURNING queue;

-- name: resume_queues
DELETE FROM jobrt_paused_queues WHERE queue = ANY(%(queues)s::text[]) RETURNING queue;

-- name: paused_queues
SELECT queue, paused_at FROM jobrt_paused_queues;

-- name: request_restart
INSERT INTO jobrt_restart_requests AS r (id, generation, requested_at) VALUES (1, 1, %(now)s)
ON CONFLICT (id) DO UPDATE SET generation = r.generation + 1, requested_at = EXCLUDED.requested_at
RETURNING generation;

-- name: controls
-- A supervisor's read on each heartbeat: the paused queues, then the restart generation.
SELECT queue, NULL::bigint FROM jobrt_paused_queues
UNION ALL
SELECT NULL, generation FROM jobrt_restart_requests;

-- name: prune_failed
-- SKIP LOCKED, as prune: a row `failed retry` is bringing back is left for the next call.
DELETE FROM jobrt_jobs
WHERE id IN (SELECT id FROM jobrt_jobs
             WHERE state = 'failed' AND finished_at < %(before)s
             ORDER BY finished_at, id
             LIMIT %(limit)s
             FOR UPDATE SKIP LOCKED);

-- name: insert_tags
-- The tags of the jobs this enqueue made, before its COMMIT: a unique job whose key a live
-- job held returned that job's id, made by an earlier enqueue (another created_at).
INSERT INTO jobrt_job_tags (tag, job_id)
SELECT t.tag, t.job_id FROM unnest(%(tag)s::text[], %(job_id)s::bigint[]) AS t (tag, job_id)
WHERE EXISTS (SELECT 1 FROM jobrt_jobs AS j WHERE j.id = t.job_id AND j.created_at = %(now)s)
ON CONFLICT DO NOTHING;

-- name: tags_of
SELECT job_id, tag FROM jobrt_job_tags WHERE job_id = ANY(%(ids)s::bigint[]);

-- name: jobs_page_tag
-- A tag's jobs (its primary key, in id order within a tag), newest first, further filtered.
SELECT j.* FROM jobrt_job_tags AS t JOIN jobrt_jobs AS j ON j.id = t.job_id
WHERE t.tag = %(tag)s::text AND t.job_id < %(before)s
  AND (%(state)s::text IS NULL OR j.state = %(state)s::text)
  AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
  AND (%(name)s::text IS NULL OR j.name = %(name)s::text)
  AND (%(batch)s::text IS NULL OR j.batch_id = %(batch)s::text)
ORDER BY t.job_id DESC LIMIT %(limit)s;
