#!/usr/bin/env bash
# The run command: sets up .venv, then `inventory-cache demo` (embedded fakeredis + SQLite
# unless INVENTORY_REDIS_URL / INVENTORY_DATABASE_URL point at real servers).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
BOOTSTRAP_EXTRA=demo source scripts/bootstrap.sh
exec .venv/bin/inventory-cache demo "$@"
