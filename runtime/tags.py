"""Job tags: labels a job is found by (`jobrt jobs --tag T`, the dashboard's jobs page),
given by `@job(tags=[...])` and `_tags=[...]` at enqueue (the two merged). One rule for
both: a list of texts, bounded, so a tag row stays small and a job has few of them."""

from __future__ import annotations

from runtime.numbers import show

MAX_TAGS = 20  # per job
MAX_LENGTH = 100  # characters per tag
EXPECTED = (f"a list of at most {MAX_TAGS} tags, each a printable text of 1 to {MAX_LENGTH} "
            f"characters (e.g. [\"user:42\", \"billing\"])")


def is_tag(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_LENGTH and value.isprintable()


def check_tags(value) -> tuple[str, ...]:
    """The tags as a sorted tuple without repeats; ValueError saying what they must be."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"must be {EXPECTED}, got {show(value)}")
    tags = set()
    for tag in value:
        if not is_tag(tag):
            raise ValueError(f"must be {EXPECTED}, got the tag {show(tag)}")
        tags.add(tag)
    if len(tags) > MAX_TAGS:
        raise ValueError(f"must be {EXPECTED}, got {len(tags)} tags")
    return tuple(sorted(tags))


def merged(own: tuple, given: tuple) -> tuple[str, ...]:
    """A job's own tags and an enqueue's, within the same bound."""
    if not given:
        return own
    try:
        return check_tags(own + given)
    except ValueError as exc:
        raise ValueError(f"with the job's own tags {list(own)}: {exc}") from None
