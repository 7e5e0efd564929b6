#!/usr/bin/env bash
# bench-peer: Herald's latency phase (intake's durable ACK -> first email, the four services as
# processes against the real Kafka and Redis) in alternation with the Alertmanager peer
# (POST -> webhook, in memory), at the same rate, PAIRS times, and prints each pair's figures, the
# machine's load average beside them, and Herald/peer ratios. Run by `make bench-peer` (after make
# deps-up, with the same HERALD_* environment as make test).
# usage: bench-peer.sh [PEER run.sh] ; env PAIRS (3), RATE (100), DURATION (20s)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
peer=${1:-$root/../shared/bench/alertmanager-peer/run.sh}
[ -x "$peer" ] || [ -f "$peer" ] || peer=/work/shared/bench/alertmanager-peer/run.sh
[ -f "$peer" ] || { echo "bench-peer: the peer script is not at $peer (pass its path)" >&2; exit 2; }
pairs=${PAIRS:-3}; rate=${RATE:-100}; dur=${DURATION:-20s}
out=$(mktemp -d)
# ms converts a Go duration (812µs, 1.6ms, 2.1s) to milliseconds.
ms() { awk -v d="$1" 'BEGIN{ if (d ~ /µs$/) {sub(/µs$/,"",d); print d/1000} else if (d ~ /ms$/) {sub(/ms$/,"",d); print d+0} else if (d ~ /ns$/) {sub(/ns$/,"",d); print d/1e6} else if (d ~ /s$/) {sub(/s$/,"",d); print d*1000} else print "nan" }'; }
printf '| Pair | Load avg (peer run) | Peer p50 / p99 ms | Load avg (Herald run) | Herald p50 / p99 ms | Herald lost | Ratio p50 | Ratio p99 |\n|---|---|---:|---|---:|---:|---:|---:|\n' > "$out/table"
fail=0
for i in $(seq 1 "$pairs"); do
  l1=$(cut -d' ' -f1-3 /proc/loadavg)
  bash "$peer" "$rate" "$dur" > "$out/peer$i.txt" 2>&1 || { echo "bench-peer: the peer run failed:"; cat "$out/peer$i.txt"; exit 1; }
  line=$(grep 'latency POST start->webhook' "$out/peer$i.txt")
  pp50=$(ms "$(sed 's/.*p50=\([^ ]*\).*/\1/' <<<"$line")"); pp99=$(ms "$(sed 's/.*p99=\([^ ]*\).*/\1/' <<<"$line")")
  l2=$(cut -d' ' -f1-3 /proc/loadavg)
  (cd "$root/e2e" && go test -run '^$' -bench 'Herald$' -benchtime 1x -timeout 30m ./load -args \
      -load.phases latency -load.latency-rate "$rate" -load.latency-duration "$dur" -load.report - ) > "$out/herald$i.txt" 2>&1 || fail=1
  hl=$(grep -E '^BenchmarkHerald/latency' "$out/herald$i.txt" || true)
  if [ -z "$hl" ]; then echo "bench-peer: Herald's run failed:"; tail -40 "$out/herald$i.txt"; exit 1; fi
  hp50=$(awk '{for(i=1;i<=NF;i++) if($i=="p50-ms") print $(i-1)}' <<<"$hl"); hp99=$(awk '{for(i=1;i<=NF;i++) if($i=="p99-ms") print $(i-1)}' <<<"$hl")
  lost=$(awk '{for(i=1;i<=NF;i++) if($i=="lost") print $(i-1)}' <<<"$hl")
  awk -v i="$i" -v l1="$l1" -v l2="$l2" -v a="$pp50" -v b="$pp99" -v c="$hp50" -v d="$hp99" -v lost="$lost" \
    'BEGIN{printf "| %d | %s | %.2f / %.2f | %s | %.2f / %.2f | %s | %.1f× | %.1f× |\n", i, l1, a, b, l2, c, d, lost, c/a, d/b}' >> "$out/table"
  grep -E 'alertmanager CPU|posted=' "$out/peer$i.txt" | sed "s/^/pair $i peer: /"
done
echo
echo "Herald (durable ACK -> first email) against Alertmanager v0.34 (POST -> webhook, in memory), $rate alerts/s for $dur each, alternating:"
cat "$out/table"
echo "(full outputs in $out)"
exit $fail
