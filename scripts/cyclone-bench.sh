#!/usr/bin/env bash
# Cyclone DDS 11.0.1 over the shmslot PSMX plugin against Cyclone over UDP
# loopback, with Cyclone's own ddsperf (built by psmx/cyclone from the source
# cyclors carries). Two processes pinned to CPUs 0 and 1; every repetition
# runs each case over both systems back to back, so the host's fast and slow
# states hit both alike.
#
#   scripts/cyclone-bench.sh [--reps N] [--secs S]
#
# Round trips with loans on both sides (psmx/cyclone's cyclone_pingpong,
# listener mode, reliable keep-last-1): fixed-size memcpy-safe types of 8 B,
# 1 KiB, 64 KiB and 1 MiB (case "pp SIZE"). Round trips with ddsperf
# (ping/pong, listener mode, keep-last-1): its fixed-size memcpy-safe topics
# UK16 (16 B), UK1k, UK64k, and the keyed KS topic at 1 MiB (serialized).
# Throughput (ddsperf pub/sub, reliable keep-all): UK1k and UK64k flat out.
# Prints one line per measurement, then medians per case and system and the
# shmslot/UDP ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

reps=5
secs=4
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps="$2"; shift 2 ;;
        --secs) secs="$2"; shift 2 ;;
        *) echo "usage: $0 [--reps N] [--secs S]" >&2; exit 2 ;;
    esac
done

cargo build --release -q -p psmx_shmslot -p psmx_cyclone -p flink
# (Builds with other features of the workspace have their own build
# directories: take the newest.)
pingpong=$(ls -t target/release/build/psmx_cyclone-*/out/cyclone_pingpong 2>/dev/null | head -1)
cyclone=$(dirname "$pingpong")/cyclone
[ -x "$pingpong" ] && [ -x "$cyclone/bin/ddsperf" ] || { echo "no cyclone_pingpong and ddsperf under target/release/build/psmx_cyclone-*/out" >&2; exit 1; }
plugin=$(pwd)/target/release/libpsmx_shmslot.so
export LD_LIBRARY_PATH="$cyclone/lib"
work=$(mktemp -d /tmp/cyclone-bench.XXXXXX)
chmod 700 "$work"
export SHMSLOT_DIR="$work/rings"
mkdir -m 700 "$SHMSLOT_DIR"
# On the way out: stop what still runs, remove the rings a killed process
# left (flink clean decides by the kernel locks), then the directory.
trap 'pkill -f "$cyclone/bin/ddsperf" 2>/dev/null || true; pkill -f "$pingpong" 2>/dev/null || true; sleep 0.2; target/release/flink clean --dir "$SHMSLOT_DIR" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

uri() { # system
    if [ "$1" = shmslot ]; then
        echo "<CycloneDDS><Domain id=\"any\"><General><Interfaces><PubSubMessageExchange type=\"shmslot\" library=\"$plugin\"/></Interfaces></General></Domain></CycloneDDS>"
    else
        echo '<CycloneDDS><Domain id="any"/></CycloneDDS>'
    fi
}

