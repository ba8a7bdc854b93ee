"""supervisor.toml: defaults, every kind of error, the `jobrt init` template, fuzzing."""

import dataclasses
import os
import sys
import tempfile
import textwrap
import tomllib

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime.config.init_file
import runtime.config.load
from runtime.config.init_file import default_config_text, write_default_config
from runtime.config.load import Config, HealthConfig, PoolConfig, config_from_dict, load_config
from runtime.config.settings import POOL, SECTIONS, SETTINGS, settings_of
from runtime.errors import ConfigError


def write(directory, text, name="supervisor.toml"):
    path = os.path.join(directory, name)
    with open(path, "wb") as file:
        file.write(text.encode() if isinstance(text, str) else text)
    return path


def load_error(tmp_path, text) -> ConfigError:
    path = write(tmp_path, textwrap.dedent(text))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == path
    assert str(info.value).startswith(path + ": ")
    assert "\n" not in str(info.value)
    return info.value


# -- defaults and normal files ------------------------------------------------------


def test_an_empty_document_gets_every_default(tmp_path):
    config = config_from_dict({}, base_dir=str(tmp_path))
    assert config.path is None
    assert config_from_dict({}, path=tmp_path / "x.toml").path == str(tmp_path / "x.toml")
    assert config.base_dir == str(tmp_path)
    assert config.storage_url == "sqlite:///var/jobrt.db"
    assert (config.lease, config.poll, config.retention) == (30, 1.0, 7 * 24 * 3600)
    assert config.modules == ("jobs.examples",)
    assert config.module_path == (str(tmp_path),)
    assert list(config.pools) == ["default"]
    assert config.pools["default"] == PoolConfig(
        name="default", queues=("default",), workers=2, balance="off", min_workers=1, max_workers=10,
        balance_strategy="time", balance_max_shift=1, balance_cooldown=3, timeout=60, max_jobs=1000,
        max_time=3600,
        max_memory_mb=0, memory_limit_mb=0, tries=3, backoff=[10, 60, 300], grace=30, prefetch=4,
        user="", group="", run_as_root=False, max_open_files=0, core_dumps=False,
    )
    assert config.health == HealthConfig(
        workers_warning=0, workers_critical=1, pending_warning=1000, pending_critical=10000,
        oldest_pending_warning=300, oldest_pending_critical=1800, failed_warning=100,
        failed_critical=0,
    )


def test_a_check_is_turned_off_by_0_and_levels_are_checked_only_when_both_are_on():
    health = config_from_dict({"health": {"pending_warning": 0, "pending_critical": 5,
                                          "failed_warning": 9, "failed_critical": 0}}).health
    assert (health.pending_warning, health.pending_critical) == (0, 5)
    assert (health.failed_warning, health.failed_critical) == (9, 0)


def test_a_full_file_loads_with_paths_relative_to_it(tmp_path):
    path = write(tmp_path, """
        [storage]
        url = "postgresql://jobs@db/jobs"
        lease = 12.5
        poll = 2
        retention = 0

        [jobs]
        modules = ["app.jobs", "more"]
        path = ["src", "/opt/lib"]

        [pools.web]
        queues = ["high", "default"]
        workers = 8
        backoff = {base = 2, max = 60}

        [pools.batch]
        queues = ["low", "default"]
        timeout = 3600
        max_jobs = 0
        max_memory_mb = 512
        tries = 1
        backoff = 5
        grace = 0
        prefetch = 16
    """.replace("\n        ", "\n"))
    config = load_config(path)
    assert config.path == path and config.base_dir == str(tmp_path)
    assert config.storage_url == "postgresql://jobs@db/jobs"
    assert (config.lease, config.poll, config.retention) == (12.5, 2.0, 0.0)
    assert isinstance(config.poll, float)
    assert config.modules == ("app.jobs", "more")
    assert config.module_path == (str(tmp_path / "src"), "/opt/lib")
    spaced = write(tmp_path, '[storage]\nurl = "sqlite:///my jobs/jobs.db"\n')
    assert load_config(tmp_path / "supervisor.toml").storage_url == "sqlite:///my jobs/jobs.db"
    assert load_config(spaced).path == path
    assert list(config.pools) == ["web", "batch"]  # file order; pools may share a queue
    web, batch = config.pools["web"], config.pools["batch"]
    assert web.queues == ("high", "default") and web.workers == 8 and web.timeout == 60
    assert web.backoff == {"base": 2, "factor": 2, "max": 60, "jitter": 0.5}
    assert (batch.timeout, batch.max_jobs, batch.max_memory_mb, batch.tries) == (3600, 0, 512, 1)
    assert (batch.backoff, batch.grace, batch.prefetch, batch.workers) == (5, 0, 16, 2)


