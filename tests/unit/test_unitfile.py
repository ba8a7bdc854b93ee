"""Words and paths as systemd reads them from a generated unit."""

import pytest

from runtime.cli.systemd_unit import _exec_arg, _specifiers, _under


def test_exec_arguments_escape_specifiers_variables_and_quotes():
    assert _exec_arg("/usr/bin/jobrt") == "/usr/bin/jobrt"
    assert _exec_arg("/srv/a b") == '"/srv/a b"'
    assert _exec_arg("/srv/100%") == "/srv/100%%"
    assert _exec_arg("/srv/$HOME") == '"/srv/$$HOME"'
    assert _exec_arg('/srv/a"b\\c') == '"/srv/a\\"b\\\\c"'
    with pytest.raises(ValueError):
        _specifiers("/srv/a\nb")


def test_under_matches_whole_path_components_only():
    assert _under("/etc/jobrt/jobs.db", ("/usr", "/etc")) == "/etc"
    assert _under("/etcetera/jobs.db", ("/etc",)) is None
    assert _under("/tmp", ("/tmp",)) == "/tmp"
