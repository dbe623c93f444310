#!/usr/bin/env bash
# The test command: sets up .venv, then lint, types and the whole test suite.
# Tests of Redis and PostgreSQL behaviour use the servers at 127.0.0.1 (see README);
# INVENTORY_REQUIRE_SERVICES=1 turns a missing server into a failure instead of a skip.
# The suite runs on 3 workers (pytest-xdist): most tests wait on servers, sockets and
# subprocesses, not the CPU. Each module stays on one worker, so its module-scoped servers
# and database start once (--dist loadfile); modules go out in collection order
# (--no-loadscope-reorder), which conftest starts with the slow ones. `-n 0` after the
# script's name runs it in one process.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest -n 3 --dist loadfile --no-loadscope-reorder "$@"
