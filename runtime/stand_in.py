"""Which queue connect() returns while a test helper stands in for storage.

    with runtime.testing.fake_queue() as q:    -- enter(q) --> connect(...) returns a view of q
        code_under_test()                      (by url or config=, whatever it names)
                                               -- leave(q) --> connect(...) opens storage again

A test helper (runtime.testing) enters itself here; connect() asks `active()` first. The
stack is process-wide on purpose, as Laravel's Queue::fake() swaps the facade for the whole
app: code under test that connects from another thread (a web framework's test client)
must get the stand-in too, which a ContextVar would not give it. Nothing here imports
runtime.testing at import time, so runtime.client may import this module.
"""

from __future__ import annotations

TEST_SCHEMES = ("fake", "eager")  # storage urls that name a test helper instead of a database

_entered: list = []  # the stand-ins entered, innermost last


def enter(stand_in) -> None:
    _entered.append(stand_in)


def leave(stand_in) -> None:
    if stand_in in _entered:
        _entered.remove(stand_in)


def active():
    """The innermost stand-in entered, or None: connect() opens real storage."""
    return _entered[-1] if _entered else None


def is_test_url(url) -> bool:
    return isinstance(url, str) and url.partition("://")[0].lower() in TEST_SCHEMES and "://" in url


def open_test_url(url: str, config_path: str | None):
    """A new, empty fake or eager queue for a `fake://` or `eager://` url (given, or the
    storage url of the config at `config_path`, whose checks it then applies)."""
    from runtime import testing  # here, not at the top: runtime.testing imports runtime.client

    kind = url.partition("://")[0].lower()
    return (testing.FakeQueue if kind == "fake" else testing.EagerQueue)(config_path)
