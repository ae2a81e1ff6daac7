"""Rater links and item assignment: who may rate what, as pure functions.

Tokens follow the selector/verifier pattern: a link carries `<selector>.<verifier>`;
the database keeps the selector (to find the row) and only the SHA-256 of the verifier,
so a copy of the database does not hand out working links, and the verifier is compared
with `hmac.compare_digest` (constant time). 96 bits of selector and 256 bits of verifier
come from `secrets`. Tokens are printed once, to the owner who creates the raters, and
never written to a log.

Assignment keeps agreement measurable: with overlap k every item goes to k distinct
raters (as far as quotas allow); each item goes to the raters with the fewest items so
far, ties broken by a hash of (study, rater, item), so the same raters and settings
always give the same assignment and loads differ by at most one item.

Not covered: expiring or revoking a link other than by deleting the rater's row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sfteval.errors import SftevalError
from sfteval.ratings.study import digest

_SELECTOR_BYTES = 12
_VERIFIER_BYTES = 32


@dataclass(frozen=True)
class NewToken:
    token: str  # what the link carries; shown once
    selector: str
    verifier_hash: str


def new_token() -> NewToken:
    selector = secrets.token_hex(_SELECTOR_BYTES)
    verifier = secrets.token_urlsafe(_VERIFIER_BYTES)
    return NewToken(f"{selector}.{verifier}", selector, hash_verifier(verifier))


def hash_verifier(verifier: str) -> str:
    return hashlib.sha256(verifier.encode("utf-8")).hexdigest()


def split_token(token: str | None) -> tuple[str, str] | None:
    """(selector, verifier) of a well-formed token, else None (never raises on junk)."""
    if not token or not isinstance(token, str) or token.count(".") != 1:
        return None
    selector, verifier = token.split(".")
    if len(selector) != 2 * _SELECTOR_BYTES or not verifier or len(verifier) > 128:
        return None
    return selector, verifier


def verifier_matches(verifier: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_verifier(verifier).encode("ascii"), stored_hash.encode("ascii"))


def rater_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/?t={token}"


def assign_items(
    study_id: str,
    items: Sequence[str],
    raters: Sequence[str],
    overlap: int,
    *,
    quotas: Mapping[str, int | None] | None = None,
    existing: Mapping[str, set[str]] | None = None,
) -> dict[str, list[str]]:
    """New (rater -> items) assignments bringing every item up to `overlap` raters.

    `existing` are assignments already made (kept: a rater never loses an item). A
    rater's quota caps their total. Items that cannot reach `overlap` (too few raters or
    quota) get as many raters as there are; `coverage_gaps` reports them.
    """
    if overlap < 1:
        raise SftevalError(f"overlap must be at least 1, got {overlap}", field="overlap")
    quotas = dict(quotas or {})
    have = {r: set((existing or {}).get(r, set())) for r in raters}
    load = {r: len(have[r]) for r in raters}
    new: dict[str, list[str]] = {r: [] for r in raters}
    order = sorted(items, key=lambda i: digest("assign", study_id, i))
    for item in order:
        holders = sum(item in have[r] for r in raters)
        need = overlap - holders
        if need <= 0:
            continue
        free = [r for r in raters if item not in have[r] and (quotas.get(r) is None or load[r] < int(quotas[r] or 0))]
        free.sort(key=lambda r: (load[r], digest("tie", study_id, r, item)))
        for r in free[:need]:
            have[r].add(item)
            new[r].append(item)
            load[r] += 1
    return {r: v for r, v in new.items() if v}


def coverage_gaps(items: Sequence[str], assigned: Mapping[str, set[str]], overlap: int) -> dict[str, int]:
    """Items held by fewer than `overlap` raters, with how many they have."""
    counts = {i: 0 for i in items}
    for got in assigned.values():
        for i in got:
            if i in counts:
                counts[i] += 1
    return {i: c for i, c in counts.items() if c < overlap}
