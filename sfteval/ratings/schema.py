"""The vote store's tables and their migrations, one definition for SQLite and PostgreSQL.

Tables are SQLAlchemy Core objects, so each dialect gets its own DDL from one source,
and the constraints that matter live in the database, not in the UI:
UNIQUE (study, item, rater) on votes (a double vote is refused by the database), foreign
keys from votes and assignments to items, CHECKs on the vote's fields, and a unique
token selector per rater.

Migrations are a numbered list applied in order inside one transaction and recorded in
`sfteval_schema`; both dialects run the same list. Version 1 is the schema of the first
release (SQLite files written by it carry no version table and are adopted as version 1);
version 2 adds rater accounts, assignments and the study's overlap.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
    text,
)

metadata = MetaData()

studies = Table(
    "studies", metadata,
    Column("study", Text, primary_key=True),
    Column("benchmark", Text, nullable=False),
    Column("base_run", Text, nullable=False),
    Column("tuned_run", Text, nullable=False),
    Column("created", Text, nullable=False),
)

items = Table(
    "items", metadata,
    Column("study", Text, nullable=False),
    Column("item", Text, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("reference", Text, nullable=False),
    Column("base_output", Text, nullable=False),
    Column("tuned_output", Text, nullable=False),
    PrimaryKeyConstraint("study", "item"),
    ForeignKeyConstraint(["study"], ["studies.study"]),
)

votes = Table(
    "votes", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("study", Text, nullable=False),
    Column("item", Text, nullable=False),
    Column("rater", Text, nullable=False),
    Column("choice", Text, CheckConstraint("choice IN ('A','B','tie','both_bad')"), nullable=False),
    Column("tuned_side", Text, CheckConstraint("tuned_side IN ('A','B')"), nullable=False),
    Column("outcome", Text, CheckConstraint("outcome IN ('tuned','base','tie','both_bad')"), nullable=False),
    Column("created", Text, nullable=False),
    ForeignKeyConstraint(["study", "item"], ["items.study", "items.item"]),
    UniqueConstraint("study", "item", "rater", name="one_vote_per_rater_and_item"),
)

raters = Table(
    "raters", metadata,
    Column("study", Text, nullable=False),
    Column("rater", Text, nullable=False),  # rater_key(name)
    Column("display_name", Text, nullable=False),
    Column("selector", Text, nullable=False, unique=True),
    Column("verifier_hash", Text, nullable=False),
    Column("quota", Integer, nullable=True),
    Column("created", Text, nullable=False),
    PrimaryKeyConstraint("study", "rater"),
    ForeignKeyConstraint(["study"], ["studies.study"]),
)

assignments = Table(
    "assignments", metadata,
    Column("study", Text, nullable=False),
    Column("rater", Text, nullable=False),
    Column("item", Text, nullable=False),
    PrimaryKeyConstraint("study", "rater", "item"),
    ForeignKeyConstraint(["study", "rater"], ["raters.study", "raters.rater"]),
    ForeignKeyConstraint(["study", "item"], ["items.study", "items.item"]),
)

study_settings = Table(
    "study_settings", metadata,
    Column("study", Text, primary_key=True),
    Column("overlap", Integer, CheckConstraint("overlap >= 1"), nullable=False),
    ForeignKeyConstraint(["study"], ["studies.study"]),
)

schema_versions = Table(
    "sfteval_schema", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied", Text, nullable=False),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[studies, items, votes], checkfirst=True)


def _v2(conn: Connection) -> None:
    metadata.create_all(conn, tables=[raters, assignments, study_settings], checkfirst=True)


MIGRATIONS: tuple[tuple[int, Callable[[Connection], None]], ...] = ((1, _v1), (2, _v2))
LATEST = MIGRATIONS[-1][0]


def migrate(conn: Connection) -> int:
    """Bring the database to LATEST inside the caller's transaction; returns the version."""
    if conn.dialect.name == "postgresql":  # two processes starting at once migrate one after the other
        conn.execute(text("SELECT pg_advisory_xact_lock(7315901)"))
    schema_versions.create(conn, checkfirst=True)
    done = {int(v) for v in conn.execute(select(schema_versions.c.version)).scalars()}
    if not done and inspect(conn).has_table("votes"):
        done = {1}  # a database of the first release: its tables are version 1
        conn.execute(schema_versions.insert().values(version=1, applied=_now()))
    for version, step in MIGRATIONS:
        if version not in done:
            step(conn)
            conn.execute(schema_versions.insert().values(version=version, applied=_now()))
    return max(done | {v for v, _ in MIGRATIONS})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
