"""PostgreSQL connections for the PostgreSQL backend: opening, naming, errors, LISTEN.

Owns what is about the server rather than the jobs: how a storage url and
the standard PG* environment variables become a connection (libpq reads
them; jobrt only adds defaults the url does not set), how the database is
named to humans (host, port and database, never the user's password nor
the url), how every psycopg error becomes one StorageError line saying what
to do, and the supervisor's wake-up listener (a dedicated LISTEN connection).
"""

from __future__ import annotations

import math
import os
import re
import select
import time
from urllib.parse import unquote

import psycopg
from psycopg import pq, sql

from runtime.errors import StorageError
from runtime.storage import StorageUrlError, pghosts

# Added only when neither the url nor the environment sets them: a supervisor
# must not hang for minutes on an unreachable host or a silently dead peer
# (tcp_user_timeout: unacknowledged data gives up after 10 s, not the kernel's 15 minutes).
DEFAULTS = {"connect_timeout": ("PGCONNECT_TIMEOUT", 10), "keepalives_idle": (None, 30),
            "keepalives_interval": (None, 10), "keepalives_count": (None, 3),
            "tcp_user_timeout": (None, 10_000)}
FALLBACK_APPLICATION_NAME = "jobrt"
# The supervisor's event loop must not sit in a lock wait while job deadlines
# pass (as with SQLite's 200 ms busy timeout): it gives up, and retries from its
# loop. A lost result write only means a rerun, so its commits need no flush.
SUPERVISOR_SETTINGS = ("SET synchronous_commit = off; SET lock_timeout = '200ms'; "
                       "SET statement_timeout = '10s'")

CONTENDED = ("55P03", "40001", "40P01")
# sqlstate (or its two-character class) -> what a human should do.
_ADVICE = {
    "28": "the server refused the login: check the user and password in the storage url, "
          "PGUSER/PGPASSWORD or ~/.pgpass, and pg_hba.conf",
    "3D000": "the database does not exist: create it (createdb) or fix the storage url",
    "42501": "permission denied: grant this role the rights on jobrt's tables (or on the "
             "schema, for the first start)",
    "53": "the server is out of resources",
    "57P01": "the server terminated the connection (it is shutting down or an administrator "
             "ended it)",
    "57P02": "the server is restarting after a crash",
    "57P03": "the server is starting up or shutting down and accepts no connections yet",
    "55P03": "a lock was held longer than the supervisor waits (lock_timeout); it tries "
             "again later",
    "57014": "the statement ran longer than statement_timeout and was cancelled",
    "25006": "the server is read-only (a standby?): point the storage url at the primary",
    "40001": "the transaction conflicted with another one and was rolled back; try again",
    "40P01": "the transaction deadlocked with another one and was rolled back; try again",
    "42P01": "jobrt's tables are missing (was the schema dropped?); restart to recreate them",
    "23": "the database rejected the data",
    "22": "the database rejected the data",
    "lookup": "its host name could not be looked up: check the name in the storage url (or "
              "PGHOST) and that this host's DNS server answers (/etc/resolv.conf)",
}
# A failed connection carries no sqlstate, only libpq's text.
_CONNECT_FAILURES = (
    (re.compile(r'database ".*" does not exist'), "3D000"),
    (re.compile(r"authentication failed|no pg_hba\.conf entry|role \".*\" does not exist"
                r"|password"), "28"),
    (re.compile(r"too many clients|out of memory"), "53"),
    (re.compile(r"starting up|shutting down|in recovery mode"), "57P03"),
    (re.compile(r"could not look up host|failed to resolve host|could not translate host"), "lookup"),
)


class Unanswered(psycopg.OperationalError):
    """The server did not answer a call within its bound: the connection was closed
    (mid-statement it can never be used again); what the call wrote is unknown."""


