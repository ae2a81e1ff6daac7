"""The vote store on both databases: the same tests on SQLite and on a real PostgreSQL.

PostgreSQL is Debian's server, started by the fixture on 127.0.0.1 in a temp data
directory (tests/pg_server.py); its tests skip when the binaries are absent.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pg_server import new_database, pg_bin, postgres_server
from test_ratings import _write_run

from sfteval.errors import SftevalError
from sfteval.ratings import VoteStore, build_study, read_export, results_from_votes, study_results, tuned_side
from sfteval.ratings.access import assign_items, coverage_gaps, split_token
from sfteval.ratings.store import filesystem_type


@pytest.fixture(scope="module")
def pg_base() -> Iterator[str]:
    if pg_bin() is None:
        pytest.skip("PostgreSQL server binaries not installed (.ci/install-postgres.sh)")
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'votes.sqlite3'}"
    return new_database(request.getfixturevalue("pg_base"))


def _study(tmp_path: Path, store: VoteStore, n: int = 30, overlap: int = 1, name: str = "round-1") -> str:
    ids = [str(i) for i in range(n)]
    base = _write_run(tmp_path, f"b-{name}-0001", {i: f"base answer {i}" for i in ids})
    tuned = _write_run(tmp_path, f"t-{name}-0002", {i: f"tuned answer {i}" for i in ids})
    study = build_study(base, tuned, "chat", study_id=name, overlap=overlap)
    assert store.create_study(study)
    return study.study_id


def test_schema_is_migrated_and_the_database_refuses_double_votes(db_url: str, tmp_path: Path) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    store = VoteStore(db_url)
    sid = _study(tmp_path, store)
    with store.engine.connect() as c:
        assert [r[0] for r in c.execute(text("SELECT version FROM sfteval_schema ORDER BY version"))] == [1, 2]
    assert store.record_vote(sid, "0", "alice", "A")
    with pytest.raises(IntegrityError):  # a raw INSERT, bypassing VoteStore, is refused by the schema
        with store.engine.begin() as c:
            c.execute(text("INSERT INTO votes (study,item,rater,choice,tuned_side,outcome,created) "
                           "VALUES (:s,'0','alice','tie','A','tie','now')"), {"s": sid})
    with pytest.raises(IntegrityError):  # and so is a choice outside the four
        with store.engine.begin() as c:
            c.execute(text("INSERT INTO votes (study,item,rater,choice,tuned_side,outcome,created) "
                           "VALUES (:s,'1','bob','left','A','tie','now')"), {"s": sid})
    VoteStore(db_url)  # opening again migrates nothing and keeps the votes
    assert len(store.votes(sid)) == 1


def test_a_first_release_sqlite_file_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as c:  # the schema the first release wrote, verbatim
        c.executescript("""
        CREATE TABLE studies (study TEXT PRIMARY KEY, benchmark TEXT NOT NULL, base_run TEXT NOT NULL,
          tuned_run TEXT NOT NULL, created TEXT NOT NULL);
        CREATE TABLE items (study TEXT NOT NULL REFERENCES studies(study), item TEXT NOT NULL, prompt TEXT NOT NULL,
          reference TEXT NOT NULL, base_output TEXT NOT NULL, tuned_output TEXT NOT NULL, PRIMARY KEY (study, item));
        CREATE TABLE votes (seq INTEGER PRIMARY KEY AUTOINCREMENT, study TEXT NOT NULL, item TEXT NOT NULL,
          rater TEXT NOT NULL, choice TEXT NOT NULL, tuned_side TEXT NOT NULL, outcome TEXT NOT NULL,
          created TEXT NOT NULL, UNIQUE (study, item, rater));
        INSERT INTO studies VALUES ('s', 'chat', '/b', '/t', '2026-01-01');
        INSERT INTO items VALUES ('s', '1', 'Q?', '', 'b', 't');
        INSERT INTO votes (study,item,rater,choice,tuned_side,outcome,created) VALUES ('s','1','ann','A','A','tuned','x');
        """)
    store = VoteStore(path)
    assert [v["rater"] for v in store.votes("s")] == ["ann"]
    assert store.studies()[0].overlap == 1
    assert store.add_raters("s", ["Bea"])  # the new tables exist


def test_one_rater_however_the_name_is_typed(db_url: str, tmp_path: Path) -> None:
    store = VoteStore(db_url)
    sid = _study(tmp_path, store)
    assert store.record_vote(sid, "3", "Alice", "A")
    assert store.record_vote(sid, "3", "  alice ", "B") is False
    assert store.record_vote(sid, "3", "ALICE", "tie") is False
    assert [v["rater"] for v in store.votes(sid)] == ["alice"]
    assert tuned_side(sid, "Alice", "3") == tuned_side(sid, "alice", "3")


def test_twenty_concurrent_raters_lose_and_double_nothing(db_url: str, tmp_path: Path) -> None:
    owner = VoteStore(db_url)
    sid = _study(tmp_path, owner, n=30, overlap=3)
    raters = [f"rater{k:02d}" for k in range(20)]
    tokens = dict(owner.add_raters(sid, raters))
    assigned = {r: owner.order_for(sid, r) for r in raters}
    assert Counter(i for got in assigned.values() for i in got) == {str(i): 3 for i in range(30)}
    accepted: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(40)

    def worker(rater: str) -> None:
        try:
            store = VoteStore(db_url)  # each rater's own connection pool, as separate servers would have
            who = store.authenticate(tokens[rater], sid)
            assert who == (sid, rater)
            barrier.wait()
            for item in store.order_for(sid, rater):  # two workers per rater race on every item
                if store.record_vote(sid, item, rater, "A" if int(item) % 3 else "tie"):
                    with lock:
                        accepted.append((item, rater))
        except BaseException as e:  # surfaced below; a thread's exception is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(r,)) for r in raters for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not errors, errors[:3]
    rows = [(v["item"], v["rater"]) for v in owner.votes(sid)]
    expected = {(i, r) for r, got in assigned.items() for i in got}
    assert len(rows) == len(set(rows)) == len(expected) == 90  # no double vote
    assert set(rows) == expected  # no lost vote
    assert sorted(accepted) == sorted(rows)  # exactly one writer won each race
    assert {r.rater: (r.assigned, r.done) for r in owner.raters(sid)} == {r: (len(assigned[r]),) * 2 for r in raters}


def test_links_authenticate_only_their_rater_and_study(db_url: str, tmp_path: Path) -> None:
    store = VoteStore(db_url)
    sid = _study(tmp_path, store, name="round-a")
    other = _study(tmp_path, store, name="round-b")
    (name, token), = store.add_raters(sid, ["Dana"])
    assert name == "Dana" and store.authenticate(token) == (sid, "dana")
    assert store.authenticate(token, other) is None  # a link opens its own study only
    selector, verifier = split_token(token)
    for bad in (None, "", "junk", f"{selector}.{verifier}x", f"{selector}.", f"{'0' * 24}.{verifier}", token + ".x"):
        assert store.authenticate(bad) is None
    with store.engine.connect() as c:  # the database keeps no working link
        from sqlalchemy import text

        dump = json.dumps([list(r) for r in c.execute(text("SELECT * FROM raters"))])
    assert verifier not in dump and selector in dump
    with pytest.raises(SftevalError, match="already in study"):
        store.add_raters(sid, ["dana "])


def test_raters_vote_only_on_their_items_in_their_study(db_url: str, tmp_path: Path) -> None:
    store = VoteStore(db_url)
    sid = _study(tmp_path, store, n=10, overlap=1)
    store.add_raters(sid, ["Eve", "Finn"])
    eve, finn = store.order_for(sid, "eve"), store.order_for(sid, "finn")
    assert sorted(eve + finn) == sorted(store.item_ids(sid)) and not set(eve) & set(finn)
    with pytest.raises(SftevalError, match="not assigned"):
        store.record_vote(sid, finn[0], "eve", "A")
    with pytest.raises(SftevalError, match="not a rater"):
        store.record_vote(sid, eve[0], "mallory", "A")
    assert store.record_vote(sid, eve[0], "judge:tiny", "A")  # machine raters judge every item
    assert store.votes(sid, rater="eve") == []  # a rater's own view holds only their votes
    assert study_results(store, sid).n_votes == 0  # a judge's vote is not a human's
    assert study_results(store, sid, include_machine=True).n_votes == 1


def test_assignment_keeps_overlap_balance_and_quota() -> None:
    items = [str(i) for i in range(50)]
    raters = [f"r{k}" for k in range(6)]
    plan = assign_items("s", items, raters, 3)
    assert plan == assign_items("s", items, raters, 3)  # deterministic
    got = {r: set(v) for r, v in plan.items()}
    assert not coverage_gaps(items, got, 3)
    loads = sorted(len(v) for v in got.values())
    assert sum(loads) == 150 and loads[-1] - loads[0] <= 1
    capped = assign_items("s", items, raters, 3, quotas={"r0": 5, "r1": 5})
    assert len(capped["r0"]) == 5 and len(capped["r1"]) == 5
    assert not coverage_gaps(items, {r: set(v) for r, v in capped.items()}, 3)
    few = assign_items("s", items, ["a", "b"], 3)  # two raters cannot give an item three votes
    assert coverage_gaps(items, {r: set(v) for r, v in few.items()}, 3) == {i: 2 for i in items}
    more = assign_items("s", items, [*raters, "r6"], 3, existing=got)  # a late rater adds, never takes away
    assert more == {}


def test_results_recompute_from_either_export(db_url: str, tmp_path: Path) -> None:
    store = VoteStore(db_url)
    sid = _study(tmp_path, store, n=20)
    rng = np.random.default_rng(3)
    for rater in ("ann", "bob", "cyd"):
        for item in store.order_for(sid, rater)[:15]:
            store.record_vote(sid, item, rater, str(rng.choice(["A", "B", "tie", "both_bad"])))
    direct = study_results(store, sid)
    for text_ in (store.export_csv(sid), store.export_jsonl(sid)):
        path = tmp_path / "export.txt"
        path.write_text(text_)
        again = results_from_votes(sid, read_export(path), direct.n_items)
        assert again == direct
    lines = store.export_csv(sid).splitlines()
    lines[3] = lines[3].rsplit(",", 2)[0] + ",tuned_but_edited," + lines[3].rsplit(",", 1)[1]
    with pytest.raises(SftevalError, match=r"<export>:4 \(field .outcome.\)"):
        read_export(lines)


def test_agreement_of_simulated_raters_from_an_export(tmp_path: Path) -> None:
    # Raters copy the true outcome with probability p, else pick one of the four at random:
    # with uniform truth, nominal alpha is p**2 exactly in expectation (derivation in the
    # comment of test_ratings); checked from the export, against a coincidence-matrix count.
    store = VoteStore(tmp_path / "v.sqlite3")
    sid = _study(tmp_path, store, n=400, overlap=3)
    store.add_raters(sid, ["r1", "r2", "r3", "r4"])
    rng = np.random.default_rng(11)
    truth = {str(i): rng.choice(["tuned", "base", "tie", "both_bad"]) for i in range(400)}
    p = 0.8
    for rater in ("r1", "r2", "r3", "r4"):
        for item in store.order_for(sid, rater):
            outcome = truth[item] if rng.random() < p else rng.choice(["tuned", "base", "tie", "both_bad"])
            side = tuned_side(sid, rater, item)
            choice = {"tuned": side, "base": "B" if side == "A" else "A"}.get(outcome, outcome)
            store.record_vote(sid, item, rater, choice)
    (tmp_path / "votes.jsonl").write_text(store.export_jsonl(sid))
    res = results_from_votes(sid, read_export(tmp_path / "votes.jsonl"))
    assert res.agreement is not None and res.agreement.n_items == 400 and res.agreement.n_raters == 4
    assert res.agreement.alpha == pytest.approx(p * p, abs=0.06)
    assert res.agreement.alpha == pytest.approx(_alpha_by_hand(read_export(tmp_path / "votes.jsonl")), abs=1e-9)


def _alpha_by_hand(votes: list[dict]) -> float:
    """Krippendorff's nominal alpha from the coincidence matrix (Krippendorff 2011, eq. 2-4)."""
    by_item: dict[str, list[str]] = {}
    for v in votes:
        by_item.setdefault(v["item"], []).append(v["outcome"])
    coincide: Counter[tuple[str, str]] = Counter()
    for vals in by_item.values():
        m = len(vals)
        if m < 2:
            continue
        for a in range(m):
            for b in range(m):
                if a != b:
                    coincide[(vals[a], vals[b])] += 1 / (m - 1)
    n_c: Counter[str] = Counter()
    for (c, _), w in coincide.items():
        n_c[c] += w
    n = sum(n_c.values())
    d_o = sum(w for (c, k), w in coincide.items() if c != k) / n
    d_e = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k) / (n * (n - 1))
    return 1 - d_o / d_e


def test_sqlite_on_a_network_share_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mountinfo = ("22 1 0:20 / / rw - ext4 /dev/vda rw\n"
                 f"40 22 0:40 / {tmp_path}/share rw,relatime - nfs4 server:/export rw\n")
    assert filesystem_type(tmp_path / "share" / "x", mountinfo) == "nfs4"
    assert filesystem_type(tmp_path / "local", mountinfo) == "ext4"
    monkeypatch.setattr("sfteval.ratings.store.filesystem_type", lambda path: "nfs4")
    with pytest.raises(SftevalError, match="network filesystem"):
        VoteStore(tmp_path / "share" / "votes.sqlite3")


def test_display_url_hides_the_password() -> None:
    from sfteval.ratings.store import database_url

    assert database_url("postgresql://u:secret@h/db") == "postgresql+psycopg://u:secret@h/db"
    store = VoteStore.__new__(VoteStore)
    store.url = database_url("postgresql://u:secret@h:5/db")
    assert "secret" not in store.display_url and "u" in store.display_url
