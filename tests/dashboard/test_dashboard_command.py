"""`sfteval dashboard`: flags, loopback default, clear errors (the server itself is
started for real in test_browser.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

from sfteval.cli import app
from sfteval.commands.dashboard import _is_loopback, app_path, streamlit_argv


def test_argv_binds_loopback_by_default_and_runs_the_app() -> None:
    argv = streamlit_argv(app_path(), "127.0.0.1", 8600)
    assert argv[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(argv[4]).name == "app.py" and Path(argv[4]).is_file()
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--server.port") + 1] == "8600"
    assert argv[argv.index("--server.headless") + 1] == "true"


def test_help_shows_defaults() -> None:
    res = CliRunner().invoke(app, ["dashboard", "--help"])
    assert res.exit_code == 0
    assert "127.0.0.1" in res.output and "--reports" in res.output and "--db" in res.output


def test_missing_reports_folder_is_a_clear_error(tmp_path: Path) -> None:
    from sfteval.errors import SftevalError

    res = CliRunner().invoke(app, ["dashboard", "--reports", str(tmp_path / "nope")])
    assert res.exit_code != 0
    assert isinstance(res.exception, SftevalError) and "--reports" in str(res.exception)


def test_loopback_detection() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.5")


def test_the_command_serves_the_app_on_loopback(reports: Path, tmp_path: Path) -> None:
    import urllib.request

    from dash_helpers import serve

    with serve(reports, tmp_path / "r.sqlite3", tmp_path / "server.log") as url:
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    log = (tmp_path / "server.log").read_text()
    assert "http://127.0.0.1:" in log and str(reports.resolve()) in log
