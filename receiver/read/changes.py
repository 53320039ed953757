"""What changed between two versions of a subject (a license, a machine): the field-level
difference of two events' ``data``, masked for showing, and its one-line summary.

Pure functions: the store finds the previous event, the web layer shows the result.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from . import mask

#: Keys that read plainly in a dotted path; any other key is written as a JSON string in
#: brackets (``a["b.c"]``), so a path names one place whatever the keys hold.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
SUMMARY_CHANGES = 3
SUMMARY_VALUE_CHARS = 40


@dataclass(frozen=True)
class Change:
    """One difference: ``op`` is ``added``, ``removed`` or ``changed``; ``old`` is absent
    (None) for an addition and ``new`` for a removal."""

    path: str
    op: str
    old: Any = None
    new: Any = None
    #: The key the path ends in (None for a list index or the whole document).
    key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "op": self.op, "old": self.old, "new": self.new}


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _same(old: Any, new: Any) -> bool:
    """Equal as JSON: ``1`` and ``True`` differ, ``1`` and ``1.0`` do not."""
    return type(old) is type(new) and old == new or (
        isinstance(old, (int, float)) and isinstance(new, (int, float))
        and not isinstance(old, bool) and not isinstance(new, bool) and old == new)


def diff(old: Any, new: Any) -> list[Change]:
    """The differences from ``old`` to ``new`` (JSON values), in document order: objects
    are compared key by key, lists item by item (extra items added or removed at the end),
    anything else as a whole. Iterative, so a deeply nested payload does not exhaust the
    stack."""
    changes: list[Change] = []
    # Work items: a Change found, or (path, key, old, new) still to compare.
    stack: list[Change | tuple[str, str | None, Any, Any]] = [("", None, old, new)]
    while stack:
        item = stack.pop()
        if isinstance(item, Change):
            changes.append(item)
            continue
        path, key, before, after = item
        found: list[Change | tuple[str, str | None, Any, Any]] = []
        if isinstance(before, dict) and isinstance(after, dict):
            for name, value in before.items():
                child = join(path, str(name))
                found.append((child, str(name), value, after[name]) if name in after
                             else Change(child, "removed", old=value, key=str(name)))
            found += [Change(join(path, str(name)), "added", new=value, key=str(name))
                      for name, value in after.items() if name not in before]
        elif isinstance(before, list) and isinstance(after, list):
            for index in range(max(len(before), len(after))):
                child = join(path, index)
                if index >= len(after):
                    found.append(Change(child, "removed", old=before[index]))
                elif index >= len(before):
                    found.append(Change(child, "added", new=after[index]))
                else:
                    found.append((child, None, before[index], after[index]))
        elif not _same(before, after):
            found.append(Change(path, "changed", old=before, new=after, key=key))
        stack.extend(reversed(found))
    return changes


def apply(document: Any, changes: list[Change]) -> Any:
    """``document`` with ``changes`` made (what ``diff`` says turns old into new). For tests
    and tools; paths must be those ``diff`` wrote."""
    root: list[Any] = [document]
    for change in changes:
        steps = parse_path(change.path)
        parent: Any = root
        slot: Any = 0
        for step in steps:
            parent, slot = parent[slot], step
        if change.op == "removed":
            if isinstance(parent, list):
                del parent[slot:]  # removals are the tail of a list, first index first
            else:
                del parent[slot]
        elif isinstance(parent, list) and slot == len(parent):
            parent.append(change.new)
        elif steps:
            parent[slot] = change.new
        else:
            root[0] = change.new
    return root[0]


_STEP = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def parse_path(path: str) -> list[str | int]:
    """The keys and indexes of a path ``join`` wrote."""
    steps: list[str | int] = []
    position = 0
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            raise ValueError(f"not a path: {path!r}")
        name, index, quoted = match.groups()
        steps.append(name if name is not None else int(index) if index is not None
                     else json.loads(quoted))
        position = match.end()
    return steps


def masked(change: Change, masker: mask.Masker = mask.DEFAULT) -> Change:
    """The change as pages and answers show it: a value under a secret-looking key (the
    change's own key or any key on its path) masked whole, every scalar of a list or object
    included (the last characters kept); secrets deeper inside other objects masked as
    ``Masker.data`` does."""
    try:
        steps = parse_path(change.path)
    except ValueError:
        steps = [change.key] if change.key is not None else []
    under_secret = any(isinstance(step, str) and masker.is_secret_field(step)
                       for step in steps)

    def hide(value: Any) -> Any:
        if under_secret:
            return masker.mask_all(value)
        if isinstance(value, (dict, list)):
            return masker.data(value)
        return value

    return Change(change.path, change.op, hide(change.old), hide(change.new), change.key)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SUMMARY_VALUE_CHARS else text[:SUMMARY_VALUE_CHARS - 1] + "…"


def summary(changes: list[Change]) -> str:
    """One line: ``status ACTIVE → SUSPENDED, expiry 2026-01-01 → 2027-01-01`` (each change
    by its last key; ``+name value`` added, ``−name`` removed), at most three, then how many
    more. Empty when nothing changed."""
    parts = []
    for change in changes[:SUMMARY_CHANGES]:
        label = change.key or change.path or "data"
        if change.op == "changed":
            parts.append(f"{label} {_short(change.old)} → {_short(change.new)}")
        elif change.op == "added":
            parts.append(f"+{label} {_short(change.new)}")
        else:
            parts.append(f"−{label}")
    more = len(changes) - SUMMARY_CHANGES
    if more > 0:
        parts.append(f"{more} more")
    return ", ".join(parts)
