#!/usr/bin/env bash
# The test command: sets up .venv, then lint, types and the whole test suite.
# Tests of Redis and PostgreSQL behaviour use the servers at 127.0.0.1 (see README);
# INVENTORY_REQUIRE_SERVICES=1 turns a missing server into a failure instead of a skip.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
