"""`sfteval dashboard`: serve the Streamlit app (sfteval/dashboard/app.py) on a reports folder.

Binds to 127.0.0.1 unless --host says otherwise: the Rate page writes votes, so the
app is not exposed to the network by accident. Settings reach the app through the
environment (SFTEVAL_REPORTS, SFTEVAL_RATINGS_DB). The app ships inside the package
(sfteval/dashboard/, package data), so a wheel install serves it too.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from sfteval.errors import SftevalError

HELP = """Open the dashboard: runs, comparisons, samples, checkpoints, and blind rating.

\b
Examples:
  sfteval dashboard                         reports/ on http://127.0.0.1:8501
  sfteval dashboard --reports out --port 8600
  sfteval dashboard --host 0.0.0.0          serve raters on your network

Stop it with Ctrl-C. Votes are kept in --db (default REPORTS/ratings.sqlite3).
"""


def app_path() -> Path:
    path = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
    if not path.is_file():  # shipped as package data; missing only in a broken install
        raise SftevalError("the dashboard app is missing from the sfteval package", path=str(path),
                           hint="reinstall sfteval with the dashboard extra: pip install 'sfteval[dashboard]'")
    return path


def streamlit_argv(app: Path, host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",  # never try to open a browser on a server
        "--server.fileWatcherType", "none",  # users do not edit the app; no polling of the tree
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",  # no developer menu / deploy button for raters
    ]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard_command(
    reports: Path = typer.Option(Path("reports"), "--reports", help="Reports folder (what `sfteval run --out` wrote)."),
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; loopback unless you mean to share it."),
    db: Optional[Path] = typer.Option(None, "--db", help="Ratings database (SQLite). Default: REPORTS/ratings.sqlite3."),
) -> None:
    if importlib.util.find_spec("streamlit") is None:
        raise SftevalError("streamlit is not installed", hint="pip install 'sfteval[dashboard]'")
    if not reports.is_dir():
        raise SftevalError("reports folder not found", path=str(reports), field="--reports",
                           hint="point --reports at the folder `sfteval run --out` wrote to")
    env = dict(os.environ)
    env["SFTEVAL_REPORTS"] = str(reports.resolve())
    env["SFTEVAL_RATINGS_DB"] = str((db or reports / "ratings.sqlite3").resolve())
    if not _is_loopback(host):
        typer.secho(f"warning: serving on {host}: anyone who can reach this port can read runs and cast votes",
                    fg=typer.colors.YELLOW, err=True)
    typer.echo(f"sfteval dashboard on http://{host}:{port} (reports: {env['SFTEVAL_REPORTS']})", err=True)
    proc = subprocess.Popen(streamlit_argv(app_path(), host, port), env=env)
    # Forward a polite stop to the server so it never outlives this command.
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=10)
        rc = 0  # Ctrl-C is how a dashboard is meant to stop
    raise typer.Exit(rc if rc >= 0 else 0)


def register(app: typer.Typer) -> None:
    app.command("dashboard", help=HELP)(dashboard_command)
