"""The vote store: studies, raters and votes in SQLite or PostgreSQL, by URL.

`VoteStore("sqlite:///path")`, `VoteStore(Path)` or `VoteStore("postgresql://...")`
(psycopg 3). One code path for both through SQLAlchemy Core; the database enforces one
vote per (study, item, rater) with a UNIQUE constraint and `ON CONFLICT DO NOTHING`,
so racing tabs, processes or raters can neither double-vote nor lose a vote. Every write
commits before the call returns (SQLite: synchronous=FULL).

SQLite: WAL on a local disk; `BEGIN IMMEDIATE` for every transaction, so writers queue
on the file lock instead of failing mid-transaction. A database file on a network share
(NFS, SMB, Lustre, GPFS, ...) is refused: SQLite's locking is not reliable there and WAL
needs shared memory on one host. Use PostgreSQL for a team on several machines.

Raters: with `add_raters` the owner creates accounts that carry a link token
(sfteval.ratings.access); once a study has accounts only those raters (and machine raters
named `judge:...`, which sfteval.judge writes) may vote in it, each on the items assigned
to them. Without accounts a study is open to any rater name (the owner's own loopback
dashboard).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from sfteval.errors import SftevalError
from sfteval.ratings import schema as t
from sfteval.ratings.access import assign_items, new_token, split_token, verifier_matches
from sfteval.ratings.results import MACHINE_PREFIX
from sfteval.ratings.study import (
    CHOICES,
    Pair,
    Study,
    StudyInfo,
    StudyItem,
    digest,
    outcome_of,
    pair_of,
    rater_key,
    tuned_side,
)

EXPORT_FIELDS = ("seq", "study", "item", "rater", "choice", "tuned_side", "outcome", "created")
NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "fuse.sshfs", "beegfs",
                        "glusterfs", "fuse.glusterfs", "afs", "9p", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone"})


@dataclass(frozen=True)
class RaterInfo:
    rater: str  # the key votes are stored under
    display_name: str
    quota: int | None
    assigned: int
    done: int


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL for a path or URL; psycopg 3 for plain postgresql:// URLs."""
    raw = str(target)
    if "://" not in raw:
        return f"sqlite:///{Path(raw).expanduser().resolve()}"
    if raw.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + raw.split("://", 1)[1]
    return raw


