"""`sfteval ratings ...`: run a blind human-rating study for a team, from the shell.

    create BASE_RUN TUNED_RUN -b BENCH --name NAME [--overlap K]   snapshot the pairs
    add-raters STUDY NAME... [--quota N] --base-url URL            one private link each
    progress STUDY                                                 per rater, and coverage
    export STUDY [--format csv|jsonl]                              every vote, unblinded
    results (STUDY | --from-export FILE)                           win rate, bias, agreement

Everything reads and writes the vote store named by --db (a SQLite file, or
postgresql://USER@HOST/DB for raters on several machines); `results --from-export`
needs no database at all.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import typer

from sfteval.errors import SftevalError

ratings_app = typer.Typer(help="Blind human rating for a team: studies, rater links, progress, exports, results.",
                          no_args_is_help=True)

_DB_HELP = ("Vote store: a SQLite path, sqlite:///PATH or postgresql://USER@HOST/DB. "
            "Default: $SFTEVAL_RATINGS_DB, else REPORTS/ratings.sqlite3.")


def _store(db: Optional[str], reports: Path):  # -> VoteStore; the import stays inside the command
    from sfteval.ratings import VoteStore

    return VoteStore(db or os.environ.get("SFTEVAL_RATINGS_DB") or reports / "ratings.sqlite3")


@ratings_app.command("create")
def create(
    base_run: Path = typer.Argument(..., help="The base model's run folder."),
    tuned_run: Path = typer.Argument(..., help="The tuned model's run folder."),
    benchmark: str = typer.Option(..., "--benchmark", "-b", help="A generative benchmark both runs have."),
    name: str = typer.Option(..., "--name", help="Study name raters may see: keep model names out of it."),
    overlap: int = typer.Option(2, "--overlap", min=1, help="Raters per item (agreement needs 2 or more)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Keep a fixed hash-chosen subset of items."),
    skip_identical: bool = typer.Option(False, "--skip-identical", help="Drop items where both outputs are equal."),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    reports: Path = typer.Option(Path("reports"), "--reports", help="Reports folder (for the default --db)."),
) -> None:
    """Snapshot the two runs' outputs into a new study."""
    from sfteval.ratings import build_study

    study = build_study(base_run, tuned_run, benchmark, study_id=name, limit=limit, skip_identical=skip_identical,
                        overlap=overlap)
    store = _store(db, reports)
    made = store.create_study(study)
    typer.echo(f"study '{study.study_id}' {'created' if made else 'already exists'}: {len(study.items)} items, "
               f"{overlap} rater(s) per item, in {store.display_url}")
    typer.echo(f"next: sfteval ratings add-raters {study.study_id} NAME... --base-url http://HOST:8502")
    raise typer.Exit(0)


@ratings_app.command("add-raters")
def add_raters(
    study: str = typer.Argument(..., help="The study's name."),
    names: list[str] = typer.Argument(..., help="Raters' names (case and spacing do not make a new rater)."),
    base_url: str = typer.Option("http://127.0.0.1:8502", "--base-url",
                                 help="Where `sfteval dashboard --rate STUDY` will be reachable for the raters."),
    quota: Optional[int] = typer.Option(None, "--quota", min=1, help="At most this many items per rater."),
    items: Optional[Path] = typer.Option(None, "--items", help="A file of item ids (one a line): assign exactly these."),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    reports: Path = typer.Option(Path("reports"), "--reports", help="Reports folder (for the default --db)."),
) -> None:
    """Create rater accounts and print one private link each (shown once, never stored)."""
    from sfteval.ratings.access import coverage_gaps, rater_link

    store = _store(db, reports)
    wanted = None
    if items is not None:
        if not items.is_file():
            raise SftevalError("item list not found", path=str(items), field="--items")
        wanted = [s.strip() for s in items.read_text(encoding="utf-8").splitlines() if s.strip()]
    made = store.add_raters(study, names, quota=quota, items=wanted)
    accounts = {a.display_name: a for a in store.raters(study)}
    for name, token in made:
        typer.echo(f"{name}\t{accounts[name].assigned} items\t{rater_link(base_url, token)}")
    info = store.study(study)
    assigned = {a.rater: set(store.order_for(study, a.rater)) for a in store.raters(study)}
    gaps = coverage_gaps(store.item_ids(study), assigned, info.overlap)
    if gaps:
        typer.secho(f"note: {len(gaps)} item(s) have fewer than {info.overlap} raters; add raters or raise quotas",
                    fg=typer.colors.YELLOW, err=True)
    typer.echo(f"serve them: sfteval dashboard --rate {study} --host 0.0.0.0 --port "
               f"{base_url.rsplit(':', 1)[-1].strip('/') if base_url.count(':') > 1 else 8502}", err=True)
    raise typer.Exit(0)