def test_the_repository_default_config_loads():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, "supervisor.toml")):
        pytest.skip("no supervisor.toml in the repository yet")
    config = load_config(os.path.join(root, "supervisor.toml"))
    assert config.pools


def test_a_relative_path_is_reported_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "[pools.default]\nworkers = 'two'\n")
    with pytest.raises(ConfigError) as info:
        load_config("supervisor.toml")
    assert str(info.value) == (
        'supervisor.toml: pools.default.workers: must be an integer from 1 to 1024, got "two"'
    )
    assert info.value.key == "pools.default.workers"


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf[storage]\nlease = 5\n")
    assert load_config(path).lease == 5


def test_the_table_and_the_dataclasses_agree():
    pool_fields = {f.name for f in dataclasses.fields(PoolConfig)}
    config_fields = {f.name for f in dataclasses.fields(Config)}
    health_fields = {f.name for f in dataclasses.fields(HealthConfig)}
    assert pool_fields == {"name"} | {s.field or s.name for s in SETTINGS if s.section == POOL}
    assert config_fields == {"path", "base_dir", "pools", "health", "rate_limits", "schedules"} | {
        s.field or s.name for s in SETTINGS if s.section in ("storage", "jobs", "metrics", "dashboard")
    }
    assert health_fields == {s.field or s.name for s in SETTINGS if s.section == "health"}
    for setting in SETTINGS:
        assert setting.help and setting.kind.expected


