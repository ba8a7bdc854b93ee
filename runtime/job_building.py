"""How enqueue turns a job and its arguments into the NewJob storage writes: which job a
name or function is, whether the config serves it, its options checked, its payload,
unique key and gate keys. Mixed into runtime.client.Queue, which holds the config, the
registry and the caches these read."""

from __future__ import annotations

import difflib
import hashlib

from runtime import gates, tags
from runtime.errors import PayloadError, UnknownJob
from runtime.options import JobOptions, check_option, unique_without_key
from runtime.payload import dump_payload
from runtime.registry import JobSpec, collect, resolve
from runtime.storage.base import NewJob

_UNSEEN = object()
_NONE_GIVEN: dict = {}
_SEQUENCES = (tuple, list)
_new_tuple = tuple.__new__  # NewJob from a whole tuple: no Python-level __new__ per job
_NEW_JOB_DEFAULTS = tuple(NewJob._field_defaults[field] for field in NewJob._fields[6:])
_UNIQUE_OPTIONS = frozenset(("unique_for", "unique_until"))
_RUN_OPTIONS = frozenset(("timeout", "tries", "backoff", "retry_until", "max_exceptions"))  # stored
_GATE_OPTIONS = frozenset(("without_overlapping", "overlap_key", "rate_limit", "rate_key"))
_OPTIONS = ("_queue", "_delay", "_timeout", "_tries", "_backoff", "_priority", "_unique", "_retry_until",
            "_max_exceptions", "_unique_for", "_unique_until", "_without_overlapping", "_overlap_key",
            "_rate_limit", "_rate_key", "_tags")
# (their rules are runtime.options': the same as @job's and the pools' defaults)


