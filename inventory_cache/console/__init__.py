"""The operations console: a browser UI for store staff and operators, at `/console`.

Static HTML, CSS and one vanilla JavaScript file shipped inside the package (`static/`),
served by the API itself: no CDN, no build step, nothing fetched from elsewhere. The page
is a shell; everything it shows comes from the public `/v1` routes with the API key the
user signs in with (kept in the tab's sessionStorage and sent as a Bearer header, so there
is no cookie to forge). `status.py` adds the two small routes the console needs that the
API did not have: the caller's scopes and an operator's health summary.

The console's routes are matched after every `/v1` route and add no middleware, so the
hot paths cost what they cost without it.
"""

from __future__ import annotations

from fastapi import APIRouter

from inventory_cache.console import pages, status

routers: list[APIRouter] = [status.router, pages.router]