# -- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, key, fragment",
    [
        ("[pool.default]", "pool", 'unknown section, did you mean "pools"?'),
        ("[zzz]", "zzz", "expected one of: storage, jobs, pools"),
        ("[storage]\nleas = 3", "storage.leas", 'did you mean "lease"?'),
        ("[pools.default]\nwrokers = 3", "pools.default.wrokers", 'did you mean "workers"?'),
        ("storage = 3", "storage", "must be a table"),
        ("pools = 3", "pools", "must be tables"),
        ("pools = {}", "pools", "at least one pool"),
        ("[pools]\nx = 1", "pools.x", "must be a table"),
        ('[pools."a b"]', 'pools."a b"', "pool name must be letters, digits"),
        ("[storage]\nurl = 3", "storage.url", "must be a storage URL"),
        ("[storage]\nurl = 'jobs.db'", "storage.url", 'got "jobs.db"'),
        ('[storage]\nurl = "sqlite:///a\\nb"', "storage.url", 'got "sqlite:///a\\nb"'),
        ("[storage]\nlease = 0", "storage.lease", "must be a number of seconds > 0, got 0"),
        ("[storage]\nlease = true", "storage.lease", "got true"),
        ("[storage]\nlease = inf", "storage.lease", "got inf"),
        ("[storage]\npoll = nan", "storage.poll", "got nan"),
        ("[storage]\npoll = '1'", "storage.poll", 'got "1"'),
        ("[storage]\nretention = -1", "storage.retention", "seconds >= 0, got -1"),
        ("[jobs]\nmodules = 'jobs.examples'", "jobs.modules", "must be a non-empty list of module names"),
        ("[jobs]\nmodules = []", "jobs.modules", "non-empty list"),
        ("[jobs]\nmodules = ['jobs.class']", "jobs.modules", 'item 1 must be an importable module name'),
        ("[jobs]\nmodules = ['ok', 'no-dash']", "jobs.modules", 'item 2'),
        ("[jobs]\npath = ['']", "jobs.path", "item 1 must be a directory"),
        ("[pools.default]\nqueues = []", "pools.default.queues", "non-empty list of queue names"),
        ("[pools.default]\nqueues = ['a', 'a']", "pools.default.queues", '"a" is listed twice'),
        ("[pools.default]\nqueues = ['a b']", "pools.default.queues", "queue name (no spaces)"),
        ("[pools.default]\nqueues = [1]", "pools.default.queues", "got 1"),
        ("[pools.default]\nworkers = 0", "pools.default.workers", "integer from 1 to 1024, got 0"),
        ("[pools.default]\nworkers = 1025", "pools.default.workers", "got 1025"),
        ("[pools.default]\nworkers = 2.0", "pools.default.workers", "got 2.0"),
        ("[pools.default]\nworkers = true", "pools.default.workers", "got true"),
        ("[pools.default]\ntimeout = 0", "pools.default.timeout", "seconds > 0"),
        ("[pools.default]\nmax_jobs = -1", "pools.default.max_jobs", "integer >= 0"),
        ("[pools.default]\nmax_time = -1", "pools.default.max_time", "seconds >= 0"),
        ("[pools.default]\nmax_memory_mb = 1.5", "pools.default.max_memory_mb", "integer >= 0"),
        ("[pools.default]\ntries = 0", "pools.default.tries", "integer >= 1, got 0"),
        ("[pools.default]\nbackoff = -1", "pools.default.backoff", "got -1"),
        ("[pools.default]\nbackoff = []", "pools.default.backoff", "empty list"),
        ("[pools.default]\nbackoff = {bse = 1}", "pools.default.backoff", 'did you mean "base"?'),
        ("[pools.default]\nbackoff = {base = 1, jitter = 2}", "pools.default.backoff", "jitter must be"),
        ("[pools.default]\ngrace = -0.5", "pools.default.grace", "seconds >= 0"),
        ("[pools.default]\nprefetch = 17", "pools.default.prefetch", "integer from 1 to 16"),
        ("[pools.default]\nprefetch = 0", "pools.default.prefetch", "got 0"),
        ("[pools.default]\nbalance = 'on'", "pools.default.balance",
         'must be one of "off", "simple", "auto", got "on"'),
        ("[pools.default]\nbalance = true", "pools.default.balance", "got true"),
        ("[pools.default]\nbalance_strategy = 'jobs'", "pools.default.balance_strategy",
         'one of "time", "size"'),
        ("[pools.default]\nmin_workers = 0", "pools.default.min_workers", "integer from 1 to 1024"),
        ("[pools.default]\nmax_workers = 0", "pools.default.max_workers", "got 0"),
        ("[pools.default]\nbalance_max_shift = 0", "pools.default.balance_max_shift", "got 0"),
        ("[pools.default]\nbalance_cooldown = 0", "pools.default.balance_cooldown", "seconds > 0"),
        ("[pools.mail]\nqueues = ['a', 'b', 'c']\nbalance = 'auto'\nmin_workers = 4",
         "pools.mail.min_workers",
         "4 per queue x 3 queues = 12 workers, more than max_workers (10) allows in pool mail"),
        ("[pools.mail]\nqueues = ['a', 'b']\nbalance = 'simple'\nmax_workers = 1",
         "pools.mail.min_workers", "more than max_workers (1)"),
        ("[health]\npending_warning = -1", "health.pending_warning", "integer >= 0, got -1"),
        ("[health]\noldest_pending_critical = 'x'", "health.oldest_pending_critical", "seconds"),
        ("[health]\nworker_critical = 1", "health.worker_critical", 'did you mean "workers_critical"?'),
        ("[health]\npending_warning = 10\npending_critical = 5", "health.pending_critical",
         "must be at least pending_warning (10), got 5"),
        ("[health]\nworkers_warning = 2\nworkers_critical = 3", "health.workers_critical",
         "must be at most workers_warning (2), got 3"),
    ],
)
def test_each_error_names_file_key_and_expectation(tmp_path, text, key, fragment):
    error = load_error(tmp_path, text + "\n")
    assert error.key == key
    assert f": {key}: " in str(error)
    assert fragment in str(error)


def test_min_workers_past_max_workers_is_an_error_only_when_the_pool_balances():
    pools = config_from_dict({"pools": {"a": {"queues": ["x", "y", "z"], "min_workers": 5},
                                        "b": {"queues": ["x"], "balance": "auto", "min_workers": 3,
                                              "max_workers": 3, "balance_cooldown": 0.5}}}).pools
    assert pools["a"].balance == "off" and pools["a"].min_workers == 5
    assert (pools["b"].balance, pools["b"].max_workers, pools["b"].balance_cooldown) == ("auto", 3, 0.5)


def test_a_float_setting_accepts_an_int_and_big_ints_are_refused(tmp_path):
    assert load_config(write(tmp_path, "[pools.default]\ntimeout = 5\n")).pools["default"].timeout == 5.0
    error = load_error(tmp_path, "[pools.default]\ntries = 99999999999999999999\n")
    assert error.key == "pools.default.tries"