@ratings_app.command("progress")
def progress(
    study: str = typer.Argument(..., help="The study's name."),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    reports: Path = typer.Option(Path("reports"), "--reports", help="Reports folder (for the default --db)."),
) -> None:
    """Each rater's progress, and items still short of the study's overlap."""
    from sfteval.ratings.access import coverage_gaps

    store = _store(db, reports)
    info = store.study(study)
    accounts = store.raters(study)
    width = max([len(a.display_name) for a in accounts] + [5])
    typer.echo(f"{'rater':<{width}}  assigned  rated  done")
    for a in accounts:
        share = a.done / a.assigned if a.assigned else 1.0
        typer.echo(f"{a.display_name:<{width}}  {a.assigned:>8}  {a.done:>5}  {share:>4.0%}")
    by_rater: dict[str, set[str]] = {}
    for v in store.votes(study):
        by_rater.setdefault(str(v["rater"]), set()).add(str(v["item"]))
    short = coverage_gaps(store.item_ids(study), by_rater, info.overlap)
    typer.echo(f"{info.n_items - len(short)} of {info.n_items} items have {info.overlap}+ votes")
    raise typer.Exit(0)


@ratings_app.command("export")
def export(
    study: str = typer.Argument(..., help="The study's name."),
    fmt: str = typer.Option("csv", "--format", help="csv or jsonl."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="File to write (default: standard output)."),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    reports: Path = typer.Option(Path("reports"), "--reports", help="Reports folder (for the default --db)."),
) -> None:
    """Every vote: study, item, rater, the side tuned was shown on, choice, outcome, time."""
    if fmt not in ("csv", "jsonl"):
        raise SftevalError(f"unknown format {fmt!r}", field="--format", hint="csv or jsonl")
    store = _store(db, reports)
    store.item_ids(study)  # an unknown study is an error, not an empty file
    from sfteval.commands.output import write_or_print

    write_or_print(store.export_csv(study) if fmt == "csv" else store.export_jsonl(study), out)
    raise typer.Exit(0)


@ratings_app.command("results")
def results(
    study: Optional[str] = typer.Argument(None, help="The study's name (or use --from-export)."),
    from_export: Optional[Path] = typer.Option(None, "--from-export", help="Recompute from a CSV/JSONL export alone."),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
    reports: Path = typer.Option(Path("reports"), "--reports", help="Reports folder (for the default --db)."),
) -> None:
    """Win rate of tuned over base with its CI, counts, left bias per rater, agreement."""
    from sfteval.ratings import read_export, results_from_votes, study_results

    if from_export is not None:
        votes = read_export(from_export)
        sids = sorted({str(v["study"]) for v in votes})
        if len(sids) != 1 and study is None:
            raise SftevalError(f"the export holds {len(sids)} studies; name one", path=str(from_export))
        sid = study or sids[0]
        res = results_from_votes(sid, [v for v in votes if v["study"] == sid])
    elif study is not None:
        res = study_results(_store(db, reports), study)
    else:
        raise SftevalError("name a study or pass --from-export FILE", field="STUDY")
    if res.n_votes == 0:
        typer.echo(f"study {res.study_id}: no votes yet")
        raise typer.Exit(0)
    w = res.win_rate
    ci = "n/a" if math.isnan(w.ci95[0]) else f"[{w.ci95[0]:.3f}, {w.ci95[1]:.3f}]"
    typer.echo(f"study {res.study_id}: {res.n_votes} votes on {res.n_rated_items} items")
    typer.echo(f"tuned win rate {w.value:.3f} 95% CI {ci} (ties and both-bad count half; bootstrap over items)")
    typer.echo("counts: " + ", ".join(f"{k} {v}" for k, v in res.counts.items()))
    for r in res.raters:
        bias = "n/a" if r.left_bias is None else (f"{r.left_bias.value:+.2f} "
                                                  f"[{r.left_bias.ci95[0]:+.2f}, {r.left_bias.ci95[1]:+.2f}]")
        typer.echo(f"  {r.rater}: {r.votes} votes (tuned {r.tuned}, base {r.base}, tie {r.tie}, "
                   f"both bad {r.both_bad}); left bias {bias}")
    ag = res.agreement
    if ag is None:
        typer.echo("agreement: no item has two raters yet")
    else:
        alpha = "undefined" if ag.alpha is None else f"{ag.alpha:.3f}"
        typer.echo(f"agreement: Krippendorff's alpha {alpha}, raw {ag.percent:.1%} over {ag.n_items} items, "
                   f"{ag.n_raters} raters")
    raise typer.Exit(0)


def register(app: typer.Typer) -> None:
    app.add_typer(ratings_app, name="ratings")
