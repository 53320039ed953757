"""Access to what the receiver keeps (docs/reference.md#access)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.both_backends


# -- the database file ------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_the_sqlite_files_are_readable_by_their_owner_only(make_app: Any, db_path: str) -> None:
    """As its ``.secret`` is: the history holds bodies and headers with secrets in them."""
    import os
    import stat

    client = make_app().test_client()
    assert client.post("/hooks", json={"type": "license.created", "id": 1}).status_code == 200
    for suffix in ("", "-wal", "-shm", ".secret"):
        mode = stat.S_IMODE(os.stat(db_path + suffix).st_mode)
        assert mode == 0o600, (suffix, oct(mode))
