#!/usr/bin/env bash
# Our nsqd against upstream's v1.3.0, same machine, same run, same clients.
# Both nsqds run side by side (ours on 127.0.0.1:14150/14151, upstream's on
# 24150/24151, fresh temporary data directories, restarted for every phase)
# and each phase is run against ours, then upstream's:
#
#   throughput  upstream's Go bench_writer (200 B, MPUB x 200) then bench_reader
#               (RDY 2500), memory mode (--mem-queue-size=100000000)
#   durable     bench_durable on nsqd --mem-queue-size=0 --sync-every=1 (an fsync
#               per message): PUB from 1 and from 16 connections, MPUB x 200 from 1
#   latency     bench_latency at each --rates (default 2000 and 10000 msgs/s):
#               one producer, --consumers (default 1) on one channel, each with
#               RDY 200, that FIN every message
#
# For every phase the table gives the rate and nsqd's CPU per message:
# utime+stime from /proc/PID/stat, read before and after the phase, divided by
# the messages nsqd took (write phases) or delivered (read phases). CPU per
# message is the figure to trust on a busy machine; the load average taken at
# the start of each phase is in the last column.
#
#   tools/bench/compare.sh [--phases=throughput,durable,latency] [--runfor=5s]
#       [--reader-runfor=3s] [--rates=2000,10000] [--consumers=1] [--no-build]
#
# Our binaries: `cargo build --release` (skipped with --no-build) in
# $CARGO_TARGET_DIR or target/. Upstream's: $UPSTREAM_BIN (default
# /work/upstream-nsq/bin), built by ../shared/upstream/build.sh. Needs curl and jq.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
upstream_bin=${UPSTREAM_BIN:-/work/upstream-nsq/bin}
ours_bin=${CARGO_TARGET_DIR:-$repo/target}/release

phases=throughput,durable,latency
runfor=5s
reader_runfor=3s
rates=2000,10000
consumers=1
build=1
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
for arg; do
    case $arg in
        --phases=*) phases=${arg#*=} ;;
        --runfor=*) runfor=${arg#*=} ;;
        --reader-runfor=*) reader_runfor=${arg#*=} ;;
        --rates=*) rates=${arg#*=} ;;
        --consumers=*) consumers=${arg#*=} ;;
        --no-build) build=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
for phase in ${phases//,/ }; do
    case $phase in throughput | durable | latency) ;; *) echo "unknown phase $phase" >&2; exit 2 ;; esac
done
command -v jq >/dev/null || { echo "compare.sh needs jq" >&2; exit 2; }
for b in nsqd bench_writer bench_reader; do
    [ -x "$upstream_bin/$b" ] || { echo "no $upstream_bin/$b: run ../shared/upstream/build.sh or set UPSTREAM_BIN" >&2; exit 2; }
done
if [ "$build" = 1 ]; then
    (cd "$repo" && cargo build --release -q -p nsqd -p nsq-tools)
fi

sides=(ours upstream)
declare -A nsqd=([ours]=$ours_bin/nsqd [upstream]=$upstream_bin/nsqd)
declare -A tcp=([ours]=14150 [upstream]=24150)
declare -A http=([ours]=14151 [upstream]=24151)
declare -A pid=() dir=()
work=$(mktemp -d /tmp/nsq-compare.XXXXXX)
stop_pair() {
    local side
    for side in "${sides[@]}"; do
        # Queued messages are thrown away: no need for a graceful (saving) stop.
        [ -n "${pid[$side]:-}" ] && { kill -9 "${pid[$side]}" 2>/dev/null || true; wait "${pid[$side]}" 2>/dev/null || true; }
        pid[$side]=""
        [ -n "${dir[$side]:-}" ] && rm -rf "${dir[$side]}"
    done
}
trap 'stop_pair; rm -rf "$work"' EXIT

