"""Fuzzing the `jobrt` command line: whatever the arguments, it answers as the README says.

For every subcommand, over ids, limits, --args/--kwargs JSON (and @FILE), queue names,
delays, priorities, job names and configs with bad storage urls:

- the exit status is 0, 1 or 2, and no exception escapes (no traceback);
- with --json, stdout is exactly one JSON document, and on an error it carries
  "error" and "exit" (health: its report, whose status matches the exit status);
- without --json, an error is one line on stderr.

The bulk runs `runtime.cli.main.main(argv)` in this process (one process per example would
take minutes); a few command lines run the real `jobrt` in a subprocess, with bytes
that are not UTF-8 in argv. Examples are derandomized: a failure reproduces.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from runtime.cli import main
from runtime.storage import NewJob, Outcome, open_storage
from tests.conftest import REPO, write_config

# Tokens argparse would take for --help (prints help, not an answer) or for --json
# (the test decides whether a command line asks for JSON) are kept out of the junk.
RESERVED_PREFIXES = ("-h", "--h", "--j")
STDIN_DATA = b'{"from": "stdin"}'


def add_jobs(url: str, base_dir) -> None:
    """A pending, a succeeded and a failed job."""
    storage = open_storage(url, base_dir=str(base_dir))
    try:
        payload = orjson.dumps([[], {}])
        storage.enqueue([NewJob("default", "jobs.examples:echo", payload, 0.0)] * 3)
        claimed = storage.claim("fuzz", ["default"], 2, time.time() + 60, time.time())
        storage.settle("fuzz", [Outcome(claimed[0].id, claimed[0].attempt, "succeeded", time.time(),
                                        result=b"null"),
                                Outcome(claimed[1].id, claimed[1].attempt, "failed", time.time(),
                                        error="x")])
    finally:
        storage.close()


@pytest.fixture(scope="module")
def site(request, tmp_path_factory):
    """A directory of configs, good and bad, and files for --args @FILE."""
    root = tmp_path_factory.mktemp("fuzz")
    configs = {}

    def config(name, **storage):
        directory = root / name
        directory.mkdir()
        configs[name] = str(write_config(directory, storage=storage or None))
        return directory

    add_jobs("sqlite:///jobs.db", config("good"))
    try:
        pg_url = request.getfixturevalue("pg_cluster").create_database()
    except pytest.skip.Exception:  # no PostgreSQL here (in CI it is a failure, not a skip)
        pass
    else:
        add_jobs(pg_url, config("pg", url=pg_url))
    (root / "a-file").write_text("")
    config("missing", url="sqlite:///no/such/dir/x.db")
    config("uncreatable", url=f"sqlite:///{root / 'a-file' / 'x.db'}")  # under a regular file
    config("nul", url="sqlite:///x%00.db")
    config("mysql", url="mysql://db.example/jobs")
    config("host", url="sqlite://host/x.db")
    config("pgbad", url="postgresql://[::1")
    config("memory", url="memory://")
    (root / "broken.toml").write_text("[storage\n")
    configs["broken"] = str(root / "broken.toml")
    configs["absent"] = str(root / "absent.toml")
    configs["directory"] = str(root)
    files = {"list": b"[1, 2]", "bigint": b"[123456789012345678901234567890]", "object": b'{"a": 1}',
             "latin1": b'["\xe9"]', "nan": b"[NaN]"}
    for name, data in files.items():
        (root / f"{name}.json").write_bytes(data)
    at_files = [f"@{root / name}.json" for name in files] + [f"@{root}", f"@{root / 'nope.json'}", "@"]
    (root / "init").mkdir()
    return {"root": root, "configs": configs, "at_files": at_files}


def texts(*samples: str, max_size: int = 12):
    return st.one_of(st.sampled_from(samples), st.text(max_size=max_size))


NUMBERS = ("0", "-1", "1", "9223372036854775807", "9223372036854775808", "18446744073709551616",
           "1e3", "1.5", " 5", "5_0", "\u0663", "", "x", "nan", "0x10", "-9223372036854775809")
# Mostly ids of jobs that exist (or just might), so most examples reach storage.
ids = st.one_of(st.integers(1, 8).map(str), st.integers(1, 8).map(str),
                st.integers(-2**70, 2**70).map(str), texts(*NUMBERS))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**80, 2**80), st.floats(), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=6)


queues = st.one_of(st.sampled_from(["default", "low", "", "a b", "x" * 201, "\t", "\udcff"]),
                   st.text(alphabet=st.characters(blacklist_categories=("Zs", "Cc")), max_size=8))


def as_json_text(value) -> str:
    return json.dumps(value)  # NaN/Infinity come out as the non-JSON words: refused


def json_args(site, kind):
    return st.one_of(st.lists(json_values, max_size=3).map(as_json_text) if kind is list else
                     st.dictionaries(st.text(max_size=3), json_values, max_size=3).map(as_json_text),
                     json_values.map(as_json_text), texts("[]", "{}", "[1,", "-", "[1e999]", "null",
                                                          "[\"\\ud800\"]", "[" * 5000),
                     st.sampled_from(site["at_files"]))


@st.composite
def command_lines(draw, site):
    """(argv, asked for --json)."""
    configs = site["configs"]
    good = st.sampled_from([configs[name] for name in ("good", "pg") if name in configs])
    config = ["--config", draw(st.one_of(good, good, st.sampled_from(sorted(configs.values()))))]
    take_json = draw(st.booleans())
    kind = draw(st.sampled_from(["status", "workers", "health", "job", "failed list", "failed show",
                                 "failed retry", "failed forget", "failed flush", "clear", "enqueue",
                                 "init", "systemd-unit", "start"]))
    words, options = kind.split(), list(config)
    if kind == "job" or kind == "failed show":
        options.append(draw(ids))
    elif kind in ("failed retry", "failed forget"):
        options += draw(st.lists(ids, max_size=3))
        if kind == "failed retry" and draw(st.booleans()):
            options.append("--all")
    elif kind == "failed list" and draw(st.booleans()):
        options += ["--limit", draw(ids)]
    elif kind == "clear":
        options += ["--queue", draw(queues)]
    elif kind == "enqueue":
        options.append(draw(st.one_of(
            st.just("jobs.examples:echo"),
            st.sampled_from(["jobs.examples:echo", "jobs.examples:noop", "jobs.examples:nope",
                             "jobs.nope:x", "jobs.examples:", ":echo", "", "nope", "os:getcwd"]),
            st.text(alphabet=st.characters(blacklist_characters=":"), max_size=10))))
        valid = draw(st.booleans())  # half the time only the JSON may be wrong: it reaches storage
        for option, good_values, values in (
                ("--args", None, json_args(site, list)), ("--kwargs", None, json_args(site, dict)),
                ("--queue", st.sampled_from(["default", "low", "q.1"]), queues),
                ("--delay", st.floats(0, 1e6).map(repr),
                 st.one_of(st.floats().map(repr),
                           texts("nan", "inf", "-inf", "-1", "1e300", "0", "3600", "3153600001",
                                 "1e-300", "-0", "1_0", " 1"))),
                ("--priority", st.integers(-2**31, 2**31 - 1).map(str),
                 st.one_of(st.integers(-2**40, 2**40).map(str), texts("x", "1.5")))):
            if draw(st.booleans()):
                options += [option, draw(good_values if valid and good_values is not None else values)]
    elif kind == "init":
        options = [draw(st.one_of(
            st.text(alphabet=st.characters(blacklist_characters="/\0"), min_size=1, max_size=20)
            .map(lambda name: str(site["root"] / "init" / name)),
            st.sampled_from(["", ".", str(site["root"]), "/proc/nope/x.toml",
                             str(site["root"] / "nodir" / "x.toml"), "a\0b"])))]
        take_json = False  # init, start and systemd-unit take no --json
    elif kind == "systemd-unit":
        take_json = False
        if draw(st.booleans()):
            options += ["--user", draw(texts("nobody", "", "root", "a b", "-x"))]
    elif kind == "start":  # only configs that fail to load: a good one would run a supervisor
        options = ["--config", draw(st.sampled_from([configs["broken"], configs["absent"],
                                                     configs["directory"]]))]
        take_json = False
    junk = []
    if draw(st.integers(0, 9)) == 0:  # one command line in ten has stray arguments
        junk = draw(st.lists(texts("--", "-", "--all", "--limit", "--queue", "7", "a\nb", "\x00",
                                   "--config=x", "--bogus", "-x"), min_size=1, max_size=2))
        junk = [token for token in junk if not token.startswith(RESERVED_PREFIXES)]
    argv = words + options + (["--json"] if take_json else []) + junk
    return argv, take_json


def check_answer(argv, take_json: bool, code, out: str, err: str) -> None:
    """The README's promises about one run of `jobrt`."""
    assert code in (0, 1, 2), (argv, code, out, err)
    assert "Traceback" not in err, (argv, err)
    command = argv[0]
    if take_json:
        document = json.loads(out)  # exactly one document (json.loads refuses trailing data)
        if code and isinstance(document, dict) and "error" in document:
            assert document["exit"] == code and document["error"].strip(), (argv, document)
            assert err.count("\n") == 1 and err.startswith("jobrt: "), (argv, err)
        elif code:
            assert command == "health", (argv, code, document)  # its report says why
        if command == "health":
            assert document["status"] == {0: "healthy", 1: "warning", 2: "critical"}[code]
    elif code and not (command == "health" and not err):
        assert err.count("\n") == 1 and err.startswith("jobrt: "), (argv, code, err)
        assert err.strip().splitlines() == [err.strip()], (argv, err)  # no other line break either
    if command == "systemd-unit" and code == 0:
        assert all(line.startswith("jobrt: note: ") for line in err.splitlines()), err


