"""The kinds of problem: what opens and resolves each, its one-line summary, and the page
that shows what it is about. Pure: nothing here touches the store or the network."""

from __future__ import annotations

from urllib.parse import quote, urlencode

HANDLER_FAILING = "handler_failing"
SIGNATURE_REFUSED = "signature_refused"
DISPATCH_BACKLOG = "dispatch_backlog"
DATABASE_UNAVAILABLE = "database_unavailable"
VENDOR_FAILING = "vendor_failing"

KINDS = (HANDLER_FAILING, SIGNATURE_REFUSED, DISPATCH_BACKLOG, DATABASE_UNAVAILABLE,
         VENDOR_FAILING)

#: The subject of the one dispatch backlog problem.
DISPATCH = "dispatch"


def summary(kind: str, subject: str, detail: str = "") -> str:
    """The sentence a person reads first."""
    text = {
        HANDLER_FAILING: f"handler {subject} gave up on an event",
        SIGNATURE_REFUSED: f"endpoint {subject} refuses deliveries: signature or "
                           "credentials wrong or missing (401)",
        DISPATCH_BACKLOG: "events are waiting for their handlers longer than they should",
        DATABASE_UNAVAILABLE: f"node {subject} answers 503: the database is unreachable or "
                              "full",
        VENDOR_FAILING: f"the vendor reports its deliveries to endpoint {subject} failing",
    }.get(kind, f"{kind}: {subject}")
    return f"{text} ({detail})" if detail else text


def link(kind: str, subject: str) -> str:
    """The page that shows what the problem is about (a path)."""
    if kind == HANDLER_FAILING:
        return "/handlers?" + urlencode({"handler": subject}) + "#" + quote(subject, safe="")
    if kind == SIGNATURE_REFUSED:
        return "/deliveries?" + urlencode({"rejected": "1", "endpoint": subject})
    if kind == VENDOR_FAILING:  # what the vendor reports, beside the last reconcile
        return "/problems#reconcile-" + quote(subject, safe="")
    if kind == DISPATCH_BACKLOG:
        return "/?dispatch_status=pending"
    return "/problems"