start_pair() { # nsqd flags, the same for both
    local side
    for side in "${sides[@]}"; do
        dir[$side]=$(mktemp -d "$work/$side.XXXXXX")
        "${nsqd[$side]}" --tcp-address=127.0.0.1:${tcp[$side]} --http-address=127.0.0.1:${http[$side]} \
            --data-path="${dir[$side]}" "$@" >"${dir[$side]}.log" 2>&1 &
        pid[$side]=$!
        for _ in $(seq 100); do
            curl -sf "http://127.0.0.1:${http[$side]}/ping" >/dev/null && continue 2
            sleep 0.1
        done
        echo "$side nsqd did not start:" >&2; cat "${dir[$side]}.log" >&2; exit 1
    done
}

clk=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/${pid[$1]}/stat" | awk '{print $12 + $13}'; }
load() { cut -d' ' -f1 /proc/loadavg; }
per_msg() { awk -v t="$1" -v n="$2" -v hz="$clk" 'BEGIN { if (n > 0) printf "%.0f", t * 1e9 / hz / n; else print "-" }'; }
stats() { curl -sf "http://127.0.0.1:${http[$1]}/stats?format=json&topic=$2" | jq '.data // .'; }
topic_count() { stats "$1" "$2" | jq --arg t "$2" '[.topics[]? | select(.topic_name == $t) | .message_count] | add // 0'; }
channel_field() { # side topic channel field
    stats "$1" "$2" | jq --arg t "$2" --arg c "$3" \
        "[.topics[]? | select(.topic_name == \$t) | .channels[] | select(.channel_name == \$c) | .$4] | add // 0"
}
field() { awk -F': ' -v k="$1" '$1 == k { sub(/ ms$/, "", $2); print $2 }' "$2"; }

# Results, by "label,side,what"; labels in the order first recorded.
declare -A result=() seen=()
labels=()
record() { # label side rate cpu-ticks messages note load
    local label=$1 side=$2
    [ -n "${seen[$label]:-}" ] || { seen[$label]=1; labels+=("$label"); }
    result[$label,$side,rate]=$3
    result[$label,$side,cpu]=$(per_msg "$4" "$5")
    result[$label,$side,note]=$6
    result[$label,$side,load]=$7
    printf '  %-9s %-22s %12s msgs/s %8s ns/msg  %s  (load %s)\n' "$side" "$label" "$3" "${result[$label,$side,cpu]}" "$6" "$7"
}

phase_throughput() {
    echo "== throughput: Go bench_writer $runfor, bench_reader $reader_runfor, 200 B, MPUB x 200"
    start_pair --mem-queue-size=100000000
    local side out=$work/out l t0 t1 msgs d0 d1
    for side in "${sides[@]}"; do
        local addr=127.0.0.1:${tcp[$side]}
        curl -sf -XPOST "http://127.0.0.1:${http[$side]}/topic/create?topic=sub_bench" >/dev/null
        curl -sf -XPOST "http://127.0.0.1:${http[$side]}/channel/create?topic=sub_bench&channel=ch" >/dev/null
        l=$(load); t0=$(cpu_ticks "$side")
        "$upstream_bin/bench_writer" --nsqd-tcp-address="$addr" --runfor="$runfor" --size=200 --batch-size=200 >"$out" 2>&1
        t1=$(cpu_ticks "$side")
        msgs=$(topic_count "$side" sub_bench)
        record "write (Go writer)" "$side" "$(grep -o '[0-9.]*ops/s' "$out" | sed 's/ops.s//; s/\..*//')" $((t1 - t0)) "$msgs" "$msgs msgs" "$l"

        d0=$(channel_field "$side" sub_bench ch depth)
        l=$(load); t0=$(cpu_ticks "$side")
        "$upstream_bin/bench_reader" --nsqd-tcp-address="$addr" --runfor="$reader_runfor" --size=200 --channel=ch --rdy=2500 >"$out" 2>&1
        t1=$(cpu_ticks "$side")
        # Ours puts the reader's unfinished messages back when it disconnects;
        # upstream keeps them in flight until they time out.
        for _ in $(seq 50); do [ "$(channel_field "$side" sub_bench ch in_flight_count)" = 0 ] && break; sleep 0.1; done
        d1=$(channel_field "$side" sub_bench ch depth)
        record "read (Go reader)" "$side" "$(grep -o '[0-9.]*ops/s' "$out" | sed 's/ops.s//; s/\..*//')" $((t1 - t0)) $((d0 - d1)) "$((d0 - d1)) msgs" "$l"
    done
    stop_pair
}

