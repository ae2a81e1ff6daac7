"""The owner's gate: the full dashboard served beyond loopback needs the owner's token.

`sfteval dashboard --host 0.0.0.0` (without --rate) makes a token, prints the owner's
link once and passes only its SHA-256 to the app (SFTEVAL_OWNER_TOKEN_SHA256). Every
page calls `require_owner()` through app.py: without the token (from `?owner=` once, then
the session) the app shows one neutral line and stops. On loopback no token is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import streamlit as st


def require_owner() -> None:
    want = os.environ.get("SFTEVAL_OWNER_TOKEN_SHA256")
    if not want or st.session_state.get("owner_ok"):
        return
    given = st.query_params.get("owner") or ""
    got = hashlib.sha256(given.encode("utf-8")).hexdigest()
    if given and hmac.compare_digest(got.encode("ascii"), want.encode("ascii")):
        st.session_state["owner_ok"] = True
        return
    st.write("This dashboard needs the owner link (printed when it was started).")
    st.stop()