class JobBuilding:
    """Uses the Queue's _modules, _module_path, _config_path, _pools, _registry, _checked,
    _by_name and _limiters."""

    def _spec(self, job) -> JobSpec:
        if isinstance(job, str):
            spec = self._by_name.get(job)
            if spec is None:
                spec = self._by_name[job] = self._find(job)
            return spec
        return self._find(job)

    def _find(self, job) -> JobSpec:
        wanted = (isinstance(job, str) and self._modules) or self._pools is not None
        if wanted and self._registry is None:
            self._registry = collect(self._modules, self._module_path, self._config_path)
        if self._pools is not None and isinstance(job, str) and job not in self._registry:
            # With a config, a name is looked up in its job modules only: a module named on
            # a command line (`this:x`) is never imported just to find out.
            raise UnknownJob(self._unregistered(job))
        return resolve(job, self._registry)

    def _unregistered(self, name: str) -> str:
        modules = ", ".join(self._modules) or "none are"
        return (f"job {name!r} is not in [jobs] modules of {self._config_path or 'the config'}, so no "
                f"worker would run it; move it into a module listed there ({modules})")

    def spec_of(self, job) -> JobSpec:
        """The JobSpec of a job function or name (with a config: of its modules only)."""
        return self._spec(job)

    def new_job(self, job, args, kwargs, options: dict, now: float) -> NewJob:
        """The job as enqueue would store it at `now`, without storing it; `options` are
        enqueue's underscore keywords ({"_queue": "low"}). What schedules enqueue."""
        return self._new_job(job, tuple(args), dict(kwargs), dict(options), now)

    def _check_served(self, spec: JobSpec, queue: str) -> None:
        """With a known config: refuse a job no worker of it would ever run."""
        if self._pools is None:
            return
        where = self._config_path or "the config"
        unserved = None
        if not any(queue in queues for queues in self._pools.values()):
            pools = "; ".join(f"{name}: {', '.join(queues)}" for name, queues in self._pools.items())
            unserved = (f"queue {queue!r} is served by no pool in {where} (pools: {pools}); add it "
                        f"to a pool's queues or pass _queue= (jobrt enqueue --queue) naming a "
                        f"queue a pool serves")
        if spec.name not in (self._registry or {}):
            raise UnknownJob(self._unregistered(spec.name) + (f"; and its {unserved}" if unserved else ""))
        if unserved:
            raise PayloadError(f"job {spec.name}: {unserved}")

    def _new_job(self, job, args, kwargs, options: dict, now: float) -> NewJob:
        spec = self._spec(job)
        given = self._given(spec, options) if options else _NONE_GIVEN
        queue = given.get("queue", spec.queue)
        # What depends on the job and queue alone (served? its own options) is worked out once.
        stored = self._checked.get((spec.name, queue), _UNSEEN)
        if stored is _UNSEEN:
            self._check_served(spec, queue)
            stored = self._checked[spec.name, queue] = self._stored(spec, {}, now)
        if spec.retry_until is not None or not _RUN_OPTIONS.isdisjoint(given):
            stored = self._stored(spec, given, now)
        payload = dump_payload(spec.name, args, kwargs)
        unique = given.get("unique", spec.unique)
        new = NewJob(queue=queue, name=spec.name, payload=payload, available_at=now + given.get("delay", 0.0),
                     priority=given.get("priority", spec.priority), options=stored,
                     unique_key=self._unique(spec, unique, payload))
        if spec.without_overlapping or spec.rate_limit or not _GATE_OPTIONS.isdisjoint(given):
            new = self._gated(spec, new, given, args, kwargs)
        if spec.tags or "tags" in given:
            try:
                new = new._replace(tags=tags.merged(spec.tags, given.get("tags", ())))
            except ValueError as exc:
                raise PayloadError(f"job {spec.name}: _tags {exc}") from None
        if spec.unique_for is None and spec.unique_until is None and not _UNIQUE_OPTIONS.intersection(given):
            return new
        unique_for = given.get("unique_for", spec.unique_for)
        unique_until = given.get("unique_until", spec.unique_until)
        stray = unique_without_key(unique, unique_for, unique_until)
        if stray:
            raise PayloadError(f"job {spec.name}: _{stray} needs a unique key (the job's unique=True "
                               f"or a key, or _unique=...)")
        return new._replace(unique_expires=None if unique_for is None else now + unique_for,
                            unique_at_start=unique_until == "start")

    def _gated(self, spec: JobSpec, new: NewJob, given: dict, args, kwargs) -> NewJob:
        """The job with the keys of its gates: without_overlapping (`_overlap_key` says the
        same per enqueue) and rate_limit, split by `_rate_key`."""
        overlap = given.get("overlap_key", given.get("without_overlapping", spec.without_overlapping))
        if callable(overlap):
            overlap = self._key_of(spec, overlap, args, kwargs)
        limit = given.get("rate_limit", spec.rate_limit)
        split_by = given.get("rate_key")
        if limit is None:
            if split_by is not None:
                raise PayloadError(f"job {spec.name}: _rate_key needs a rate limit (the job's "
                                   f"rate_limit=..., or _rate_limit=...)")
            return new._replace(overlap_key=gates.overlap_key(spec.name, overlap))
        try:
            key, starts, period = gates.rate_key(spec.name, limit, split_by, self._limiters)
        except KeyError as exc:
            raise PayloadError(f"job {spec.name}: {exc.args[0]}") from None
        return new._replace(overlap_key=gates.overlap_key(spec.name, overlap), rate_key=key,
                            rate_max=starts, rate_period=period)

    @staticmethod
    def _key_of(spec: JobSpec, make_key, args, kwargs) -> str:
        """The overlap key a job's function of its arguments makes for this enqueue."""
        try:
            key = make_key(*args, **kwargs)
        except Exception as exc:
            raise PayloadError(f"job {spec.name}: its without_overlapping key function raised "
                               f"{type(exc).__name__}: {exc} for these arguments") from None
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        try:
            return gates.check_overlap(key) if isinstance(key, str) else gates.check_overlap(None)
        except ValueError:
            raise PayloadError(f"job {spec.name}: its without_overlapping key function must "
                               f"return a non-empty printable text or an integer, got "
                               f"{key!r:.60}") from None

    @staticmethod
    def _given(spec: JobSpec, options: dict) -> dict:
        """The enqueue's _options, checked by the rules every option follows, without the `_`."""
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            close = [match for name in unknown for match in difflib.get_close_matches(name, _OPTIONS, 1)]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise PayloadError(f"job {spec.name}: unknown enqueue option{'s' * (len(unknown) > 1)} "
                               f"{', '.join(repr(name)[:40] for name in unknown)}{hint}; known: {', '.join(_OPTIONS)}")
        given = {}
        for option, value in options.items():
            try:
                given[option[1:]] = check_option(option[1:], value)
            except ValueError as exc:
                raise PayloadError(f"job {spec.name}: {option} {exc}") from None
        return given

    @staticmethod
    def _stored(spec: JobSpec, given: dict, now: float) -> bytes | None:
        """The options stored with the job: the overrides `given`, else the job's own."""
        retry_until = given.get("retry_until", spec.retry_until)
        return JobOptions(timeout=given.get("timeout", spec.timeout), tries=given.get("tries", spec.tries),
                          backoff=given.get("backoff", spec.backoff),
                          retry_until=None if retry_until is None else now + retry_until,
                          max_exceptions=given.get("max_exceptions", spec.max_exceptions),
                          on_failure=spec.on_failure).encode()

    @staticmethod
    def _unique(spec: JobSpec, unique, payload: bytes) -> str | None:
        if unique is True:  # the job's name and arguments are the key
            return f"{spec.name}:{hashlib.sha1(payload).hexdigest()}"
        return unique or None

    def _new_jobs(self, items, now: float, caller: str, first: int = 0) -> list[NewJob]:
        """enqueue_many's items as NewJobs (a batch's members are given the same way); an
        item's error names `caller` and its index (counted from `first`)."""
        jobs = []
        plain: dict = {}  # job -> what every enqueue of it without options stores, or None
        for index, item in enumerate(items, first):
            if type(item) is tuple and len(item) == 2:  # (job, args): the bulk of a big one
                job, args = item
                kwargs = options = _NONE_GIVEN
            elif isinstance(item, (tuple, list)) and 1 <= len(item) <= 4:
                job, args, kwargs, options = (tuple(item) + ((), {}, {}))[:4]
            else:
                raise PayloadError(f"{caller} item {index}: expected (job, args[, kwargs[, options]]), "
                                   f"got {item!r:.80}")
            if type(args) not in _SEQUENCES and (isinstance(args, (str, bytes)) or not hasattr(args, "__iter__")):
                raise PayloadError(f"{caller} item {index}: args must be a list or tuple, got {args!r:.80}")
            if not options:  # only the arguments vary between such items of a job
                try:
                    fixed = plain.get(job, _UNSEEN)
                    if fixed is _UNSEEN:
                        fixed = plain[job] = self._plain(job, now)
                except TypeError:  # unhashable: the long way says what is wrong with it
                    fixed = None
                if fixed is not None:
                    payload = dump_payload(fixed[1], args, kwargs if type(kwargs) is dict else dict(kwargs))
                    jobs.append(_new_tuple(NewJob, fixed[:2] + (payload, now) + fixed[2:]))
                    continue
            jobs.append(self._new_job(job, tuple(args), dict(kwargs), dict(options), now))
        return jobs

    def _plain(self, job, now: float) -> tuple | None:
        """(queue, name, priority, stored options, then the defaults of NewJob's later fields)
        of `job` when an enqueue of it without options stores nothing but these and its
        arguments (no unique key, gate, tag nor deadline of its own), else None."""
        spec = self._spec(job)
        if (spec.unique or spec.unique_for is not None or spec.unique_until is not None
                or spec.retry_until is not None or spec.without_overlapping or spec.rate_limit or spec.tags):
            return None
        new = self._new_job(job, (), {}, {}, now)
        return (new.queue, new.name, new.priority, new.options) + _NEW_JOB_DEFAULTS
