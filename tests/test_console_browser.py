"""The operations console in a real browser: the system's Chromium driven by Playwright,
against the API (uvicorn), the write-behind worker and the scheduler as processes on
real Redis and PostgreSQL.

Chromium comes from the system (`apt-get install -y chromium`; `.ci/run` installs it),
since Playwright's own browser download cannot be had here; CONSOLE_TEST_CHROMIUM names
another binary. Without it the tests skip, or fail under INVENTORY_REQUIRE_SERVICES=1.
Screenshots of every page at 1280x800 and at phone width go to
CONSOLE_SCREENSHOTS_DIR when set (`docs/screenshots` regenerates the README's), else
to a temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aredis

from inventory_cache.engine import StockEngine
from tests.support.api import CLI, Database, server_env, uvicorn_server
from tests.support.services import REDIS_URL, REQUIRE, make_settings, need_redis

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CONSOLE_TEST_CHROMIUM", "/usr/bin/chromium")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
BARCODE = "4006381333931"


def need_browser() -> None:
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None and not os.access(CHROMIUM, os.X_OK):
        reason = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if reason is not None:
        if REQUIRE:
            pytest.fail(f"{reason}; required under INVENTORY_REQUIRE_SERVICES=1")
        pytest.skip(reason)


@dataclass
class Stack:
    url: str
    keys: dict[str, str]
    prefix: str
    wms_csv: Path
    http: httpx.Client

    def call(self, method: str, path: str, scope: str, body: Any = None) -> Any:
        response = self.http.request(
            method, path, json=body, headers={"Authorization": f"Bearer {self.keys[scope]}"}
        )
        assert response.status_code < 300, response.text
        return response.json()

    def stock(self, sku: str) -> dict[str, Any]:
        levels: dict[str, Any] = self.call("GET", f"/v1/stock/{sku}", "read")["locations"]
        return levels

    def ledger(self, sku: str, expected_rows: int) -> list[dict[str, Any]]:
        """The SKU's movements once the worker wrote `expected_rows` of them."""
        deadline = time.monotonic() + 60
        while True:
            rows: list[dict[str, Any]] = self.call("GET", f"/v1/movements?sku={sku}", "read")[
                "items"
            ]
            if len(rows) >= expected_rows or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)

    def write_wms(self, drift: dict[tuple[str, str], int]) -> None:
        """A WMS export that agrees with every level in Redis, except `drift`."""
        client = redis.Redis.from_url(REDIS_URL)
        skus = {
            key.decode().split(":s:", 1)[1]
            for key in client.scan_iter(match=f"{self.prefix}:{{*}}:s:*", count=1000)
        }
        client.close()
        lines = ["sku,location,on_hand"]
        for sku in sorted(skus):
            for location, level in sorted(self.stock(sku).items()):
                on_hand = drift.get((sku, location), level["on_hand"])
                lines.append(f"{sku},{location},{on_hand}")
        self.wms_csv.write_text("\n".join(lines) + "\n")


@contextmanager
def process(env: dict[str, str], *args: str) -> Iterator[None]:
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([CLI, *args], env=env, stdout=log, stderr=log)
        try:
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _mark_ready(prefix: str) -> None:
    client = aredis.Redis.from_url(REDIS_URL)
    await StockEngine(client, make_settings(prefix)).mark_ready()
    await client.aclose()


