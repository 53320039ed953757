"""Reading pages in tests: a page's HTML, its text, its CSRF token."""

from __future__ import annotations

import html
import re
from typing import Any


def page_of(client: Any, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[:800]
    return str(response.get_data(as_text=True))


def text_of(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return html.unescape(found.group(1))