class BoundedConnection(psycopg.Connection):
    """A connection whose every wait for the server ends by `deadline` (monotonic
    seconds, None: no bound), set by the caller before each call.

    A frozen server (SIGSTOP, a hung host whose kernel still acknowledges) never
    answers: its statement_timeout cannot fire, and neither TCP keepalives nor
    tcp_user_timeout notice, since every packet is acknowledged. libpq has no
    client-side deadline, so the one place psycopg waits for the socket enforces it.
    """

    deadline: float | None = None
    bound: float = 0.0  # the seconds the deadline allowed, for the message

    def wait(self, gen, interval: float = 0.1, timeout: float | None = None):
        if self.deadline is None:
            return super().wait(gen, interval=interval, timeout=timeout)
        left = self.deadline - time.monotonic()
        if left > 0:
            try:
                return super().wait(gen, interval=min(interval, left),
                                    timeout=left if timeout is None else min(timeout, left))
            except psycopg.errors._WaitTimeout:  # psycopg's own (internal) name for it
                pass
        gen.close()
        self.pgconn.finish()
        raise Unanswered(f"the server did not answer within {self.bound:g} s ([storage] "
                         f"call_timeout): it is frozen, overloaded or unreachable")


def _secrets(url: str) -> list[str]:
    """Every spelling of a password the url or the environment holds, longest first."""
    found = []
    userinfo = re.match(r"^[a-z]+://([^/?#]*)@", url, re.IGNORECASE)
    if userinfo and ":" in userinfo.group(1):
        found.append(userinfo.group(1).split(":", 1)[1])
    query = url.split("?", 1)[1] if "?" in url else ""
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if unquote(key) == "password" and value:
            found.append(value)
    found.extend(unquote(s) for s in list(found))
    if os.environ.get("PGPASSWORD"):
        found.append(os.environ["PGPASSWORD"])
    return sorted({s for s in found if s}, key=len, reverse=True)


