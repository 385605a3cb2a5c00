#!/usr/bin/env bash
# The test suite, from a fresh machine: installs what the tests talk to (Knot,
# NSD, BIND and their tools, Unbound, promtool, iproute2 (tests/wildcard.rs makes network
# namespaces, as root), the PostgreSQL client, cargo-nextest,
# openapi-spec-validator), checks that PostgreSQL answers (FERRODNS_TEST_POSTGRES,
# by default 127.0.0.1:5432 as the role root with trust auth), then runs every
# test. Debian or Ubuntu, as root.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
need_apt=0
for tool in knotd nsd named kdig dig named-checkzone kzonecheck psql unbound promtool ip; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || need_apt=1
done
if [ "$need_apt" = 1 ]; then
    apt-get update -qq
    apt-get install -y -qq knot knot-dnsutils knot-dnssecutils nsd bind9 bind9-dnsutils bind9-utils postgresql-client unbound \
        prometheus iproute2 >/dev/null
fi
# The PostgreSQL half of the suites needs a server where each test may create
# and drop a database: FERRODNS_TEST_POSTGRES, by default 127.0.0.1:5432 as
# the role root with trust auth.
export FERRODNS_TEST_POSTGRES="${FERRODNS_TEST_POSTGRES:-postgres://root@127.0.0.1:5432}"
if ! psql -d "$FERRODNS_TEST_POSTGRES/postgres" -qAtc 'SELECT 1' >/dev/null 2>&1; then
    echo "PostgreSQL is not answering at $FERRODNS_TEST_POSTGRES (set FERRODNS_TEST_POSTGRES to a server where tests may create databases)" >&2
    exit 1
fi
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
# crates/ferrodns-api/tests/openapi.rs validates /v1/openapi.json with it.
python3 -m pip install --quiet --disable-pip-version-check 'openapi-spec-validator==0.9.0'

cargo nextest run --workspace --locked --no-fail-fast