@settings(max_examples=1500, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_any_command_line_gets_a_documented_answer(site, capsys, data):
    argv, take_json = data.draw(command_lines(site))
    capsys.readouterr()
    stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(STDIN_DATA))
    try:
        code = main.main(argv)
    finally:
        sys.stdin = stdin
    out, err = capsys.readouterr()
    event(f"{' '.join(argv[:2 if argv[0] == 'failed' else 1])} exits {code}")  # --hypothesis-show-statistics
    check_answer(argv, take_json, code, out, err)


@pytest.mark.parametrize("argv,take_json", [
    ([b"job", b"\xff", b"--config", b"{good}", b"--json"], True),
    ([b"enqueue", b"--config", b"{good}", b"jobs.examples:echo", b"--queue", b"q\xff", b"--json"], True),
    ([b"enqueue", b"--config", b"{good}", b"jobs.examples:echo", b"--args", b'["\xff"]'], False),
    ([b"enqueue", b"--config", b"{good}", b"jobs.examples:\xff", b"--json"], True),
    ([b"enqueue", b"--config", b"{good}", b"jobs.examples:echo", b"--kwargs", b"-", b"--json"], True),
    ([b"status", b"--config", b"{nul}", b"x\ny", b"--json"], True),
    ([b"clear", b"--config", b"{good}", b"--queue", b"\xff\xfe"], False),
    ([b"failed", b"retry", b"1", b"2", b"3", b"--config", b"{good}"], False),
    ([b"health", b"--config", b"{mysql}", b"--json"], True),
    ([b"failed", b"retry", b"1", b"2", b"3", b"--config", b"{pg}", b"--json"], True),
    ([b"job", b"9223372036854775808", b"--config", b"{pg}"], False),
    ([b"init", b"{root}/init/\xff.toml"], False),
    ([b"systemd-unit", b"--config", b"{good}", b"--user", b"\xff"], False),
    ([], False),
])
def test_the_real_command_answers_as_documented(site, argv, take_json):
    names = {**{name: os.fsencode(path) for name, path in site["configs"].items()},
             "root": os.fsencode(str(site["root"]))}
    if b"{pg}" in argv and "pg" not in names:
        pytest.skip("PostgreSQL is not installed")

    def fill(arg: bytes) -> bytes:
        for name, path in names.items():
            arg = arg.replace(b"{%s}" % name.encode(), path)
        return arg

    argv = [fill(arg) for arg in argv]
    result = subprocess.run([sys.executable, "-m", "runtime.cli", *argv], input=STDIN_DATA,
                            capture_output=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    # JSON is UTF-8 whatever jobrt was given; text may echo a file name's bytes as they are.
    out = result.stdout.decode("utf-8", "strict" if take_json else "surrogateescape")
    err = result.stderr.decode("utf-8", "replace")
    check_answer([os.fsdecode(a) for a in argv] or [""], take_json, result.returncode, out, err)
