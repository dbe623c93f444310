"""docker-compose.yml read against what the README promises (no Docker engine runs here,
and this machine's docker client has no compose plugin to validate it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from inventory_cache.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
SETTING_VARS = {f"INVENTORY_{name.upper()}" for name in Settings.model_fields}


def test_stack_has_every_process_the_readme_names() -> None:
    assert set(SERVICES) == {"redis", "postgres", "migrate", "warmup", "api", "worker", "scheduler"}


def test_redis_keeps_an_append_only_file_fsynced_every_second() -> None:
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert any(v.endswith(":/data") for v in SERVICES["redis"]["volumes"])


def test_redis_has_a_memory_bound_and_never_evicts_the_service_keys() -> None:
    command = SERVICES["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert re.fullmatch(
        r"\$\{REDIS_MAXMEMORY:-\d+[kmg]b\}", command[command.index("--maxmemory") + 1]
    )


def test_databases_have_healthchecks_and_volumes() -> None:
    assert SERVICES["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "pg_isready" in SERVICES["postgres"]["healthcheck"]["test"][1]
    assert any("/var/lib/postgresql/data" in v for v in SERVICES["postgres"]["volumes"])
    assert set(COMPOSE["volumes"]) == {"redis-data", "postgres-data"}


def test_start_order_is_migrate_then_warmup_then_processes() -> None:
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert SERVICES["warmup"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    for name in ("api", "worker", "scheduler"):
        assert SERVICES[name]["depends_on"] == {
            "warmup": {"condition": "service_completed_successfully"}
        }


def test_each_process_runs_an_existing_subcommand() -> None:
    from typer.main import get_command

    from inventory_cache.cli import app

    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for name in ("migrate", "warmup", "api", "worker", "scheduler"):
        assert SERVICES[name]["command"][0] in commands, name


def test_api_healthcheck_asks_readyz() -> None:
    assert "/readyz" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_every_variable_in_compose_and_readme_is_a_setting() -> None:
    env = SERVICES["api"]["environment"]
    for name in ("migrate", "warmup", "worker", "scheduler"):
        assert SERVICES[name]["environment"] == env
    assert {"INVENTORY_REDIS_URL", "INVENTORY_DATABASE_URL"} <= set(env)
    assert set(env) <= SETTING_VARS
    named_in_readme = set(re.findall(r"INVENTORY_[A-Z_]+", (ROOT / "README.md").read_text()))
    named_in_readme -= {"INVENTORY_REQUIRE_SERVICES"}  # the test suite's own switch
    assert named_in_readme <= SETTING_VARS, named_in_readme - SETTING_VARS


def test_two_workers_share_the_ledger_group() -> None:
    worker = SERVICES["worker"]
    assert worker["deploy"]["replicas"] == 2
    assert "container_name" not in worker  # replicas need names of their own
    assert "--consumer" not in worker["command"]  # each defaults to <hostname>-<pid>


PROCESSES = ("migrate", "warmup", "api", "worker", "scheduler")


def test_one_named_image_is_built_once_and_run_by_every_process() -> None:
    images = {SERVICES[name]["image"] for name in PROCESSES}
    builders = [name for name in PROCESSES if "build" in SERVICES[name]]

    assert images == {"inventory-cache:local"}
    assert builders == ["migrate"]
    for name in PROCESSES[1:]:
        assert SERVICES[name]["pull_policy"] == "never", name


def test_every_setting_reaches_every_process_from_dot_env() -> None:
    for name in PROCESSES:
        assert SERVICES[name]["env_file"] == [{"path": ".env", "required": False}], name


def test_worker_serves_its_metrics_and_worker_and_scheduler_have_healthchecks() -> None:
    worker = SERVICES["worker"]
    port = worker["command"][worker["command"].index("--metrics-port") + 1]

    assert worker["expose"] == [port]
    assert f"127.0.0.1:{port}/metrics" in " ".join(worker["healthcheck"]["test"])
    assert ":{lease}:scheduler" in " ".join(SERVICES["scheduler"]["healthcheck"]["test"])


def test_dockerfile_installs_dependencies_before_the_code_and_runs_unprivileged() -> None:
    lines = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.strip()]
    first_code = next(i for i, ln in enumerate(lines) if ln.startswith("COPY inventory_cache"))
    deps = next(i for i, ln in enumerate(lines) if "pip install -c requirements.lock -r" in ln)
    copies_before_deps = [ln for ln in lines[:deps] if ln.startswith("COPY")]

    assert deps < first_code
    assert copies_before_deps == ["COPY pyproject.toml requirements.lock ./"]
    assert any("chown -R inventory" in ln for ln in lines)
    assert lines[lines.index("USER inventory") - 1].startswith("RUN useradd")