def filesystem_type(path: Path, mountinfo: str | None = None) -> str:
    """The filesystem type holding `path` (from /proc/self/mountinfo), '' if unknown."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return ""
    best, kind = "", ""
    target = str(path.resolve())
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or not tail:
            continue
        mount = fields[4].encode().decode("unicode_escape")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, tail[0]
    return kind


class VoteStore:
    """Studies, raters and votes. Safe to share between threads and Streamlit sessions."""

    def __init__(self, target: str | Path) -> None:
        self.url = database_url(target)
        self.path: Path | None = None
        if self.url.startswith("sqlite:///"):
            self.path = Path(self.url[len("sqlite:///"):])
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fs = filesystem_type(self.path.parent)
            if fs in NETWORK_FS or fs.startswith("nfs"):
                raise SftevalError(f"the ratings database is on a network filesystem ({fs}), where SQLite's "
                                   "locking is unreliable", path=str(self.path), field="--db",
                                   hint="use --db postgresql://USER@HOST/DB, or a SQLite file on a local disk")
            # A connection per call (NullPool), like the threads and sessions that use it.
            self.engine = create_engine(self.url, poolclass=NullPool, connect_args={"timeout": 30.0})
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        else:
            try:
                self.engine = create_engine(self.url, pool_pre_ping=True, pool_size=8, max_overflow=24)
            except Exception as e:  # an unknown scheme, a missing driver
                raise SftevalError(f"cannot use the ratings database: {e}", field="--db",
                                   hint="sqlite:///PATH or postgresql://USER@HOST/DB (pip install 'sfteval[postgres]')"
                                   ) from e
        with self._tx() as c:
            t.migrate(c)

    @property
    def display_url(self) -> str:
        """The URL without its password, for pages and logs."""
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as e:
            raise SftevalError(f"the ratings database failed: {e.orig}", path=self.display_url) from e

    # -- studies -------------------------------------------------------------------
    def create_study(self, study: Study) -> bool:
        """Store a study and its items; False if the same study already exists.

        A different study under an existing id is refused: votes refer to its items."""
        with self._tx() as c:
            row = c.execute(select(t.studies.c.base_run, t.studies.c.tuned_run, t.studies.c.benchmark)
                            .where(t.studies.c.study == study.study_id)).first()
            if row is not None:
                have = set(c.execute(select(t.items.c.item).where(t.items.c.study == study.study_id)).scalars())
                if tuple(row) != (study.base_run, study.tuned_run, study.benchmark) or have != {
                        it.item_id for it in study.items}:
                    raise SftevalError(f"study '{study.study_id}' already exists with other runs or items",
                                       path=self.display_url, field="study", hint="choose another study name")
                return False
            c.execute(t.studies.insert().values(study=study.study_id, benchmark=study.benchmark,
                                                base_run=study.base_run, tuned_run=study.tuned_run, created=_now()))
            c.execute(t.items.insert(), [
                {"study": study.study_id, "item": it.item_id, "prompt": it.prompt, "reference": it.reference,
                 "base_output": it.base_output, "tuned_output": it.tuned_output} for it in study.items])
            c.execute(t.study_settings.insert().values(study=study.study_id, overlap=study.overlap))
            return True

    def studies(self) -> list[StudyInfo]:
        n = select(func.count()).where(t.items.c.study == t.studies.c.study).scalar_subquery()
        k = select(t.study_settings.c.overlap).where(t.study_settings.c.study == t.studies.c.study).scalar_subquery()
        q = select(t.studies, n.label("n"), k.label("overlap")).order_by(t.studies.c.created.desc())
        with self._tx() as c:
            rows = c.execute(q).mappings().all()
        return [StudyInfo(r["study"], r["benchmark"], r["base_run"], r["tuned_run"], int(r["n"]), r["created"],
                          int(r["overlap"] or 1)) for r in rows]

    def study(self, study_id: str) -> StudyInfo:
        for s in self.studies():
            if s.study_id == study_id:
                return s
        raise SftevalError(f"unknown study '{study_id}'", path=self.display_url, field="study")

    def item_ids(self, study_id: str) -> list[str]:
        with self._tx() as c:
            ids = list(c.execute(select(t.items.c.item).where(t.items.c.study == study_id)).scalars())
        if not ids:
            raise SftevalError(f"unknown study '{study_id}'", path=self.display_url, field="study")
        return ids

    # -- raters --------------------------------------------------------------------
    def add_raters(self, study_id: str, names: Sequence[str], *, quota: int | None = None,
                   items: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """Create rater accounts; returns (display name, token) for each, the only time a
        token is seen. Items are assigned to keep every item at the study's overlap
        (or exactly `items`, when given). A name already in the study is refused."""
        info = self.study(study_id)
        all_items = self.item_ids(study_id)
        if quota is not None and quota < 1:
            raise SftevalError(f"quota must be at least 1, got {quota}", field="--quota")
        unknown = sorted(set(items or ()) - set(all_items))
        if unknown:
            raise SftevalError(f"study '{study_id}' has no item '{unknown[0]}'", field="--items")
        keys = [rater_key(n) for n in names]
        if len(set(keys)) != len(keys) or any(k.startswith(MACHINE_PREFIX) for k in keys):
            raise SftevalError("rater names must be distinct (case and spacing aside) and not start with 'judge:'",
                               field="rater")
        created: list[tuple[str, str]] = []
        with self._tx() as c:
            taken = set(c.execute(select(t.raters.c.rater).where(t.raters.c.study == study_id)).scalars())
            clash = [n for n, k in zip(names, keys) if k in taken]
            if clash:
                raise SftevalError(f"rater '{clash[0]}' is already in study '{study_id}'", field="rater",
                                   hint="each person gets one link; list the study's raters with `sfteval ratings progress`")
            for name, key in zip(names, keys):
                tok = new_token()
                c.execute(t.raters.insert().values(study=study_id, rater=key, display_name=name.strip(),
                                                   selector=tok.selector, verifier_hash=tok.verifier_hash,
                                                   quota=quota, created=_now()))
                created.append((name.strip(), tok.token))
            if items is not None:
                plan = {k: list(items) for k in keys}
            else:
                rows = c.execute(select(t.raters.c.rater, t.raters.c.quota).where(t.raters.c.study == study_id)).all()
                existing: dict[str, set[str]] = {r: set() for r, _ in rows}
                for r, i in c.execute(select(t.assignments.c.rater, t.assignments.c.item)
                                      .where(t.assignments.c.study == study_id)).all():
                    existing[r].add(i)
                plan = assign_items(study_id, all_items, [r for r, _ in rows], info.overlap,
                                    quotas={r: q for r, q in rows}, existing=existing)
            rows_out = [{"study": study_id, "rater": r, "item": i} for r, got in plan.items() for i in got]
            if rows_out:
                c.execute(t.assignments.insert(), rows_out)
        return created

    def authenticate(self, token: str | None, study_id: str | None = None) -> tuple[str, str] | None:
        """(study, rater) for a valid link token (of `study_id`, when given), else None."""
        parts = split_token(token)
        if parts is None:
            return None
        selector, verifier = parts
        with self._tx() as c:
            row = c.execute(select(t.raters.c.study, t.raters.c.rater, t.raters.c.verifier_hash)
                            .where(t.raters.c.selector == selector)).first()
        if row is None or not verifier_matches(verifier, row.verifier_hash):
            return None
        if study_id is not None and row.study != study_id:
            return None
        return str(row.study), str(row.rater)

    def rater_name(self, study_id: str, rater: str) -> str:
        with self._tx() as c:
            name = c.execute(select(t.raters.c.display_name).where(
                (t.raters.c.study == study_id) & (t.raters.c.rater == rater_key(rater)))).scalar()
        return str(name) if name else rater

    def raters(self, study_id: str) -> list[RaterInfo]:
        """Every account of the study with its progress (items assigned, items voted)."""
        with self._tx() as c:
            rows = c.execute(select(t.raters.c.rater, t.raters.c.display_name, t.raters.c.quota)
                             .where(t.raters.c.study == study_id).order_by(t.raters.c.created, t.raters.c.rater)).all()
            assigned = self._assigned(c, study_id)
            voted: dict[str, set[str]] = {}
            for r, i in c.execute(select(t.votes.c.rater, t.votes.c.item).where(t.votes.c.study == study_id)).all():
                voted.setdefault(r, set()).add(i)
        return [RaterInfo(r, name, quota, len(assigned.get(r, ())), len(assigned.get(r, set()) & voted.get(r, set())))
                for r, name, quota in rows]

    def _assigned(self, c: Any, study_id: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for r, i in c.execute(select(t.assignments.c.rater, t.assignments.c.item)
                              .where(t.assignments.c.study == study_id)).all():
            out.setdefault(r, set()).add(i)
        return out

    def _allowed_items(self, c: Any, study_id: str, rater: str) -> set[str] | None:
        """Items `rater` may rate: None = all (an open study, or a machine rater)."""
        if rater.startswith(MACHINE_PREFIX):
            return None
        accounts = c.execute(select(func.count()).select_from(t.raters).where(t.raters.c.study == study_id)).scalar()
        if not accounts:
            return None
        known = c.execute(select(t.raters.c.rater).where(
            (t.raters.c.study == study_id) & (t.raters.c.rater == rater))).scalar()
        if known is None:
            raise SftevalError(f"'{rater}' is not a rater of study '{study_id}'", field="rater",
                               hint="raters vote through the link the study owner sent them")
        return self._assigned(c, study_id).get(rater, set())

    # -- what a rater sees ---------------------------------------------------------
    def order_for(self, study_id: str, rater: str) -> list[str]:
        """This rater's items in their own order: shuffled per rater, stable."""
        key = rater_key(rater)
        ids = self.item_ids(study_id)
        with self._tx() as c:
            allowed = self._allowed_items(c, study_id, key)
        if allowed is not None:
            ids = [i for i in ids if i in allowed]
        return sorted(ids, key=lambda i: digest("order", study_id, key, i))

    def voted_items(self, study_id: str, rater: str) -> set[str]:
        with self._tx() as c:
            return set(c.execute(select(t.votes.c.item).where(
                (t.votes.c.study == study_id) & (t.votes.c.rater == rater_key(rater)))).scalars())

    def next_item(self, study_id: str, rater: str) -> str | None:
        """The first item in this rater's order without their vote: resume = ask again."""
        done = self.voted_items(study_id, rater)
        return next((i for i in self.order_for(study_id, rater) if i not in done), None)

    def pair_for(self, study_id: str, rater: str, item_id: str) -> Pair:
        with self._tx() as c:
            row = c.execute(select(t.items).where((t.items.c.study == study_id) & (t.items.c.item == item_id))).first()
        if row is None:
            raise SftevalError(f"study '{study_id}' has no item '{item_id}'", path=self.display_url, field="item")
        return pair_of(study_id, rater, StudyItem(row.item, row.prompt, row.reference, row.base_output,
                                                  row.tuned_output))

    # -- votes ---------------------------------------------------------------------
    def record_vote(self, study_id: str, item_id: str, rater: str, choice: str) -> bool:
        """Write one vote at once. False (and nothing written) if this rater already
        voted on this item: the UNIQUE constraint decides, so racing tabs cannot both win."""
        key = rater_key(rater)
        if choice not in CHOICES:
            raise SftevalError(f"unknown choice {choice!r}; expected one of {', '.join(CHOICES)}", field="choice")
        side = tuned_side(study_id, key, item_id)
        row = {"study": study_id, "item": item_id, "rater": key, "choice": choice, "tuned_side": side,
               "outcome": outcome_of(choice, side), "created": _now()}
        try:
            with self._tx() as c:
                allowed = self._allowed_items(c, study_id, key)
                if allowed is not None and item_id not in allowed:
                    raise SftevalError(f"item '{item_id}' is not assigned to rater '{key}'", field="item")
                # RETURNING says whether the row went in (rowcount is -1 under psycopg's RETURNING).
                return c.execute(_insert_ignore(c, row)).first() is not None
        except IntegrityError as e:  # the foreign key: no such study/item
            raise SftevalError(f"study '{study_id}' has no item '{item_id}'", path=self.display_url,
                               field="item") from e

    def undo_last(self, study_id: str, rater: str) -> str | None:
        """Delete this rater's most recent vote in the study; returns its item id."""
        key = rater_key(rater)
        with self._tx() as c:
            row = c.execute(select(t.votes.c.seq, t.votes.c.item).where(
                (t.votes.c.study == study_id) & (t.votes.c.rater == key)).order_by(t.votes.c.seq.desc()).limit(1)).first()
            if row is not None:
                c.execute(t.votes.delete().where(t.votes.c.seq == row.seq))
        return None if row is None else str(row.item)

    def votes(self, study_id: str, rater: str | None = None) -> list[dict[str, Any]]:
        q = select(*(t.votes.c[f] for f in EXPORT_FIELDS)).where(t.votes.c.study == study_id)
        if rater is not None:
            q = q.where(t.votes.c.rater == rater_key(rater))
        with self._tx() as c:
            return [dict(r) for r in c.execute(q.order_by(t.votes.c.seq)).mappings()]

    def export_csv(self, study_id: str) -> str:
        """All votes of a study as CSV (one row per vote: study, item, rater, the side the
        tuned output was shown on, choice, unblinded outcome, time)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(EXPORT_FIELDS), lineterminator="\n")
        w.writeheader()
        w.writerows(self.votes(study_id))
        return buf.getvalue()

    def export_jsonl(self, study_id: str) -> str:
        return "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in self.votes(study_id))


def _insert_ignore(conn: Any, row: dict[str, Any]) -> Any:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    return (insert(t.votes).values(**row).on_conflict_do_nothing(index_elements=["study", "item", "rater"])
            .returning(t.votes.c.seq))


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event issues a real BEGIN IMMEDIATE
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=FULL")  # a vote is on disk when the call returns
    cur.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
