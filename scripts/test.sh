#!/usr/bin/env bash
# Runs the suite on SQLite and on PostgreSQL, side by side (two processes; much of the suite
# waits on I/O). On CI (CI=true) PostgreSQL is mandatory: a run that silently skipped it would
# prove nothing about production.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
# Rate-limit tests run against this Redis (with CI=true an unreachable one fails them); each run
# has a database of its own there, so the two never count each other's requests.
REDIS=${IDP_TEST_REDIS_URL:-redis://127.0.0.1:6379/14}
PG_URL=${PG_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/test}
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT

pg_up=false
if $BIN/python - "$PG_URL" <<'PY'
import asyncio, sys
import asyncpg
url = sys.argv[1].replace("postgresql+asyncpg://", "postgresql://")
async def main():
    connection = await asyncpg.connect(url, timeout=5)
    await connection.close()
try:
    asyncio.run(main())
except Exception as exc:
    print(f"PostgreSQL unreachable: {exc}", file=sys.stderr)
    sys.exit(1)
PY
then
  pg_up=true
fi

# The browser tests and the organisation CLI tests use a SQLite file of their own, whatever the
# run's database (about two minutes): with two runs side by side they go in the PostgreSQL one,
# so the two finish at about the same time. tests/faults (a private PostgreSQL cluster, Redis,
# SMTP and SMS gateway of their own, about 1.5 minutes) runs in the SQLite process only, and
# tests/test_two_nodes.py in the PostgreSQL process only: each skips itself in the other.
# --durations names the slowest tests, to keep the suite well under 10 minutes.
sqlite_extra=()
[ "$pg_up" = true ] && sqlite_extra=(--ignore=tests/browser --ignore=tests/test_org_cli.py)
IDP_TEST_REDIS_URL="$REDIS" $BIN/pytest -q -p no:cacheprovider --durations=8 "${sqlite_extra[@]}" >"$LOGS/sqlite" 2>&1 &
sqlite_pid=$!

pg_pid=""
if [ "$pg_up" = true ]; then
  IDP_TEST_DATABASE_URL="$PG_URL" IDP_TEST_REDIS_URL="${REDIS%/*}/15" \
    $BIN/pytest -q -p no:cacheprovider --durations=8 >"$LOGS/postgres" 2>&1 &
  pg_pid=$!
  pg_rc=0
elif [ "${CI:-}" = "true" ]; then
  echo "FAIL: PostgreSQL tests cannot be skipped on CI" >&2
  pg_rc=1
else
  echo "WARNING: PostgreSQL not reachable; its run was skipped (allowed outside CI only)" >&2
  pg_rc=0
fi

wait $sqlite_pid
sqlite_rc=$?
echo "== SQLite =="
cat "$LOGS/sqlite"
if [ -n "$pg_pid" ]; then
  wait $pg_pid
  pg_rc=$?
  echo "== PostgreSQL ($PG_URL) =="
  cat "$LOGS/postgres"
fi

[ $sqlite_rc -eq 0 ] && [ $pg_rc -eq 0 ]
