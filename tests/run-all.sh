#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine: installs what the
# tests need (cargo-nextest, rustfmt and clippy; a Python venv with pynsq and
# prometheus_client; Debian's Chromium and ChromeDriver for nsqadmin's browser
# test), checks formatting and lints, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tools first, before minutes of building: install what can be
# installed, and stop at once with the reason otherwise.
fail() {
    echo "tests/run-all.sh: $*" >&2
    exit 1
}
command -v cargo >/dev/null || fail "cargo is missing: install Rust with rustup (https://rustup.rs)"
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "tests/run-all.sh: installing cargo-nextest" >&2
    cargo install --locked --quiet cargo-nextest ||
        fail "cargo-nextest is missing and 'cargo install --locked cargo-nextest' failed"
fi
for component in rustfmt clippy; do
    probe=$([ "$component" = rustfmt ] && echo fmt || echo clippy)
    if ! cargo "$probe" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null ||
            fail "$component is missing and there is no rustup to add it: install your distribution's $component"
        rustup component add "$component" || fail "$component is missing and 'rustup component add $component' failed"
    fi
done
python3 -c 'import venv, ensurepip' 2>/dev/null ||
    fail "python3 with venv is missing: install python3 and python3-venv"

venv=tests/.venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "pynsq==0.9.1" "tornado>=6,<7" \
    "prometheus_client==0.26.0"
export NSQ_TEST_PYTHON="$PWD/$venv/bin/python"

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    command -v apt-get >/dev/null ||
        fail "/usr/bin/chromium and /usr/bin/chromedriver are missing and there is no apt-get to install them"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# A run from a fresh clone builds everything once: incremental caches would
# only take gigabytes of disk. Set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The durability tests run the real daemons: build the binaries first (nextest
# only builds a package's own binaries for its tests).
cargo build --workspace --bins --quiet
cargo nextest run --workspace --no-fail-fast --test-threads 4
cargo test --workspace --doc --quiet

# For the record, never a failure: nsqd's CPU per message publishing and
# delivering to a go-nsq-style consumer (a release build, then ~10 s).
tools/bench.sh --guard || echo "tests/run-all.sh: tools/bench.sh --guard failed; it is a record, not a test"
