"""The exceptions jobrt raises. One base class, shallow branches.

Every message names the thing that is wrong and what to do about it, so the
CLI can print it as one line without a traceback.
"""


class JobrtError(Exception):
    """Base class of every error jobrt raises on purpose."""


class ConfigError(JobrtError):
    """The configuration file or a setting in it is invalid.

    Carries the file and the key so the message points at the exact line to fix.
    """

    def __init__(self, message: str, path: str | None = None, key: str | None = None):
        self.path = path
        self.key = key
        where = ": ".join(part for part in (path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class UnknownJob(JobrtError):
    """A job name that no imported job module registers."""


class PayloadError(JobrtError):
    """Job arguments or a result that cannot be stored as JSON (or are too large)."""


class StorageError(JobrtError):
    """The storage backend cannot be opened or does not answer.

    `contended` marks a moment of lock contention (SQLite busy) that retrying
    shortly is expected to clear, as opposed to an outage worth reporting at once.
    """

    def __init__(self, message: str, contended: bool = False):
        super().__init__(message)
        self.contended = contended


class JobNotFound(JobrtError):
    """No job with the given id exists (it may have been pruned)."""


class BatchNotFound(JobrtError):
    """No batch with the given id exists (it may have been pruned with its members)."""


class BatchFinished(JobrtError):
    """Members were added to a batch whose members had all ended: its callbacks ran."""


class ChainNotFound(JobrtError):
    """No chain with the given id exists (it may have been pruned with its steps)."""


class JobFailed(JobrtError):
    """A task of the embedded Pool failed for good, after its tries.

    `reason` says how its last attempt ended: "error" (it raised), "timeout",
    "memory" (its worker passed memory_limit_mb and was killed),
    "signal" (its worker was killed by a signal: a segfault, the OOM killer),
    "crash" (its worker exited without reporting), or "cancelled" (the pool was
    shut down first). `error` is one line; `traceback` is the remote traceback
    text, when it raised; `exception` is what it raised, when that could be
    pickled back (it is also this exception's __cause__).
    """

    def __init__(self, task: str, reason: str, error: str, traceback: str | None = None,
                 exception: BaseException | None = None, attempts: int = 1):
        super().__init__(f"{task} failed: {error}")
        self.task = task
        self.reason = reason
        self.error = error
        self.traceback = traceback
        self.exception = exception
        self.attempts = attempts
        if exception is not None:
            self.__cause__ = exception
        if traceback:
            self.add_note("remote traceback (in the worker):\n" + traceback.rstrip())