phase_durable() {
    echo "== durable: bench_durable $runfor, 200 B, nsqd --mem-queue-size=0 --sync-every=1"
    start_pair --mem-queue-size=0 --sync-every=1
    local side out=$work/out l t0 t1 conns batch label msgs
    for run in 1,1 16,1 1,200; do
        conns=${run%,*} batch=${run#*,}
        if [ "$batch" = 1 ]; then label="durable PUB, $conns conn"; else label="durable MPUB x $batch, $conns conn"; fi
        for side in "${sides[@]}"; do
            l=$(load); t0=$(cpu_ticks "$side")
            "$ours_bin/bench_durable" --nsqd-tcp-address=127.0.0.1:${tcp[$side]} --topic="durable_${conns}_$batch" \
                --runfor="$runfor" --connections="$conns" --batch-size="$batch" >"$out"
            t1=$(cpu_ticks "$side")
            msgs=$(field messages "$out")
            record "$label" "$side" "$(field msgs/s "$out" | sed 's/\..*//')" $((t1 - t0)) "$msgs" \
                "ack p50 $(field 'ack p50' "$out") p99 $(field 'ack p99' "$out") ms" "$l"
        done
    done
    stop_pair
}

phase_latency() {
    echo "== latency: bench_latency $runfor, 200 B, 1 producer, $consumers consumer(s) on one channel, RDY 200 each"
    start_pair
    local side out=$work/out l t0 t1 rate
    for rate in ${rates//,/ }; do
        for side in "${sides[@]}"; do
            l=$(load); t0=$(cpu_ticks "$side")
            "$ours_bin/bench_latency" --nsqd-tcp-address=127.0.0.1:${tcp[$side]} --topic="latency_$rate" \
                --rate="$rate" --runfor="$runfor" --rdy=200 --consumers="$consumers" >"$out"
            t1=$(cpu_ticks "$side")
            record "latency @ $rate/s" "$side" "$(field msgs/s "$out" | sed 's/\..*//')" \
                $((t1 - t0)) "$(field received "$out")" \
                "p50 $(field 'latency p50' "$out") p99 $(field 'latency p99' "$out") p99.9 $(field 'latency p99.9' "$out") max $(field 'latency max' "$out") ms" "$l"
        done
    done
    stop_pair
}

commit=$(git -C "$repo" rev-parse --short HEAD)
[ -z "$(git -C "$repo" status --porcelain --untracked-files=no)" ] || commit="$commit (modified)"
echo "commit $commit; upstream $("$upstream_bin/nsqd" --version 2>&1)"
echo "start: $(uptime)"
for phase in ${phases//,/ }; do "phase_$phase"; done
echo
echo "commit $commit, $(nproc) CPUs, end: $(uptime)"
echo
echo "| phase | ours msgs/s | ours ns/msg | upstream msgs/s | upstream ns/msg | ours | upstream | load (ours / upstream) |"
echo "|---|---|---|---|---|---|---|---|"
for label in "${labels[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s |\n' "$label" \
        "${result[$label,ours,rate]}" "${result[$label,ours,cpu]}" \
        "${result[$label,upstream,rate]}" "${result[$label,upstream,cpu]}" \
        "${result[$label,ours,note]}" "${result[$label,upstream,note]}" \
        "${result[$label,ours,load]}" "${result[$label,upstream,load]}"
done
