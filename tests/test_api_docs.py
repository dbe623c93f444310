"""The interactive docs work with no network access: `/` leads to `/docs`, and every
asset the page loads is served by the service itself, from an installed package."""

from __future__ import annotations

import re

import httpx

from inventory_cache.api.main import create_app
from tests.support.services import make_settings


def client() -> httpx.AsyncClient:
    app = create_app(make_settings("docs-test"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def test_root_redirects_to_the_docs() -> None:
    async with client() as c:
        root = await c.get("/")

    assert root.status_code == 307
    assert root.headers["location"] == "/docs"


async def test_docs_page_loads_every_asset_from_the_service_itself() -> None:
    async with client() as c:
        page = await c.get("/docs")
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", page.text)
        wanted = [a or b for a, b in urls]
        assets = {url: await c.get(url) for url in wanted}

    assert page.status_code == 200
    assert "https://" not in page.text and "http://" not in page.text
    assert set(wanted) >= {
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
        "/openapi.json",
    }
    for url, answer in assets.items():
        assert answer.status_code == 200, url
    assert b"SwaggerUIBundle" in assets["/docs/assets/swagger-ui-bundle.js"].content
    assert assets["/openapi.json"].json()["info"]["title"] == "inventory-cache"