class Target:
    """One PostgreSQL database as the url and the environment name it, for humans too."""

    def __init__(self, url: str):
        self.url = url
        self._secrets = _secrets(url)
        if "\0" in url:  # libpq would read the url only up to it
            raise StorageUrlError("storage url holds a null byte: use "
                                  "postgresql://user@host:port/dbname")
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StorageUrlError(self.scrub(
                f"storage url is not a valid PostgreSQL url ({_first_line(exc)}): use "
                f"postgresql://user@host:port/dbname, or postgresql:///dbname with PGHOST etc."
            )) from None
        self.extra = {}
        for key, (env, value) in DEFAULTS.items():
            if key not in params and not (env and os.environ.get(env)):
                self.extra[key] = value
        if "application_name" not in params and not os.environ.get("PGAPPNAME"):
            self.extra["fallback_application_name"] = FALLBACK_APPLICATION_NAME
        defaults = {o.keyword.decode(): o.val.decode() for o in pq.Conninfo.get_defaults()
                    if o.val is not None}
        defaults.update(params)
        self.params = defaults  # the url's and the environment's: where pghosts looks up names
        host = defaults.get("host") or defaults.get("hostaddr") or "the default unix socket"
        port = defaults.get("port") or "5432"
        dbname = defaults.get("dbname") or defaults.get("user") or "?"
        self.set_where(host, port, dbname)

    def set_where(self, host: str, port: str, dbname: str) -> None:
        self.where = f"PostgreSQL database {dbname} on {host}:{port}"
        if host.startswith("/"):
            self.url_for_humans = f"postgresql:///{dbname}?host={host}&port={port}"
        else:
            self.url_for_humans = f"postgresql://{host}:{port}/{dbname}"

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def connect(self, role: str, bound: float | None = None) -> psycopg.Connection:
        """A new autocommit connection; transactions are explicit BEGIN ... COMMIT.

        With `bound` (seconds), looking the host up waits at most that long
        (pghosts), connecting too (libpq's floor: 2 s), and the connection is a
        BoundedConnection whose calls the caller bounds."""
        extra = self.extra
        try:
            if bound is not None:
                extra = {**extra, "connect_timeout": max(2, math.ceil(bound)),
                         **pghosts.pinned(self.params, bound)}
            conn = BoundedConnection.connect(self.url, autocommit=True, **extra)
        except psycopg.Error as exc:
            raise self.error(exc, "connecting", connecting=True) from None
        try:
            bounded(conn, bound)
            if role == "supervisor":  # clients keep durable commits and no time limits
                conn.execute(SUPERVISOR_SETTINGS)
            bounded(conn, None)  # each call starts its own bound
            info = conn.info
            self.set_where(info.host, str(info.port), info.dbname)
        except psycopg.Error as exc:
            conn.close()
            raise self.error(exc, "connecting", connecting=True) from None
        return conn

    def error(self, exc: BaseException, doing: str, connecting: bool = False,
              committing: bool = False, lost: bool = False,
              rolled_back: bool = False) -> StorageError:
        """One line: which database, what failed, what to do. Never a password."""
        reason = _first_line(exc)
        state = getattr(exc, "sqlstate", None) or ""
        if connecting and not state:
            state = next((code for pattern, code in _CONNECT_FAILURES if pattern.search(reason)),
                         "")
        advice = _ADVICE.get(state) or _ADVICE.get(state[:2])
        if connecting and advice:
            text = f"cannot connect to {self.where}: {advice} ({reason})"
        elif connecting:
            text = (f"cannot connect to {self.where}: {reason}; check that the server is "
                    f"running and that the storage url (or PGHOST, PGPORT, PGUSER, PGDATABASE) "
                    f"points at it")
        elif lost and committing:
            text = (f"lost the connection to {self.where} while committing ({doing}): "
                    f"{reason}; the outcome is unknown, the write may or may not have been "
                    f"applied: check before repeating it; the next call reconnects")
        elif lost:
            text = f"lost the connection to {self.where} while {doing}: {reason}"
            text += "; nothing was written" if rolled_back else ""
            text += "; the next call reconnects"
        elif advice:
            text = f"{self.where}: {advice} ({reason}) (while {doing})"
        else:
            text = f"{self.where}: {reason} (while {doing})"
        if rolled_back and not lost:
            text += "; nothing was written"  # the server refused it: rolled back
        error = StorageError(self.scrub(text))
        # A lock wait given up, a deadlock or a serialization conflict: retrying
        # shortly is expected to work, no outage (as SQLite's busy).
        error.contended = state in CONTENDED
        # The transaction may have committed: an exchange's claims may be running
        # jobs owned by this supervisor that it never received.
        error.outcome_unknown = lost and committing
        return error


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for prefix in ("connection failed: ", "connection is bad: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text.splitlines()[0].strip() if text else type(exc).__name__


def bounded(conn: BoundedConnection, bound: float | None) -> BoundedConnection:
    """Start the bound of one call on `conn`: `bound` seconds from now (None: none)."""
    conn.deadline = None if bound is None else time.monotonic() + bound
    conn.bound = bound or 0.0
    return conn


def is_broken(conn: psycopg.Connection | None) -> bool:
    return conn is None or conn.closed or conn.pgconn.status != pq.ConnStatus.OK


def probe(conn: psycopg.Connection) -> None:
    """Read what the server sent an idle connection (notices, a FATAL before it
    hung up, end of file) without blocking; raises psycopg.Error if it is gone."""
    pgconn = conn.pgconn
    poller = select.poll()  # not select(): the supervisor may hold fds past 1024
    poller.register(pgconn.socket, select.POLLIN)
    for _ in range(64):
        if not poller.poll(0):
            return
        pgconn.consume_input()
        while pgconn.notifies() is not None:
            pass


class Listener:
    """The supervisor's wake-up source: a dedicated autocommit connection that ran
    LISTEN on the database's channel. Its fd is readable when a client's enqueue
    committed; `drain()` consumes the notifications without blocking.

    When the connection breaks, `drain()` raises StorageError; the caller then
    closes this listener and makes a new one later (polling meanwhile).
    """

    def __init__(self, target: Target, channel: str, bound: float | None = None):
        self.target = target
        self.conn: psycopg.Connection | None = target.connect("client", bound)
        try:
            bounded(self.conn, bound).execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error as exc:
            self.close()
            raise target.error(exc, "starting to listen for new jobs") from None

    def fileno(self) -> int:
        return self.conn.pgconn.socket if self.conn is not None and not self.conn.closed else -1

    def drain(self) -> None:
        conn = self.conn
        reason = "it is closed"
        if not is_broken(conn):
            try:
                probe(conn)
                if not is_broken(conn):
                    return
                reason = "the server hung up"
            except psycopg.Error as exc:
                reason = _first_line(exc)
        raise StorageError(self.target.scrub(
            f"lost the wake-up connection to {self.target.where}: {reason}; close this "
            f"listener and open a new one (poll for jobs meanwhile)"))

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
