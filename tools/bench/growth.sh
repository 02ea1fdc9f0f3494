#!/usr/bin/env bash
# How nsqd's cost grows: our nsqd against upstream's v1.3.0, same machine, same
# run, same clients (bench_growth, ours, protocol only). Each point starts one
# nsqd alone (ours on 127.0.0.1:15150/15151, upstream's on 25150/25151, a
# fresh data directory under /tmp), measures it, and kills it; then the other.
# CPU is nsqd's utime+stime from /proc/PID/stat, memory its VmRSS.
#
#   fanout   1, 4, 16, 64 channels on one topic, one consumer on each (RDY 200,
#            one write per FIN as go-nsq does); one producer PUBs 200 B at
#            --rate (default 1000/s) for --runfor. nsqd CPU per published message.
#   topics   1, 100, 10,000 topics with one channel each (from nsqd.dat, so
#            both start with them); one producer PUBs round-robin over all of
#            them at --topic-rate (default 2000/s) for --runfor. The channels
#            have no consumers (a consumer per channel is 10,000 connections:
#            see conns): this is the cost of taking a message and copying it
#            into its channel, plus whatever the idle topics cost meanwhile.
#   idle     10,000 topics with a channel each, no clients: nsqd CPU over
#            --idle-for (default 10s), in % of one core.
#   create   10,000 topics with a channel each over HTTP (/topic/create then
#            /channel/create, one keep-alive connection): the time per 1,000,
#            stopped at --create-cap (default 240s) with the count made.
#   conns    1,000 and 10,000 idle consumers on one channel (SUB, RDY 1, no
#            traffic): nsqd's RSS growth per connection and its CPU over
#            --idle-for. They ask for heartbeats every 5 s (IDENTIFY), so that
#            heartbeats fall in the window: the default 30 s would not fire
#            in a 10 s window starting right after the connections.
#   memory   200,000 messages of 200 B and of 1 KiB queued in one channel
#            (memory mode, --mem-queue-size=10000000), published with MPUB x 200
#            and with PUB (200 pipelined per write): RSS growth per message.
#
# At the end: a Markdown table on stdout (also written to --md, default
# docs/growth.md, with the raw figures beside it in docs/growth.tsv) and a plot
# in --svg (default docs/growth.svg), made by tools/bench/growth_plot.py
# (Python standard library only).
#
#   tools/bench/growth.sh [--phases=fanout,topics,idle,create,conns,memory]
#       [--runfor=3s] [--rate=1000] [--topic-rate=2000] [--idle-for=10s]
#       [--create-cap=240s] [--md=PATH] [--svg=PATH] [--no-build]
#       [--upstream-flags="--output-buffer-timeout=1ms ..."]
#
# --upstream-flags go to upstream's nsqd at every start: for instance a
# flush interval nearer ours, to compare the two at a like latency.
#
# Our binaries: `cargo build --release` (skipped with --no-build) in
# $CARGO_TARGET_DIR or target/. Upstream's: $UPSTREAM_BIN (default
# /work/upstream-nsq/bin). Needs curl, jq and python3; raises `ulimit -n`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
upstream_bin=${UPSTREAM_BIN:-/work/upstream-nsq/bin}
ours_bin=${CARGO_TARGET_DIR:-$repo/target}/release

phases=fanout,topics,idle,create,conns,memory
runfor=3s
rate=1000
topic_rate=2000
idle_for=10s
create_cap=240s
md=$repo/docs/growth.md
svg=$repo/docs/growth.svg
build=1
upstream_flags=()
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
for arg; do
    case $arg in
        --phases=*) phases=${arg#*=} ;;
        --runfor=*) runfor=${arg#*=} ;;
        --rate=*) rate=${arg#*=} ;;
        --topic-rate=*) topic_rate=${arg#*=} ;;
        --idle-for=*) idle_for=${arg#*=} ;;
        --create-cap=*) create_cap=${arg#*=} ;;
        --md=*) md=${arg#*=} ;;
        --svg=*) svg=${arg#*=} ;;
        --no-build) build=0 ;;
        --upstream-flags=*) read -ra upstream_flags <<<"${arg#*=}" ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
for phase in ${phases//,/ }; do
    case $phase in fanout | topics | idle | create | conns | memory) ;; *) echo "unknown phase $phase" >&2; exit 2 ;; esac