@pytest.fixture(scope="module")
def stack(api_database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API, worker and scheduler on one fresh key prefix and database for the module."""
    need_browser()
    need_redis()
    prefix = "tc" + uuid.uuid4().hex[:10]
    asyncio.run(_mark_ready(prefix))
    wms = tmp_path_factory.mktemp("wms") / "wms.csv"
    wms.write_text("sku,location,on_hand\n")
    env = server_env(
        prefix,
        api_database.url,
        INVENTORY_WMS_CSV_PATH=str(wms),
        INVENTORY_ALERT_INTERVAL_SECONDS="0.3",
        INVENTORY_EXPIRY_SWEEP_SECONDS="0.5",
        INVENTORY_LEASE_SECONDS="3",
        # The test counts the runs it starts: no scheduled reconciliation meanwhile.
        INVENTORY_RECONCILE_CRON="0 0 1 1 *",
    )
    try:
        with (
            uvicorn_server(env) as url,
            process(env, "worker"),
            process(env, "scheduler"),
            httpx.Client(base_url=url, timeout=30) as http,
        ):
            yield Stack(url, api_database.keys, prefix, wms, http)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def console(browser: Any, stack: Stack) -> Iterator[Callable[..., Any]]:
    """Opens the console in a fresh browser context, signed in with one scope's key; at
    the end, no page may have thrown an uncaught error."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_console(scope: str = "admin", viewport: dict[str, int] = DESKTOP) -> Any:
        from playwright.sync_api import expect

        context = browser.new_context(viewport=viewport, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(stack.url + "/console")
        page.get_by_label("API key").fill(stack.keys[scope])
        page.get_by_label("API key").press("Enter")
        expect(page.locator("#who-name")).to_have_text(scope)
        return page

    yield open_console
    for context in contexts:
        context.close()
    assert errors == []


@pytest.fixture(scope="module")
def shots() -> Path:
    target = os.environ.get("CONSOLE_SCREENSHOTS_DIR")
    path = Path(target) if target else Path(tempfile.mkdtemp(prefix="console-shots-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def visible_buttons(page: Any) -> list[str]:
    names: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('button')]
            .filter((b) => b.offsetParent !== null)
            .map((b) => b.textContent.trim())"""
    )
    return names


def every_control_is_labelled(page: Any) -> bool:
    ok: bool = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter((e) => e.offsetParent !== null)
            .every((e) => e.labels && e.labels.length > 0)"""
    )
    return ok


def fits_the_width(page: Any) -> bool:
    ok: bool = page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    return ok


# ---------------------------------------------------------------------------- tests
def test_sign_in_offers_the_pages_of_the_keys_scopes_and_works_by_keyboard(
    browser: Any, stack: Stack, console: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(stack.url + "/console")
    page.keyboard.type("invk_not-a-key")
    page.keyboard.press("Enter")
    expect(page.locator("#signin-error")).to_have_text("Unknown or revoked API key.")
    context.close()

    admin = console("admin")
    nav = admin.get_by_role("navigation", name="Pages").get_by_role("link")
    expect(nav).to_have_text(["Stock", "Store", "Alerts", "Reconcile", "Health"])
    stored = admin.evaluate("() => sessionStorage.getItem('inventory-console.key')")
    cookies = admin.context.cookies()
    for _ in range(30):  # keyboard only: Tab to the Health link, Enter
        admin.keyboard.press("Tab")
        if admin.evaluate("() => document.activeElement.textContent") == "Health":
            break
    admin.keyboard.press("Enter")
    expect(admin.locator("#page-health")).to_be_visible()

    warehouse = console("warehouse")
    expect(warehouse.get_by_role("navigation", name="Pages").get_by_role("link")).to_have_text(
        ["Store"]
    )
    expect(warehouse.locator("#page-store")).to_be_visible()

    assert stored == stack.keys["admin"]
    assert cookies == []


def test_stock_lookup_by_typing_and_by_a_scanner(stack: Stack, console: Callable[..., Any]) -> None:
    from playwright.sync_api import expect

    stack.call(
        "POST",
        "/v1/inbound",
        "warehouse",
        {"ref": "in-1", "sku": "LOOK-1", "location": "north", "qty": 10},
    )
    stack.call(
        "POST",
        "/v1/inbound",
        "warehouse",
        {"ref": "in-2", "sku": "LOOK-1", "location": "south", "qty": 4},
    )
    stack.call("PUT", f"/v1/barcodes/{BARCODE}", "warehouse", {"sku": "LOOK-1"})
    stack.ledger("LOOK-1", 2)
    page = console("read")

    page.get_by_label("SKU or barcode (type or scan)").fill("LOOK-1")
    page.get_by_role("button", name="Look up").click()
    north = page.locator('#stock-levels tr[data-location="north"] td')
    south = page.locator('#stock-levels tr[data-location="south"] td')
    expect(page.locator("#stock-sku")).to_have_text("LOOK-1")
    expect(north).to_have_text(["10", "0", "0", "10"])
    expect(south).to_have_text(["4", "0", "0", "4"])
    expect(page.locator("#stock-movements tbody tr")).to_have_count(2)

    page.get_by_role("link", name="Health").click()
    page.get_by_role("link", name="Stock").click()
    # The lookup field has the focus again (a scanner types into whatever has it): keys
    # typed before the page gave it back went nowhere on a loaded CI machine.
    expect(page.get_by_label("SKU or barcode (type or scan)")).to_be_focused()
    page.keyboard.type(BARCODE, delay=15)  # a scanner: keystrokes into the focused field
    page.keyboard.press("Enter")

    expect(page.locator("#stock-sku")).to_have_text(f"LOOK-1 (barcode {BARCODE})")
    expect(north).to_have_text(["10", "0", "0", "10"])
    expect(south).to_have_text(["4", "0", "0", "4"])
    assert every_control_is_labelled(page)


def test_a_reservation_shows_on_the_stock_page_within_a_second_without_reload(
    stack: Stack, console: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    stack.call(
        "POST",
        "/v1/inbound",
        "warehouse",
        {"ref": "in-3", "sku": "LIVE-1", "location": "north", "qty": 10},
    )
    page = console("read")
    page.get_by_label("SKU or barcode (type or scan)").fill("LIVE-1")
    page.keyboard.press("Enter")
    north = page.locator('#stock-levels tr[data-location="north"] td')
    expect(north).to_have_text(["10", "0", "0", "10"])
    expect(page.locator("#stock-feed")).to_have_text("live")
    page.evaluate("() => { window.notReloaded = true; }")

    stack.call(
        "POST",
        "/v1/reservations",
        "checkout",
        {"order_id": "live-o1", "lines": [{"sku": "LIVE-1", "qty": 3}]},
    )

    expect(north).to_have_text(["10", "3", "0", "7"], timeout=1000)
    assert page.evaluate("() => window.notReloaded") is True
    expect(page.locator("#stock-movements tbody tr").first).to_contain_text("reserve")
    assert page.locator("#stock-chart path.locked").count() == 1


def test_a_pos_sale_below_locked_raises_an_oversold_alert_on_the_alerts_page(
    stack: Stack, console: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    stack.call(
        "POST",
        "/v1/inbound",
        "warehouse",
        {"ref": "in-4", "sku": "OVER-1", "location": "north", "qty": 2},
    )
    stack.call(
        "POST",
        "/v1/reservations",
        "checkout",
        {"order_id": "over-o1", "lines": [{"sku": "OVER-1", "qty": 2}]},
    )
    page = console("admin")
    page.goto(stack.url + "/console#store")
    page.get_by_label("Location", exact=True).fill("north")
    page.get_by_label("Sell", exact=True).check()
    page.get_by_label("Scan or type a SKU or barcode, then Enter").fill("OVER-1")
    page.keyboard.press("Enter")
    expect(page.locator("#store-done tbody tr").first).to_contain_text("applied, oversold by 1")

    page.get_by_role("link", name="Alerts").click()
    alert = page.locator('#alerts-table tr[data-kind="oversold"][data-sku="OVER-1"]')
    expect(alert).to_be_visible(timeout=15_000)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download alerts CSV").click()
    csv = Path(download.value.path()).read_text()

    assert "oversold,OVER-1,north," in csv
    assert csv.splitlines()[0] == "kind,sku,location,raised_at,details"
    assert stack.stock("OVER-1")["north"] == {
        "on_hand": 1,
        "locked": 2,
        "safety_stock": 0,
        "available": 0,
    }


def test_the_store_screen_offline_queues_three_scans_and_sends_each_once_when_back(
    stack: Stack, console: Callable[..., Any]
) -> None:
    """Back online, the first batch reaches the service but its answer is lost (the
    browser sees a network error): the resend carries the same event ids, so each scan
    is applied once."""
    from playwright.sync_api import expect

    stack.call(
        "POST",
        "/v1/inbound",
        "warehouse",
        {"ref": "in-5", "sku": "TILL-1", "location": "store-1", "qty": 10},
    )
    page = console("warehouse")
    page.get_by_label("Location", exact=True).fill("store-1")
    page.get_by_label("Sell", exact=True).check()
    scan = page.get_by_label("Scan or type a SKU or barcode, then Enter")
    page.context.set_offline(True)
    for _ in range(3):
        scan.focus()
        page.keyboard.type("TILL-1", delay=10)
        page.keyboard.press("Enter")
    expect(page.locator("#store-queue li")).to_have_count(3)
    expect(page.locator("#store-queue-count")).to_have_text("3")
    expect(page.locator("#store-net")).to_contain_text("Offline")
    queued = page.evaluate("() => JSON.parse(localStorage.getItem('inventory-console.pos-queue'))")
    assert stack.stock("TILL-1")["store-1"]["on_hand"] == 10  # nothing reached the service

    posts: list[str] = []

    def lose_the_first_answer(route: Any) -> None:
        posts.append(route.request.post_data or "")
        if len(posts) == 1:
            route.fetch()  # the service applies the batch...
            route.abort("internetdisconnected")  # ...and the answer never arrives
        else:
            route.continue_()

    page.route("**/v1/pos/events", lose_the_first_answer)
    page.context.set_offline(False)

    expect(page.locator("#store-queue-count")).to_have_text("0", timeout=15_000)
    expect(page.locator("#store-done tbody tr")).to_have_count(3)
    expect(page.locator("#store-done td.result")).to_have_text(["replayed"] * 3)
    ids = {item["event"]["event_id"] for item in queued}
    sales = [r for r in stack.ledger("TILL-1", 4) if r["type"] == "pos_sale"]

    assert len(ids) == 3 and len(posts) == 2 and posts[0] == posts[1]
    assert stack.stock("TILL-1")["store-1"]["on_hand"] == 7
    assert len(sales) == 3


def test_a_reconcile_run_with_differences_is_shown_and_corrected(
    stack: Stack, console: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    for sku in ("RC-A", "RC-B"):
        stack.call(
            "POST",
            "/v1/inbound",
            "warehouse",
            {"ref": f"in-{sku}", "sku": sku, "location": "north", "qty": 5},
        )
    stack.write_wms({("RC-A", "north"): 3, ("RC-B", "north"): 8})
    page = console("admin")
    page.goto(stack.url + "/console#reconcile")

    page.get_by_role("button", name="Run a report now").click()
    diffs = page.locator("#reconcile-diffs tbody tr")
    expect(diffs).to_have_count(2)
    expect(diffs.nth(0).locator("td").nth(5)).to_have_text("oversell risk")
    expect(diffs.nth(1).locator("td").nth(5)).to_have_text("undersell")
    expect(diffs.nth(0).locator("td").nth(4)).to_have_text("+2")
    expect(diffs.nth(1).locator("td").nth(4)).to_have_text("-3")
    page.get_by_role("button", name="Correct all").click()
    expect(diffs.nth(0).locator("td").nth(6)).to_have_text("corrected: on hand now 3")
    expect(diffs.nth(1).locator("td").nth(6)).to_have_text("corrected: on hand now 8")
    expect(page.get_by_role("button", name="Correct all")).to_be_hidden()

    stack.write_wms({})  # the next export, after the corrections
    page.get_by_role("button", name="Run a report now").click()
    expect(page.locator("#reconcile-message")).to_contain_text(": 0 difference(s).")
    expect(page.locator("#reconcile-runs tbody tr")).to_have_count(2)

    assert stack.stock("RC-A")["north"]["on_hand"] == 3
    assert stack.stock("RC-B")["north"]["on_hand"] == 8


def test_a_read_only_key_sees_no_button_that_writes(
    stack: Stack, console: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    for ref, location in (("in-ro-1", "north"), ("in-ro-2", "south")):
        stack.call(
            "POST",
            "/v1/inbound",
            "warehouse",
            {"ref": ref, "sku": "READ-ONLY-1", "location": location, "qty": 3},
        )
    page = console("read")
    expect(page.get_by_role("navigation", name="Pages").get_by_role("link")).to_have_text(
        ["Stock", "Alerts", "Health"]
    )
    seen: dict[str, list[str]] = {}
    for name in ("stock", "alerts", "health", "store", "reconcile"):
        page.goto(f"{stack.url}/console#{name}")
        if name == "stock":
            page.get_by_label("SKU or barcode (type or scan)").fill("READ-ONLY-1")
            page.keyboard.press("Enter")
            expect(page.locator("#stock-levels tbody tr")).to_have_count(2)
        seen[name] = visible_buttons(page)
    forbidden = page.locator("#forbidden-text")

    assert seen == {
        "stock": ["Sign out", "Look up"],
        "alerts": ["Sign out", "Download alerts CSV", "Download suggestions CSV"],
        "health": ["Sign out"],
        "store": ["Sign out"],
        "reconcile": ["Sign out"],
    }
    expect(forbidden).to_have_text('This page needs an API key with the scope "admin".')


@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_every_page_is_usable_at_desktop_and_phone_width(
    stack: Stack, console: Callable[..., Any], shots: Path, size: str, viewport: dict[str, int]
) -> None:
    """Each page laid out within the width, every control labelled; screenshots of each."""
    from playwright.sync_api import expect

    sku = f"PHONE-{size}"
    stack.call(
        "POST",
        "/v1/inbound",
        "warehouse",
        {"ref": f"s-{size}", "sku": sku, "location": "north", "qty": 40},
    )
    stack.call(
        "POST",
        "/v1/inbound",
        "warehouse",
        {"ref": f"s2-{size}", "sku": sku, "location": "south", "qty": 12},
    )
    stack.call(
        "POST",
        "/v1/reservations",
        "checkout",
        {"order_id": f"s-{size}", "lines": [{"sku": sku, "qty": 6}]},
    )
    stack.call("POST", f"/v1/reservations/s-{size}/ship", "warehouse")
    stack.call(
        "POST",
        "/v1/reservations",
        "checkout",
        {"order_id": f"s2-{size}", "lines": [{"sku": sku, "qty": 4}]},
    )
    stack.call(
        "PUT",
        f"/v1/policies/{sku}/north",
        "admin",
        {"safety_stock": 2, "reorder_point": 40, "reorder_qty": 50, "lead_time_days": 3},
    )
    stack.ledger(sku, 6)  # the policy's safety stock is a movement too
    stack.write_wms({(sku, "north"): 27})
    page = console("admin", viewport)
    layout: dict[str, tuple[bool, bool]] = {}

    page.get_by_label("SKU or barcode (type or scan)").fill(sku)
    page.keyboard.press("Enter")
    expect(page.locator("#stock-movements tbody tr")).to_have_count(6)
    expect(page.locator("#stock-feed")).to_have_text("live")
    stack.call(
        "POST",
        "/v1/pos/events",
        "warehouse",
        {
            "location": "north",
            "events": [{"event_id": f"s-{size}", "type": "sale", "sku": sku, "qty": 2}],
        },
    )
    expect(page.locator("#stock-movements tbody tr")).to_have_count(7)
    pages = {
        "store": "#store-done",
        "alerts": f'#alerts-table tr[data-kind="low_stock"][data-sku="{sku}"]',
        "reconcile": "#reconcile-runs",
        "health": "#health-rate",
    }
    layout["stock"] = (fits_the_width(page), every_control_is_labelled(page))
    page.screenshot(path=str(shots / f"stock-{size}.png"), full_page=True)
    for name, ready in pages.items():
        page.get_by_role("link", name=name.capitalize()).click()
        expect(page.locator(ready)).to_be_visible(timeout=15_000)
        if name == "store":
            page.get_by_label("Location", exact=True).fill("north")
            page.get_by_label("Scan or type a SKU or barcode, then Enter").fill(sku)
            page.keyboard.press("Enter")
            expect(page.locator("#store-done tbody tr")).to_have_count(1)
        if name == "reconcile":
            page.get_by_role("button", name="Run a report now").click()
            expect(page.locator(f'#reconcile-diffs tr[data-sku="{sku}"]')).to_be_visible()
        if name == "health":
            expect(page.locator("#health-rate")).to_have_text(_rate_pattern(), timeout=10_000)
            expect(page.locator("#health-redis")).to_have_text("ready")
            expect(page.locator("#health-postgres")).to_have_text("up")
        layout[name] = (fits_the_width(page), every_control_is_labelled(page))
        page.screenshot(path=str(shots / f"{name}-{size}.png"), full_page=True)

    assert layout == {name: (True, True) for name in ("stock", *pages)}


def _rate_pattern() -> Any:
    import re

    return re.compile(r"^\d+\.\d /s$")
