"""Blind pairwise human rating: studies, rater links, a vote store on SQLite or
PostgreSQL, and results recomputable from an export.

- `study`: what a study is, how sides are chosen (a hash of study, rater, item), and the
  rater identity (`rater_key`: "Alice" and "alice" are one rater).
- `access`: link tokens (selector/verifier, constant-time check) and item assignment
  with a configurable overlap, so agreement stays measurable.
- `schema`: the tables and their migrations, one definition for both databases.
- `store`: `VoteStore(URL)`; the database enforces one vote per (study, item, rater).
- `results`: win rate, left bias, agreement, from vote rows (a store's or an export's).
- `render`: chat turns from a rendered prompt, so raters never see template tokens.

No Streamlit import anywhere here; the dashboard's Rate and Ratings pages sit on top.
Not covered: more than two systems per study.
"""

from __future__ import annotations

from sfteval.ratings.results import (
    Agreement,
    RaterStats,
    StudyResults,
    agreement,
    left_bias,
    results_from_votes,
    study_results,
)
from sfteval.ratings.export import read_export
from sfteval.ratings.store import RaterInfo, VoteStore, database_url
from sfteval.ratings.study import (
    CHOICES,
    OUTCOMES,
    Pair,
    Study,
    StudyInfo,
    StudyItem,
    build_study,
    outcome_of,
    rater_key,
    tuned_side,
)

__all__ = [
    "CHOICES", "OUTCOMES", "Agreement", "Pair", "RaterInfo", "RaterStats", "Study", "StudyInfo", "StudyItem",
    "StudyResults", "VoteStore", "agreement", "build_study", "database_url", "left_bias", "outcome_of",
    "rater_key", "read_export", "results_from_votes", "study_results", "tuned_side",
]
