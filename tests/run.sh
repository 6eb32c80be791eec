#!/usr/bin/env bash
# The README's test command. On a Debian machine, as root: installs what the tests need
# (Debian packages only if missing, the project with its test extra), lints, and runs the
# whole suite. The tests start their own private dockerd (tests/support/engine.py); this script
# asks them to stop it at the end. Arguments go to pytest.
#
#   bash tests/run.sh              everything (what CI runs, through .ci/run)
#   bash tests/run.sh unit [ARGS]  the quick tier: lint, then tests/unit only (no engine, no
#                                  installs: for a machine the full run has set up)
set -euo pipefail
cd "$(dirname "$0")/.."

lint() {
  echo "== lint"
  python3 -m ruff check .
  python3 -m ruff format --check .
  python3 -m mypy agent exporters grafana bench tests
}

if [[ "${1:-}" == unit ]]; then
  shift
  lint
  echo "== unit tests"
  exec python3 -m pytest -q -p no:cacheprovider tests/unit "$@"
fi

# Real peers the tests run against: dockerd, busybox for test images, rsyslog (+TLS),
# prometheus/promtool, debootstrap for the agent's image base, iproute2 for veth pairs and the
# swarm test's network namespaces, util-linux for its nsenter/unshare, docker-compose to bring
# up deploy/*.yaml, curl for the TLS/auth tests, amtool (Alertmanager's package) to check
# deploy/alertmanager/alertmanager.yml, tmux to drive `dockwatch top` in a real terminal, gcc for
# the collector's C module (agent/_procnet.c; tests/unit/test_fastproc.py fails without it).
PKGS=(gcc docker.io busybox-static iproute2 util-linux rsyslog rsyslog-gnutls gnutls-bin openssl prometheus debootstrap ca-certificates docker-compose curl prometheus-alertmanager tmux)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== installing Debian packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

echo "== installing dockwatch with its test extra"
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

lint

echo "== tests"
export DOCKWATCH_TEST_STOP_ENGINE=1
exec python3 -m pytest -q -p no:cacheprovider "$@"
