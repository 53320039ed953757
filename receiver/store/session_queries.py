"""Inspector sign-ins (``web/access``), written once for both backends.

Each sign-in at ``/login`` is one row: the SHA-256 of the random id its cookie carries (the
id itself is never stored), the proof of the token it signed in with, and when it ends. A
page load reads its row by primary key, one indexed read; signing out deletes the row, and a
row made with another token no longer matches, so a new ``RECEIVER_INSPECTOR_TOKEN`` signs
everyone out on every worker and node. Rows that ended go with the next sign-in.
"""

from __future__ import annotations

from ..events import utc_now_iso
from .sql import SharedSQL

SESSION_SCHEMA = """
CREATE TABLE inspector_sessions (
    id text PRIMARY KEY,
    token_proof text NOT NULL,
    signed_in_at text NOT NULL,
    expires_at text NOT NULL
);
"""


class SessionQueries(SharedSQL):
    """Mixed into each backend's store: the inspector's sessions."""




    def start_session(self, session_hash: str, token_proof: str, expires_at: str) -> None:
        m = self.MARK
        now = utc_now_iso()
        with self._run_write() as conn:
            conn.execute(f"INSERT INTO inspector_sessions (id, token_proof, signed_in_at,"
                         f" expires_at) VALUES ({m}, {m}, {m}, {m})",
                         (session_hash, token_proof, now, expires_at))
            conn.execute(f"DELETE FROM inspector_sessions WHERE expires_at <= {m}"
                         f" OR token_proof <> {m}", (now, token_proof))

    def session_alive(self, session_hash: str, token_proof: str) -> bool:
        m = self.MARK
        return bool(self.rows(
            f"SELECT 1 FROM inspector_sessions WHERE id = {m} AND token_proof = {m}"
            f" AND expires_at > {m}", (session_hash, token_proof, utc_now_iso())))

    def end_session(self, session_hash: str) -> None:
        with self._run_write() as conn:
            conn.execute(f"DELETE FROM inspector_sessions WHERE id = {self.MARK}",
                         (session_hash,))

    def end_sessions(self, *, keep_token_proof: str | None) -> int:
        with self._run_write() as conn:
            if keep_token_proof is None:
                return int(conn.execute("DELETE FROM inspector_sessions").rowcount)
            return int(conn.execute(
                f"DELETE FROM inspector_sessions WHERE token_proof <> {self.MARK}",
                (keep_token_proof,)).rowcount)
