"""`sfteval dashboard`: serve the Streamlit app (sfteval/dashboard/app.py) on a reports folder.

Binds to 127.0.0.1 unless --host says otherwise. Two apps:
- the owner's full dashboard (app.py): on loopback as is; on any other address only
  behind a token made here and printed once (the owner's link);
- `--rate STUDY`: the rater-only app (rate_app.py), the Rate page of one study and
  nothing else, reachable only through the raters' personal links
  (`sfteval ratings add-raters`). This is the one to serve on a network.
Settings reach the app through the environment (SFTEVAL_REPORTS, SFTEVAL_RATINGS_DB,
SFTEVAL_RATE_STUDY, SFTEVAL_OWNER_TOKEN_SHA256: a hash, never the token). Both apps
ship inside the package (sfteval/dashboard/, package data), so a wheel install serves them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import os
import secrets
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
  sfteval dashboard --db postgresql://me@dbhost/votes

\b
A rating panel for a team (raters see the Rate page of one study, nothing else):
  sfteval ratings create BASE_RUN TUNED_RUN -b heldout --name round-1
  sfteval ratings add-raters round-1 Ana Ben Chloe --base-url http://HOST:8502
  sfteval dashboard --rate round-1 --host 0.0.0.0 --port 8502

\b
The full dashboard on a network prints the owner's link (a token) once:
  sfteval dashboard --host 0.0.0.0

Stop it with Ctrl-C. Votes are kept in --db: a SQLite file (default
REPORTS/ratings.sqlite3; refused on a network share) or postgresql://USER@HOST/DB.
"""


def app_path(name: str = "app.py") -> Path:
    path = Path(__file__).resolve().parents[1] / "dashboard" / name
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
    db: Optional[str] = typer.Option(None, "--db", help="Ratings database: a SQLite path, sqlite:///PATH or "
                                     "postgresql://USER@HOST/DB. Default: REPORTS/ratings.sqlite3."),
    rate: Optional[str] = typer.Option(None, "--rate", metavar="STUDY",
                                       help="Serve only the Rate page of STUDY, to raters holding a link."),
) -> None:
    if importlib.util.find_spec("streamlit") is None:
        raise SftevalError("streamlit is not installed", hint="pip install 'sfteval[dashboard]'")
    if not reports.is_dir():
        raise SftevalError("reports folder not found", path=str(reports), field="--reports",
                           hint="point --reports at the folder `sfteval run --out` wrote to")
    env = dict(os.environ)
    env.pop("SFTEVAL_OWNER_TOKEN_SHA256", None)
    env["SFTEVAL_REPORTS"] = str(reports.resolve())
    target = db if db and "://" in db else str(Path(db or reports / "ratings.sqlite3").resolve())
    env["SFTEVAL_RATINGS_DB"] = target
    if rate is not None:
        from sfteval.ratings import VoteStore

        store = VoteStore(target)
        info = store.study(rate)  # an unknown study is an error here, not a blank page later
        env["SFTEVAL_RATE_STUDY"] = rate
        app = app_path("rate_app.py")
        n = len(store.raters(rate))
        typer.echo(f"rater panel for study '{rate}' ({info.n_items} items, {n} rater link(s)) on "
                   f"http://{host}:{port}", err=True)
        if not n:
            typer.secho(f"no raters yet: sfteval ratings add-raters {rate} NAME... --base-url http://HOST:{port}",
                        fg=typer.colors.YELLOW, err=True)
    else:
        app = app_path()
        env.pop("SFTEVAL_RATE_STUDY", None)
        typer.echo(f"sfteval dashboard on http://{host}:{port} (reports: {env['SFTEVAL_REPORTS']})", err=True)
        if not _is_loopback(host):
            token = secrets.token_urlsafe(24)
            env["SFTEVAL_OWNER_TOKEN_SHA256"] = hashlib.sha256(token.encode("utf-8")).hexdigest()
            # Printed once, to the terminal of the person who started it; not logged anywhere else.
            typer.echo(f"owner's link (keep it private): http://{host}:{port}/?owner={token}")
            typer.secho("raters should get their own links to `sfteval dashboard --rate STUDY` instead",
                        fg=typer.colors.YELLOW, err=True)
    proc = subprocess.Popen(streamlit_argv(app, host, port), env=env)
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
