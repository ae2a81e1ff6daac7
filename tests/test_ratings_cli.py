"""`sfteval ratings`: a study run from the shell, links, progress, exports, results."""

from __future__ import annotations

import re
from pathlib import Path

import sys

import pytest
from test_ratings import _write_run

from sfteval.cli import main
from sfteval.ratings import VoteStore, tuned_side


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    def invoke(*args: str) -> tuple[int, str]:
        """The real entry point (exit codes included); returns (code, stdout + stderr)."""
        monkeypatch.setattr(sys, "argv", ["sfteval", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        out = capsys.readouterr()
        return int(exc.value.code or 0), out.out + out.err

    return invoke


def test_a_team_study_from_the_shell(tmp_path: Path, cli) -> None:
    _invoke = cli
    ids = [str(i) for i in range(12)]
    base = _write_run(tmp_path, "b-0001", {i: f"base {i}" for i in ids})
    tuned = _write_run(tmp_path, "t-0002", {i: f"tuned {i}" for i in ids})
    db = str(tmp_path / "votes.sqlite3")
    rc, out = _invoke("ratings", "create", str(base), str(tuned), "-b", "chat", "--name", "round-1", "--overlap",
                      "2", "--db", db)
    assert rc == 0 and "12 items, 2 rater(s) per item" in out, out
    rc, out = _invoke("ratings", "add-raters", "round-1", "Ana", "Ben", "Cy", "--base-url", "http://10.1.2.3:8502",
                      "--db", db)
    assert rc == 0, out
    links = dict(re.findall(r"^(\w+)\t\d+ items\t(\S+)$", out, re.M))
    assert set(links) == {"Ana", "Ben", "Cy"}
    assert all(u.startswith("http://10.1.2.3:8502/?t=") for u in links.values())
    store = VoteStore(db)
    assert store.authenticate(links["Ana"].split("?t=")[1], "round-1") == ("round-1", "ana")
    rc, out = _invoke("ratings", "add-raters", "round-1", "ana", "--db", db)
    assert rc == 2 and "already in study" in out
    for rater in ("ana", "ben", "cy"):
        for item in store.order_for("round-1", rater):
            store.record_vote("round-1", item, rater, tuned_side("round-1", rater, item))  # always tuned
    rc, out = _invoke("ratings", "progress", "round-1", "--db", db)
    assert rc == 0 and "12 of 12 items have 2+ votes" in out and re.search(r"Ana\s+8\s+8\s+100%", out), out
    export = tmp_path / "votes.csv"
    rc, _ = _invoke("ratings", "export", "round-1", "--format", "csv", "-o", str(export), "--db", db)
    assert rc == 0 and export.read_text().startswith("seq,study,item,rater,choice,tuned_side,outcome,created")
    rc, from_db = _invoke("ratings", "results", "round-1", "--db", db)
    rc2, from_export = _invoke("ratings", "results", "--from-export", str(export))
    assert rc == rc2 == 0 and "tuned win rate 1.000" in from_db, from_db
    assert from_db == from_export  # the export alone gives the same results
    rc, out = _invoke("ratings", "results", "nope", "--db", db)
    assert rc == 2 and "unknown study" in out
