#!/usr/bin/env bash
# What synchronous replication costs (#18): bench_durable against a durable
# nsqd alone, then against the same nsqd with --replicate-to a second durable
# nsqd (its peer), same run, same machine. Both sides run --mem-queue-size=0
# --sync-every=1, so an OK means the message is fsynced here, and with the
# peer also fsynced there. Fresh temporary data directories; the nsqds are
# restarted for every run.
#
#   tools/bench/replication.sh [--runfor=5s] [--no-build]
#
# For every run the table gives the acknowledged rate, the time to each OK,
# and nsqd's CPU per message (utime+stime from /proc/PID/stat over the run,
# divided by the messages): the origin's, and the peer's for the replicated
# side. Our binaries: `cargo build --release` (skipped with --no-build) in
# $CARGO_TARGET_DIR or target/. Needs curl and jq.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=${CARGO_TARGET_DIR:-$repo/target}/release
runfor=5s
build=1
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
for arg; do
    case $arg in
        --runfor=*) runfor=${arg#*=} ;;
        --no-build) build=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
command -v jq >/dev/null || { echo "replication.sh needs jq" >&2; exit 2; }
if [ "$build" = 1 ]; then
    (cd "$repo" && cargo build --release -q -p nsqd -p nsq-tools)
fi

work=$(mktemp -d /tmp/nsq-replication.XXXXXX)
declare -A pid=()
stop_all() {
    local name
    for name in "${!pid[@]}"; do
        kill -9 "${pid[$name]}" 2>/dev/null || true
        wait "${pid[$name]}" 2>/dev/null || true
    done
    pid=()
    rm -rf "$work"/*.d
}
trap 'stop_all; rm -rf "$work"' EXIT

start() { # name tcp-port http-port flags...
    local name=$1 tcp=$2 http=$3
    shift 3
    mkdir -p "$work/$name.d"
    "$bin/nsqd" --tcp-address=127.0.0.1:$tcp --http-address=127.0.0.1:$http --data-path="$work/$name.d" \
        --mem-queue-size=0 --sync-every=1 "$@" >"$work/$name.log" 2>&1 &
    pid[$name]=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$http/ping" >/dev/null && return
        sleep 0.1
    done
    echo "$name nsqd did not start:" >&2; cat "$work/$name.log" >&2; exit 1
}

clk=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/${pid[$1]}/stat" | awk '{print $12 + $13}'; }
per_msg() { awk -v t="$1" -v n="$2" -v hz="$clk" 'BEGIN { if (n > 0) printf "%.0f", t * 1e9 / hz / n; else print "-" }'; }
field() { awk -F': ' -v k="$1" '$1 == k { sub(/ ms$/, "", $2); print $2 }' "$2"; }
load() { cut -d' ' -f1 /proc/loadavg; }

declare -A result=()
runs=(16,1 16,200 1,200)
bench() { # side conns batch
    local side=$1 conns=$2 batch=$3 out=$work/out l o0 o1 p0 p1 msgs peer_cpu="-"
    l=$(load)
    o0=$(cpu_ticks origin)
    [ "$side" = replicated ] && p0=$(cpu_ticks peer)
    "$bin/bench_durable" --nsqd-tcp-address=127.0.0.1:14150 --topic="t_${conns}_$batch" \
        --runfor="$runfor" --connections="$conns" --batch-size="$batch" >"$out"
    o1=$(cpu_ticks origin)
    msgs=$(field messages "$out")
    if [ "$side" = replicated ]; then
        p1=$(cpu_ticks peer)
        peer_cpu=$(per_msg $((p1 - p0)) "$msgs")
    fi
    local key=$conns,$batch,$side
    result[$key,rate]=$(field msgs/s "$out" | sed 's/\..*//')
    result[$key,cpu]=$(per_msg $((o1 - o0)) "$msgs")
    result[$key,peer]=$peer_cpu
    result[$key,ack]="$(field 'ack p50' "$out") / $(field 'ack p99' "$out")"
    printf '  %-10s %2s conn x %-3s %10s msgs/s  nsqd %6s ns/msg  peer %6s ns/msg  ack p50/p99 %s ms  (load %s)\n' \
        "$side" "$conns" "$batch" "${result[$key,rate]}" "${result[$key,cpu]}" "$peer_cpu" "${result[$key,ack]}" "$l"
}

commit=$(git -C "$repo" rev-parse --short HEAD)
[ -z "$(git -C "$repo" status --porcelain --untracked-files=no)" ] || commit="$commit (modified)"
echo "commit $commit; start: $(uptime)"
for run in "${runs[@]}"; do
    conns=${run%,*} batch=${run#*,}
    start origin 14150 14151
    bench single "$conns" "$batch"
    stop_all
    start peer 34150 34151
    start origin 14150 14151 --replicate-to=127.0.0.1:34150
    for _ in $(seq 100); do
        [ "$(curl -sf http://127.0.0.1:14151/stats?format=json | jq -r '.peers[0].state')" = synced ] && break
        sleep 0.1
    done
    bench replicated "$conns" "$batch"
    stop_all
done
echo
echo "commit $commit, $(nproc) CPUs, end: $(uptime)"
echo
echo "| publishes | alone msgs/s | replicated msgs/s | alone / replicated | nsqd ns/msg alone | origin ns/msg replicated | peer ns/msg | ack p50/p99 ms alone | replicated |"
echo "|---|---|---|---|---|---|---|---|---|"
for run in "${runs[@]}"; do
    conns=${run%,*} batch=${run#*,}
    a=$conns,$batch,single r=$conns,$batch,replicated
    if [ "$batch" = 1 ]; then what="PUB, $conns conn"; else what="MPUB x $batch, $conns conn"; fi
    ratio=$(awk -v a="${result[$a,rate]}" -v r="${result[$r,rate]}" 'BEGIN { if (r > 0) printf "%.2f", a / r; else print "-" }')
    printf '| %s | %s | %s | %s× | %s | %s | %s | %s | %s |\n' "$what" "${result[$a,rate]}" "${result[$r,rate]}" "$ratio" \
        "${result[$a,cpu]}" "${result[$r,cpu]}" "${result[$r,peer]}" "${result[$a,ack]}" "${result[$r,ack]}"
done