done
command -v jq >/dev/null || { echo "growth.sh needs jq" >&2; exit 2; }
[ -x "$upstream_bin/nsqd" ] || { echo "no $upstream_bin/nsqd: set UPSTREAM_BIN" >&2; exit 2; }
if [ "$build" = 1 ]; then
    (cd "$repo" && cargo build --release -q -p nsqd -p nsq-tools)
fi
driver=$ours_bin/bench_growth
# 10,000 connections need as many descriptors in nsqd and in the driver.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 10500 ] || [ "$(ulimit -n)" = unlimited ] ||
    echo "growth.sh: ulimit -n is $(ulimit -n); 10,000 connections may fail" >&2

declare -A nsqd=([ours]=$ours_bin/nsqd [upstream]=$upstream_bin/nsqd)
declare -A tcp=([ours]=15150 [upstream]=25150)
declare -A http=([ours]=15151 [upstream]=25151)
pid="" dir=""
work=$(mktemp -d /tmp/nsq-growth.XXXXXX)
results=$work/results.tsv
out=$work/out
: >"$results"
stop_one() {
    # Queued messages are thrown away: no need for a graceful (saving) stop.
    [ -z "$pid" ] || { kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    pid=""
    [ -z "$dir" ] || rm -rf "$dir"
    dir=""
}
trap 'stop_one; rm -rf "$work"' EXIT

new_dir() { dir=$(mktemp -d "$work/data.XXXXXX"); }
start_one() { # side, nsqd flags; uses $dir if set (it may hold an nsqd.dat)
    local side=$1
    shift
    [ "$side" = ours ] || set -- "$@" "${upstream_flags[@]}"
    [ -n "$dir" ] || new_dir
    "${nsqd[$side]}" --tcp-address=127.0.0.1:${tcp[$side]} --http-address=127.0.0.1:${http[$side]} \
        --data-path="$dir" "$@" >"$dir.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:${http[$side]}/ping" >/dev/null && return
        sleep 0.1
    done
    echo "$side nsqd did not start:" >&2; cat "$dir.log" >&2; exit 1
}
# nsqd.dat with topics t0..t{N-1}, one channel `ch` each, in upstream's shape.
write_metadata() {
    jq -cn --argjson n "$1" \
        '{version: "1.3.0", topics: [range($n) | {name: "t\(.)", paused: false, channels: [{name: "ch", paused: false}]}]}' \
        >"$dir/nsqd.dat"
}
topic_total() { curl -sf "http://127.0.0.1:${http[$1]}/stats?format=json" | jq '(.data // .).topics | length'; }
wait_topics() { # side count
    for _ in $(seq 600); do [ "$(topic_total "$1")" -ge "$2" ] && return; sleep 0.1; done
    echo "$1 nsqd did not load $2 topics" >&2; exit 1
}

clk=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}'; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
load() { cut -d' ' -f1 /proc/loadavg; }
seconds() { awk -v d="$1" 'BEGIN { if (d ~ /ms$/) print d / 1000; else if (d ~ /m$/) print d * 60; else print d + 0 }'; }
field() { awk -F': ' -v k="$1" '$1 == k { sub(/ [a-zA-Z%]+$/, "", $2); print $2 }' "$out"; }
record() { # metric x side value note
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"
    printf '  %-9s %-12s %-8s %12s   %s\n' "$3" "$1" "$2" "$4" "$5"
}

phase_fanout() {
    echo "== fanout: one topic, N channels with a consumer each, PUB 200 B at $rate/s for $runfor"
    local n side l
    for n in 1 4 16 64; do
        for side in ours upstream; do
            start_one "$side"
            l=$(load)
            "$driver" fanout --nsqd-tcp-address=127.0.0.1:${tcp[$side]} --pid="$pid" --channels="$n" \
                --rate="$rate" --runfor="$runfor" >"$out"
            record fanout "$n" "$side" "$(field 'nsqd cpu/msg')" \
                "$(field published) published, $(field delivered) delivered, load $l"
            stop_one
        done
    done
}

phase_topics() {
    echo "== topics: N topics with a channel each (no consumers), PUB 200 B round-robin at $topic_rate/s for $runfor"
    local n side l
    for n in 1 100 10000; do
        for side in ours upstream; do
            new_dir
            write_metadata "$n"
            start_one "$side"
            wait_topics "$side" "$n"
            sleep 1
            l=$(load)
            "$driver" publish --nsqd-tcp-address=127.0.0.1:${tcp[$side]} --pid="$pid" --topics="$n" \
                --rate="$topic_rate" --runfor="$runfor" >"$out"
            record topics "$n" "$side" "$(field 'nsqd cpu/msg')" "$(field published) published, load $l"
            stop_one
        done
    done
}

