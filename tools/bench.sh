#!/usr/bin/env bash
# Benchmarks nsqd with bench_writer then bench_reader, like upstream's bench.sh:
# memory-backed (200 B and 1 KiB), single-message round trips, and disk-backed
# (--mem-queue-size=0, default sync and --sync-every=1). Prints one line per run
# and the resident memory per queued message.
#   tools/bench.sh [writer runfor] [reader runfor]   (default 10s 3s)
set -euo pipefail
cd "$(dirname "$0")/.."
runfor=${1:-10s}
reader_runfor=${2:-3s}
cargo build --release -q -p nsqd -p nsq-tools
bin=target/release
data=$(mktemp -d /tmp/nsq-bench.XXXXXX)
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT

start_nsqd() {
    rm -rf "$data"/*
    $bin/nsqd --tcp-address=127.0.0.1:4150 --http-address=127.0.0.1:4151 --data-path="$data" "$@" 2>/dev/null &
    pid=$!
    for _ in $(seq 50); do curl -sf http://127.0.0.1:4151/ping >/dev/null && return; sleep 0.1; done
    echo "nsqd did not start" >&2; exit 1
}
# The queued messages are thrown away: no need for a graceful (saving) stop.
stop_nsqd() { kill -9 $pid; wait $pid 2>/dev/null || true; }
depth() { curl -s 'http://127.0.0.1:4151/stats?format=json' | python3 -c 'import json,sys; print(sum(t["depth"]+sum(c["depth"] for c in t["channels"]) for t in json.load(sys.stdin)["topics"]))'; }
rss_kb() { awk '/VmRSS/ {print $2}' /proc/$pid/status; }

run_pair() {  # label, size, nsqd flags...
    local label=$1 size=$2; shift 2
    start_nsqd "$@"
    curl -s -XPOST 'http://127.0.0.1:4151/channel/create?topic=sub_bench&channel=ch' >/dev/null || true
    curl -s -XPOST 'http://127.0.0.1:4151/topic/create?topic=sub_bench' >/dev/null
    curl -s -XPOST 'http://127.0.0.1:4151/channel/create?topic=sub_bench&channel=ch' >/dev/null
    local base; base=$(rss_kb)
    echo "== $label: nsqd $*"
    $bin/bench_writer --runfor="$runfor" --size="$size" --batch-size=200 2>&1 | sed 's/^/   /'
    local queued rss; queued=$(depth); rss=$(rss_kb)
    echo "   queued $queued, RSS $((rss - base)) kB above idle = $(( (rss - base) * 1024 / (queued > 0 ? queued : 1) )) B/msg"
    # A shorter reader run, so that it does not drain the queue and understate its rate.
    $bin/bench_reader --runfor="$reader_runfor" --size="$size" --rdy=2500 2>&1 | sed 's/^/   /'
    stop_nsqd
}

# On a virtual machine the hypervisor backs guest memory on first touch, which
# makes the first memory-heavy run much slower than later ones. Touch the
# memory once so that every run starts from the same state.
if [ -d /dev/shm ]; then
    dd if=/dev/zero of=/dev/shm/nsq-bench-warmup bs=1M count=11000 status=none 2>/dev/null || true
    rm -f /dev/shm/nsq-bench-warmup
fi

run_pair "memory, 200 B" 200 --mem-queue-size=100000000
run_pair "memory, 1 KiB" 1024 --mem-queue-size=100000000
run_pair "disk, 200 B" 200 --mem-queue-size=0
run_pair "disk, 1 KiB" 1024 --mem-queue-size=0
run_pair "disk, 200 B, --sync-every=1" 200 --mem-queue-size=0 --sync-every=1

start_nsqd --mem-queue-size=100000000
echo "== single-message round trips (MPUB of 1, one connection per core)"
$bin/bench_writer --runfor="$runfor" --size=200 --batch-size=1 2>&1 | sed 's/^/   /'
stop_nsqd
