"""Every metric name the documentation mentions is one that a process really exposes:
the API's `/metrics`, or a worker's metrics endpoint (`worker --metrics-port`), which
serves the process's default registry. Names are read from the docs, so a renamed
metric or a new runbook line is checked without touching this test."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

import inventory_cache.worker  # noqa: F401  (registers the worker's metrics)
from tests.support.api import Api

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_METRICS = {"inventory_cache"}  # the package's name


def mentioned() -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for doc in DOCS:
        for name in re.findall(r"\binventory_[a-z0-9_]*[a-z0-9]\b", doc.read_text()):
            if name not in NOT_METRICS:
                names.setdefault(name, []).append(doc.name)
    return names


def exposed(text: str) -> set[str]:
    """Family names (`# TYPE`) and sample names (`_total`, `_bucket`...) of an exposition."""
    names = set(re.findall(r"^# TYPE (\S+)", text, flags=re.MULTILINE))
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", text, flags=re.MULTILINE))
    return names


async def test_every_metric_the_docs_name_is_exposed(api: Api) -> None:
    await api.client.get("/v1/availability/phone-a", headers=api.auth("read"))
    api_metrics = (await api.client.get("/metrics")).text
    worker_metrics = generate_latest(REGISTRY).decode()
    available = exposed(api_metrics) | exposed(worker_metrics)

    unknown = {name: docs for name, docs in mentioned().items() if name not in available}

    assert unknown == {}, f"named in the docs, exposed nowhere: {unknown}"


def test_the_docs_name_at_least_the_metrics_an_operator_watches() -> None:
    assert any(name.startswith("inventory_worker_") for name in mentioned())