def test_malformed_toml_reports_line_and_column(tmp_path):
    error = load_error(tmp_path, "[storage]\nlease = = 3\n")
    assert "invalid TOML" in str(error) and "line 2, column" in str(error)
    assert load_error(tmp_path, "[pools.default]\n[pools.default]\n").key is None


def test_non_utf8_bytes_are_reported_with_their_line(tmp_path):
    path = write(tmp_path, b"[storage]\nurl = '\xff'\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text: bad byte 0xff on line 2"):
        load_config(path)


def test_a_missing_file_says_how_to_make_one(tmp_path):
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: file not found (`jobrt init` writes a default one)"


def test_a_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    "error, fragment",
    [
        (PermissionError(13, "Permission denied"), "permission denied"),
        (OSError(5, "Input/output error"), "Input/output error"),
    ],
)
def test_an_unreadable_file(tmp_path, monkeypatch, error, fragment):
    path = write(tmp_path, "")

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(runtime.config.load, "open", refuse, raising=False)  # chmod 0 does not stop root
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read the file: {fragment}"


def test_a_huge_file_is_refused(tmp_path):
    path = write(tmp_path, b"#" * (2 << 20))
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_config(path)


def test_deep_nesting_is_a_config_error(tmp_path):
    load_error(tmp_path, "x = " + "[" * 100_000 + "]" * 100_000 + "\n")


def test_a_non_table_document_is_a_config_error():
    with pytest.raises(ConfigError, match="must be a TOML document"):
        config_from_dict([1, 2])  # type: ignore[arg-type]


# -- the `jobrt init` template ----------------------------------------------------------


def test_the_template_loads_as_the_defaults_but_names_the_example_module(tmp_path):
    path = str(tmp_path / "supervisor.toml")
    assert write_default_config(path) == [path, str(tmp_path / "myjobs.py")]
    with open(path, encoding="utf-8") as file:
        assert file.read() == default_config_text()
    expected = config_from_dict({"jobs": {"modules": ["myjobs"]}}, path=path, base_dir=str(tmp_path))
    assert load_config(path) == expected
    assert expected.module_path == (str(tmp_path),)  # path = ["."]: the file's directory
    assert load_config(write(tmp_path, default_config_text(modules=["jobs.examples"]), "x.toml")) \
        == config_from_dict({}, path=str(tmp_path / "x.toml"), base_dir=str(tmp_path))


def test_the_template_is_tomli_w_toml_holding_exactly_the_defaults():
    document = tomllib.loads(default_config_text())
    expected = {section: {s.name: s.default for s in settings_of(section)} for section in SECTIONS}
    expected["jobs"]["modules"] = ["myjobs"]
    expected["pools"] = {"default": expected.pop(POOL)}
    expected["rate_limits"] = {}  # its example is commented out
    assert document == expected
    assert "backoff = [\n    10,\n    60,\n    300,\n]" in default_config_text()  # tomli-w's layout


def test_the_templates_commented_schedule_loads_once_uncommented(tmp_path):
    keys = ("[schedules.", "job =", "cron =", "timezone =", "args =", "catch_up =", "overlap =")
    text = "\n".join(line[2:] if line.startswith(tuple("# " + k for k in keys)) else line
                     for line in default_config_text(modules=["jobs.examples"]).splitlines())
    text = text.replace("myjobs:hello", "jobs.examples:noop").replace('args = ["scheduler"]', "")
    [schedule] = load_config(write(tmp_path, text)).schedules.values()
    assert (schedule.name, schedule.job, schedule.cron) == ("hello", "jobs.examples:noop", "*/5 * * * *")


NASTY = ['C:\\jobs\\"quoted" \'single\' db', "tab\there, newline\nthere", "\\u00e9 is not é",
         "# not a comment", "]]} = [", "\x7f\x01 control", "trailing backslash\\"]


@pytest.mark.parametrize("text", NASTY)
def test_the_template_escapes_values_that_need_it(tmp_path, text):
    values = {"storage": {"url": "sqlite:///" + "".join(c for c in text if c.isprintable())},
              "jobs": {"modules": ["jobs.examples"], "path": [text, "."]}}
    path = write(tmp_path, default_config_text(values=values))
    assert load_config(path) == config_from_dict(values, path=path, base_dir=str(tmp_path))
    assert load_config(path).storage_url == values["storage"]["url"]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1))
def test_the_template_writes_any_path_back_as_it_was(text):
    document = tomllib.loads(default_config_text(values={"jobs": {"path": [text]}}))
    assert document["jobs"]["path"] == [text]


