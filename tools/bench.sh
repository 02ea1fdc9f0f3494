#!/usr/bin/env bash
# Benchmarks nsqd with bench_writer then bench_reader, like upstream's bench.sh:
# memory-backed (200 B and 1 KiB), single-message round trips, and disk-backed
# (--mem-queue-size=0, default sync and --sync-every=1). Prints one line per run
# and the resident memory per queued message.
#   tools/bench.sh [writer runfor] [reader runfor]   (default 10s 3s)
#
# With --guard, a regression record of a few seconds instead: nsqd's own CPU
# per message (utime+stime from /proc/PID/stat over the phase, divided by the
# messages) for (a) bench_writer publishing (MPUB x 200, 200 B) and (b) a
# go-nsq-style consumer (bench_reader --fin-each: one write per FIN, in flight
# == RDY; RDY 200, then 2500) draining what (a) queued. It prints figures and asserts
# nothing: a busy machine changes them. nsqd listens on free loopback ports.
#   tools/bench.sh --guard
set -euo pipefail
cd "$(dirname "$0")/.."
mode=full
if [ "${1:-}" = --guard ]; then
    mode=guard
    shift
fi
runfor=${1:-10s}
reader_runfor=${2:-3s}
cargo build --release -q -p nsqd -p nsq-tools
bin=${CARGO_TARGET_DIR:-target}/release
tcp_port=4150
http_port=4151
data=$(mktemp -d /tmp/nsq-bench.XXXXXX)
pid=""
trap '[ -z "$pid" ] || kill -9 $pid 2>/dev/null || true; rm -rf "$data"' EXIT

start_nsqd() {
    rm -rf "${data:?}"/*
    $bin/nsqd --tcp-address=127.0.0.1:$tcp_port --http-address=127.0.0.1:$http_port --data-path="$data" "$@" 2>/dev/null &
    pid=$!
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$http_port/ping" >/dev/null && return
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    kill -9 $pid 2>/dev/null || true
    echo "nsqd did not start" >&2; return 1
}
# The queued messages are thrown away: no need for a graceful (saving) stop.
stop_nsqd() { kill -9 $pid; wait $pid 2>/dev/null || true; pid=""; }
depth() { curl -s "http://127.0.0.1:$http_port/stats?format=json" | python3 -c 'import json,sys; print(sum(t["depth"]+sum(c["depth"] for c in t["channels"]) for t in json.load(sys.stdin)["topics"]))'; }
rss_kb() { awk '/VmRSS/ {print $2}' /proc/$pid/status; }

create_channel() {
    curl -sf -XPOST "http://127.0.0.1:$http_port/topic/create?topic=sub_bench" >/dev/null
    curl -sf -XPOST "http://127.0.0.1:$http_port/channel/create?topic=sub_bench&channel=ch" >/dev/null
}

run_pair() {  # label, size, nsqd flags...
    local label=$1 size=$2; shift 2
    start_nsqd "$@"
    create_channel
    local base; base=$(rss_kb)
    echo "== $label: nsqd $*"
    $bin/bench_writer --runfor="$runfor" --size="$size" --batch-size=200 2>&1 | sed 's/^/   /'
    local queued rss; queued=$(depth); rss=$(rss_kb)
    echo "   queued $queued, RSS $((rss - base)) kB above idle = $(( (rss - base) * 1024 / (queued > 0 ? queued : 1) )) B/msg"
    # A shorter reader run, so that it does not drain the queue and understate its rate.
    $bin/bench_reader --runfor="$reader_runfor" --size="$size" --rdy=2500 2>&1 | sed 's/^/   /'
    stop_nsqd
}

# Loopback ports nobody listens on now; nsqd takes no port 0, so a port taken
# in between makes start_nsqd fail and the caller try again.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}'; }
stat_field() { # messages, depth or in_flight of sub_bench/ch (python3: CI has no jq)
    curl -s --max-time 10 "http://127.0.0.1:$http_port/stats?format=json&topic=sub_bench" | python3 -c '
import json, sys
d = json.load(sys.stdin)
d = d.get("data", d)
t = [t for t in d["topics"] if t["topic_name"] == "sub_bench"][0]
c = [c for c in t["channels"] if c["channel_name"] == "ch"][0]
print({"messages": t["message_count"], "depth": c["depth"], "in_flight": c["in_flight_count"]}[sys.argv[1]])' "$1"
}
guard_line() { # label ticks messages start end (nanoseconds since the epoch)
    awk -v l="$1" -v t="$2" -v n="$3" -v s="$((($5 - $4) / 1000000))" -v hz="$(getconf CLK_TCK)" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
        'BEGIN { printf "guard: %-44s %9d msgs %9.0f msgs/s  nsqd %6.0f ns/msg  (load %s)\n", l, n, n * 1000 / s, (n > 0 ? t * 1e9 / hz / n : 0), load }'
}
now() { date +%s%N; }

guard() {
    local started=0 t0 t1 s0 s1 msgs d0 d1
    for _ in 1 2 3; do
        tcp_port=$(free_port) http_port=$(free_port)
        if start_nsqd --mem-queue-size=100000000; then started=1; break; fi
    done
    [ $started = 1 ] || return 1
    create_channel
    echo "guard: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, nsqd on 127.0.0.1:$tcp_port"
    s0=$(now); t0=$(cpu_ticks)
    $bin/bench_writer --nsqd-tcp-address=127.0.0.1:$tcp_port --runfor=2s --size=200 --batch-size=200 >/dev/null 2>&1
    t1=$(cpu_ticks); s1=$(now)
    msgs=$(stat_field messages)
    guard_line "publish (bench_writer, MPUB x 200, 200 B)" $((t1 - t0)) "$msgs" "$s0" "$s1"
    local rdy
    for rdy in 200 2500; do
        d0=$(stat_field depth)
        s0=$(now); t0=$(cpu_ticks)
        $bin/bench_reader --nsqd-tcp-address=127.0.0.1:$tcp_port --runfor=2s --size=200 --rdy=$rdy --fin-each >/dev/null 2>&1
        s1=$(now)
        # The reader's unfinished messages go back to the channel when it disconnects.
        for _ in $(seq 50); do [ "$(stat_field in_flight)" = 0 ] && break; sleep 0.1; done
        t1=$(cpu_ticks)
        d1=$(stat_field depth)
        guard_line "deliver (bench_reader --fin-each, RDY $rdy)" $((t1 - t0)) $((d0 - d1)) "$s0" "$s1"
    done
    stop_nsqd
}

if [ $mode = guard ]; then
    guard
    exit
fi

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
