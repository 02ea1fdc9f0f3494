#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine: installs what the
# tests need (a Python venv with pynsq and prometheus_client; Debian's Chromium
# and ChromeDriver for nsqadmin's browser test), checks formatting and lints,
# runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=tests/.venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "pynsq==0.9.1" "tornado>=6,<7" \
    "prometheus_client==0.26.0"
export NSQ_TEST_PYTHON="$PWD/$venv/bin/python"

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The durability tests run the real daemons: build the binaries first (nextest
# only builds a package's own binaries for its tests).
cargo build --workspace --bins --quiet
cargo nextest run --workspace --no-fail-fast --test-threads 4
cargo test --workspace --doc --quiet