def test_the_template_refuses_a_value_for_no_setting_or_one_it_cannot_write_inline():
    with pytest.raises(ValueError, match="no setting storage.urll"):
        default_config_text(values={"storage": {"urll": "x"}})
    with pytest.raises(ValueError, match="no setting nope."):
        default_config_text(values={"nope": {}})
    with pytest.raises(TypeError, match="backoff"):
        default_config_text(values={POOL: {"backoff": {"base": 1}}})


def test_init_writes_an_example_job_module_that_registers_a_job(tmp_path, monkeypatch):
    from runtime.registry import collect

    config = load_config(write_default_config(tmp_path / "supervisor.toml")[0])
    monkeypatch.setattr(sys, "path", list(sys.path))  # collect() puts the file's directory on it
    try:
        registry = collect(config.modules, config.module_path, config.path)
        assert registry[runtime.config.init_file.EXAMPLE_JOB].func("you") == "hello, you"
    finally:
        sys.modules.pop("myjobs", None)


def test_init_keeps_an_existing_job_module(tmp_path):
    module = write(tmp_path, "# my own jobs\n", "myjobs.py")
    path = str(tmp_path / "supervisor.toml")
    assert write_default_config(path) == [path]
    with open(module) as file:
        assert file.read() == "# my own jobs\n"


@pytest.mark.parametrize("name,fragment", [
    ("", "'' is not a file name: give the file to write, e.g. `jobrt init supervisor.toml`"),
    (".", ".: is a directory: give the file to write, e.g. `jobrt init ./supervisor.toml`"),
])
def test_init_names_a_path_that_is_no_file_and_says_what_to_do(name, fragment):
    with pytest.raises(ConfigError) as info:
        write_default_config(name)
    assert fragment in str(info.value)


def test_the_template_explains_every_key_with_its_unit():
    lines = default_config_text().splitlines()
    for setting in SETTINGS:  # a name may recur in another section: [metrics] and [dashboard] listen
        header = "[pools.default]" if setting.section == POOL else f"[{setting.section}]"
        start = lines.index(header)
        ends = [i for i, line in enumerate(lines) if i > start and line.startswith("[")]
        (index,) = [i for i, line in enumerate(lines[:ends[0] if ends else None])
                    if i > start and line.startswith(f"{setting.name} = ")]
        assert lines[index - 1].startswith("# ")
        if setting.unit:
            assert lines[index - 1].endswith(f"({setting.unit})")
    assert "[pools.default]" in lines


def test_init_refuses_to_overwrite(tmp_path):
    path = write(tmp_path, "# mine\n")
    with pytest.raises(ConfigError) as info:
        write_default_config(path)
    assert str(info.value).startswith(f"{path}: already exists; not overwriting")
    with open(path) as file:
        assert file.read() == "# mine\n"


def test_init_into_a_missing_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot write the file: the directory .* does not exist"):
        write_default_config(tmp_path / "no" / "supervisor.toml")
    assert not (tmp_path / "no").exists()


# -- fuzzing ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as directory:
        yield directory


def loads_or_config_error(path):
    try:
        config = load_config(path)
    except ConfigError as error:
        assert "\n" not in str(error) and str(error).startswith(path + ": ")
        return None
    assert config.pools
    return config


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text())
def test_any_text_loads_or_raises_config_error(scratch, text):
    loads_or_config_error(write(scratch, text))


@FUZZ
@given(st.binary())
def test_any_bytes_load_or_raise_config_error(scratch, data):
    loads_or_config_error(write(scratch, data))


KEYS = sorted(
    {s.name for s in SETTINGS} | {"storage", "jobs", "pools", "health", "default"}
    | {"base", "factor", "max", "jitter"}
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["default", "jobs.examples", "sqlite:///x.db", ".", "high"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
settings_tables = st.dictionaries(keys, values, max_size=6)
documents = st.one_of(
    st.dictionaries(keys, values, max_size=4),
    st.fixed_dictionaries(
        {},
        optional={
            "storage": settings_tables,
            "jobs": settings_tables,
            "health": settings_tables,
            "pools": st.dictionaries(keys, settings_tables, max_size=3),
        },
    ),
)


@FUZZ
@given(documents)
def test_any_toml_document_loads_or_raises_config_error(scratch, document):
    path = write(scratch, tomli_w.dumps(document))
    config = loads_or_config_error(path)
    if config is not None:
        assert config == config_from_dict(document, path=path, base_dir=scratch)
