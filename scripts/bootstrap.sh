#!/usr/bin/env bash
# Creates .venv and installs the project, again only when pyproject.toml changed.
# Sourced by scripts/demo.sh (BOOTSTRAP_EXTRA=demo: the service and its embedded Redis)
# and scripts/test.sh (the default, dev: the demo plus the test and lint tools).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  for candidate in python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null; then py="$candidate"; break; fi
  done
fi
if [ ! -x "$root/.venv/bin/python" ]; then
  echo "bootstrap: creating .venv with $py" >&2
  # No pip in it (uv installs): creating one with pip costs half a minute on a busy machine.
  "$py" -m venv --without-pip "$root/.venv"
fi
extra="${BOOTSTRAP_EXTRA:-dev}"
# requirements.lock pins every package (all extras, every platform): the versions CI
# tested are the versions installed. Regenerate it after changing dependencies:
#   uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -o requirements.lock
hash="$(cat "$root/pyproject.toml" "$root/requirements.lock" | sha1sum | cut -c1-12)"
stamp="$root/.venv/.installed-$hash-$extra"
# dev includes demo, so a dev install serves the demo too.
if [ ! -f "$stamp" ] && ! { [ "$extra" = demo ] && [ -f "$root/.venv/.installed-$hash-dev" ]; }; then
  echo "bootstrap: installing inventory-cache[$extra]" >&2
  log="$root/.venv/install.log"
  vpy="$root/.venv/bin/python"
  # uv installs the packages in seconds where pip takes minutes: the one on PATH, else one
  # fetched with the interpreter's pip into .venv/tools. Plain pip is the fallback.
  uv="$(command -v uv || true)"
  if [ -z "$uv" ] && { [ -x "$root/.venv/tools/bin/uv" ] \
      || "$py" -m pip install -q --target "$root/.venv/tools" uv >"$log" 2>&1; }; then
    uv="$root/.venv/tools/bin/uv"
  fi
  lock=(-c "$root/requirements.lock")
  if ! { { [ -n "$uv" ] && "$uv" pip install -q --python "$vpy" "${lock[@]}" -e "$root[$extra]"; } \
         || { "$vpy" -m ensurepip -q && "$vpy" -m pip install -q "${lock[@]}" -e "$root[$extra]"; }; } \
       >>"$log" 2>&1; then
    cat "$log" >&2
    echo "bootstrap: install failed (log above)" >&2
    exit 1
  fi
  rm -f "$root"/.venv/.installed-*
  touch "$stamp"
  if [ "$extra" = demo ]; then
    echo "bootstrap: the test and lint tools come with scripts/test.sh" >&2
  fi
fi