domain=120
# run KIND SYSTEM TOPIC SIZE: one measurement, its ddsperf output in $work/out
run() {
    local kind=$1 sys=$2 topic=$3 size=$4
    domain=$((domain + 1))
    local sz=()
    [ "$size" != - ] && sz=(size "$size")
    export CYCLONEDDS_URI
    CYCLONEDDS_URI=$(uri "$sys")
    if [ "$kind" = pp ]; then
        taskset -c 1 timeout $((secs + 8)) "$pingpong" pong "$topic" "$secs" > "$work/peer" 2>&1 &
        sleep 0.3
        taskset -c 0 timeout $((secs + 8)) "$pingpong" ping "$topic" "$secs" > "$work/out" 2>&1 || true
    elif [ "$kind" = rt ]; then
        taskset -c 1 timeout $((secs + 4)) "$cyclone/bin/ddsperf" -i $domain -T "$topic" -D $((secs + 1)) pong > "$work/peer" 2>&1 &
        sleep 0.3
        taskset -c 0 timeout $((secs + 4)) "$cyclone/bin/ddsperf" -i $domain -T "$topic" -D "$secs" ping "${sz[@]}" > "$work/out" 2>&1 || true
    else
        taskset -c 1 timeout $((secs + 4)) "$cyclone/bin/ddsperf" -i $domain -T "$topic" -D $((secs + 1)) sub > "$work/out" 2>&1 &
        sleep 0.3
        taskset -c 0 timeout $((secs + 4)) "$cyclone/bin/ddsperf" -i $domain -T "$topic" -D "$secs" pub "${sz[@]}" > "$work/peer" 2>&1 || true
    fi
    wait 2>/dev/null || true
    python3 - "$kind" "$sys" "$topic" "$size" "$work/out" <<'EOF'
import re, statistics, sys
kind, system, topic, size, path = sys.argv[1:]
text = open(path).read()
case = f"{topic}" + ("" if size == "-" else f" {size}")
if kind == "pp":
    m = re.search(r"RESULT p50_us ([\d.]+) p99_us ([\d.]+) count (\d+)", text)
    if not m:
        print(f"RESULT pp {system} {case} - - -"); sys.exit()
    print(f"RESULT pp {system} {case} p50_us {m.group(1)} p99_us {m.group(2)} count {m.group(3)}")
elif kind == "rt":
    rows = re.findall(r"size (\d+) mean [\d.]+us min [\d.]+us 50% ([\d.]+)us 90% [\d.]+us 99% ([\d.]+)us .* cnt (\d+)", text)
    rows = rows[1:] or rows  # the first second includes matching
    if not rows:
        print(f"RESULT rt {system} {case} - - -"); sys.exit()
    p50 = statistics.median(float(r[1]) for r in rows)
    p99 = statistics.median(float(r[2]) for r in rows)
    print(f"RESULT rt {system} {case} p50_us {p50:.2f} p99_us {p99:.2f} bytes {rows[0][0]}")
else:
    rows = re.findall(r"size (\d+) total (\d+) lost (\d+) delta \d+ lost \d+ rate ([\d.]+) kS/s", text)
    rows = rows[1:] or rows
    if not rows:
        print(f"RESULT thr {system} {case} - - -"); sys.exit()
    rate = statistics.median(float(r[3]) for r in rows)
    print(f"RESULT thr {system} {case} kS_per_s {rate:.1f} lost {rows[-1][2]} total {rows[-1][1]} bytes {rows[0][0]}")
EOF
}

echo "Cyclone DDS 11.0.1 ddsperf, shmslot PSMX vs UDP loopback, $reps repetitions of ${secs} s per case, $(date -u +%F), $(nproc) CPUs"
for rep in $(seq 1 "$reps"); do
    for c in "pp 8 -" "pp 1k -" "pp 64k -" "pp 1m -" "rt UK16 -" "rt UK1k -" "rt UK64k -" "rt KS 1MiB" "thr UK1k -" "thr UK64k -"; do
        set -- $c
        for sys in shmslot udp; do
            run "$1" "$sys" "$2" "$3"
        done
    done
done | tee "$work/results"

python3 - "$work/results" <<'EOF'
import collections, statistics, sys
vals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    w = line.split()
    if len(w) < 5 or w[0] != "RESULT" or "-" in w:
        continue
    kind, system = w[1], w[2]
    i = 3
    case = []
    while not w[i].endswith(("_us", "_s")):
        case.append(w[i]); i += 1
    case = " ".join(case)
    kv = dict(zip(w[i::2], w[i + 1::2]))
    for k, v in kv.items():
        try:
            vals[(kind, case, system, k)].append(float(v))
        except ValueError:
            pass
print()
print("medians per case (shmslot / udp)")
cases = list(dict.fromkeys((k, c) for (k, c, _, _) in vals))
for kind, case in cases:
    keys = ["p50_us", "p99_us"] if kind in ("rt", "pp") else ["kS_per_s", "lost"]
    parts = []
    for k in keys:
        a = vals.get((kind, case, "shmslot", k), [])
        b = vals.get((kind, case, "udp", k), [])
        if a and b:
            ma, mb = statistics.median(a), statistics.median(b)
            ratio = f" ({ma / mb:.3f}x)" if mb else ""
            parts.append(f"{k} {ma:g} / {mb:g}{ratio}")
    print(f"  {kind:3} {case:10} " + "; ".join(parts))
big, small = vals.get(("pp", "1m", "shmslot", "p50_us")), vals.get(("pp", "8", "shmslot", "p50_us"))
if big and small:
    print(f"  zero copy: 1 MiB round trip / 8 B round trip over shmslot = {statistics.median(big) / statistics.median(small):.2f}x")
EOF