phase_idle() {
    echo "== idle: 10,000 topics with a channel each, no clients, $idle_for"
    local side l t0 t1 secs
    secs=$(seconds "$idle_for")
    for side in ours upstream; do
        new_dir
        write_metadata 10000
        start_one "$side"
        wait_topics "$side" 10000
        sleep 2
        l=$(load)
        t0=$(cpu_ticks)
        sleep "$secs"
        t1=$(cpu_ticks)
        record idle 10000 "$side" "$(awk -v t=$((t1 - t0)) -v hz="$clk" -v s="$secs" 'BEGIN { printf "%.2f", t * 100 / hz / s }')" \
            "RSS $(rss_kib) KiB, load $l"
        stop_one
    done
}

phase_create() {
    echo "== create: 10,000 topics with a channel each over HTTP, one connection, cap $create_cap"
    local side l x ms
    for side in ours upstream; do
        start_one "$side"
        l=$(load)
        "$driver" create --nsqd-http-address=127.0.0.1:${http[$side]} --topics=10000 --cap="$create_cap" >"$out"
        while read -r x ms; do
            record create "$x" "$side" "$ms" "ms for the 1000 up to $x"
        done < <(sed -n 's/^per 1000 at \([0-9]*\): \([0-9]*\) ms$/\1 \2/p' "$out")
        record create_total "$(field created)" "$side" "$(field seconds)" \
            "$(field created) made$(grep -q '^capped' "$out" && echo " (capped)"), load $l"
        stop_one
    done
}

phase_conns() {
    echo "== conns: N idle consumers (SUB, RDY 1, 5 s heartbeats) on one channel, measured over $idle_for"
    local n side l
    for n in 1000 10000; do
        for side in ours upstream; do
            start_one "$side"
            l=$(load)
            "$driver" idle --nsqd-tcp-address=127.0.0.1:${tcp[$side]} --pid="$pid" --connections="$n" \
                --hold="$idle_for" --heartbeat-interval=5s >"$out"
            record conns_rss "$n" "$side" "$(field 'rss/conn')" \
                "RSS $(field 'rss before') -> $(field 'rss after') KiB, load $l"
            record conns_cpu "$n" "$side" "$(field 'idle cpu')" "$(field heartbeats) heartbeats answered"
            stop_one
        done
    done
}

phase_memory() {
    echo "== memory: 200,000 messages queued in one channel, --mem-queue-size=10000000"
    local size batch side l metric
    for batch in 200 1; do
        metric=memory
        [ "$batch" = 200 ] || metric=memory_pub
        for size in 200 1024; do
            for side in ours upstream; do
                start_one "$side" --mem-queue-size=10000000
                l=$(load)
                "$driver" fill --nsqd-tcp-address=127.0.0.1:${tcp[$side]} --pid="$pid" --messages=200000 \
                    --size="$size" --batch-size="$batch" >"$out"
                record "$metric" "$size" "$side" "$(field 'rss/msg')" \
                    "RSS $(field 'rss before') -> $(field 'rss after') KiB, load $l"
                stop_one
            done
        done
    done
}

commit=$(git -C "$repo" rev-parse --short HEAD)
[ -z "$(git -C "$repo" status --porcelain --untracked-files=no)" ] || commit="$commit (modified)"
upstream_version=$("$upstream_bin/nsqd" --version 2>&1 | head -1)
start_load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "commit $commit; upstream $upstream_version; $(nproc) CPUs; load $start_load"
for phase in ${phases//,/ }; do "phase_$phase"; done
end_load=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$(dirname "$md")" "$(dirname "$svg")"
python3 "$repo/tools/bench/growth_plot.py" "$results" --svg="$svg" \
    --title="commit $commit against $upstream_version, $(nproc) CPUs, $(date -u +%Y-%m-%d), load average $start_load at the start, $end_load at the end" \
    --params="PUB rate $rate/s (fanout), $topic_rate/s (topics), $runfor a point; idle over $idle_for${upstream_flags[*]:+; upstream nsqd run with ${upstream_flags[*]}}" |
    tee "$md"
cp "$results" "${md%.md}.tsv"
echo
echo "table: $md; plot: $svg; data: ${md%.md}.tsv (tools/bench/growth_plot.py redraws from it)"
