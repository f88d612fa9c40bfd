#!/bin/sh
# Run the integration suite against the built daemon ($ACRDNSD).
# Debian's python3 carries pytest and dnspython; a python3 earlier on PATH may not.
set -e
here=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
if ! "$PY" -c 'import pytest, dns.message' 2>/dev/null; then
	echo "integration: $PY lacks pytest or dnspython (apt-get install python3-pytest python3-dnspython)" >&2
	exit 1
fi
# -p no:cacheprovider: no .pytest_cache in a read-only source tree (make distcheck).
exec "$PY" -m pytest -p no:cacheprovider -q -ra "$here" ${PYTEST_ARGS:-}
