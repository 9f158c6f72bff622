#!/usr/bin/env bash
# DNS: queries per second and latency for local names, warren's embedded
# server against aardvark-dns (podman's), side by side in one run.
#
#   benches/dns.sh            # needs: dnsperf, aardvark-dns (Debian packages)
#
# Both servers hold the same names: two sandboxes `es-1` and `es-2` sharing
# the alias `es`. dnsperf asks `es-1 A`, `es-2 A`, `es A` in a loop, from
# inside a network namespace:
#
# - warren: a release build of the daemon (isolated state and runtime
#   dirs under a temp dir), a network `bench`, dnsperf run with
#   `warren exec` in a sandbox on it, asking the gateway: the full path, TAP
#   → switch thread → smoltcp → DNS server and back.
# - aardvark-dns: `unshare -rn` (a user and network namespace of our own),
#   aardvark-dns listening on 10.99.0.1 on that namespace's loopback,
#   dnsperf in the same namespace. This is kinder to aardvark than podman's
#   own setup (veth + kernel bridge): the kernel's loopback is its path.
#
# Two measurements per server:
# 1. throughput: no rate limit, 4 clients, 100 queries outstanding, for
#    DURATION seconds (default 10): queries/s;
# 2. latency: a steady RATE queries/s (default 5000) for DURATION seconds,
#    every answer's latency (dnsperf -v): p50, p99, max.
#
# Every address is inside namespaces this script makes; nothing leaves the
# machine (warren's upstream is 127.0.0.1:9, which refuses, and only local
# names are asked). When run as root, warren runs as uid 65534 (rootless,
# as in the tests). Prints one table and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
RATE=${RATE:-5000}
CLIENTS=${CLIENTS:-4}
AARDVARK=${AARDVARK:-/usr/lib/podman/aardvark-dns}
BIN=${WARREN_BIN:-target/release/warren}

for tool in dnsperf unshare ip; do
  command -v "$tool" >/dev/null || { echo "dns.sh: $tool is missing (apt-get install dnsperf)" >&2; exit 1; }
done
[ -x "$AARDVARK" ] || { echo "dns.sh: $AARDVARK is missing (apt-get install aardvark-dns)" >&2; exit 1; }
if [ -z "${WARREN_BIN:-}" ]; then
  cargo build --release --quiet
fi

WORK=$(mktemp -d /tmp/warren-dnsbench.XXXXXX)
chmod 755 "$WORK"
DAEMON_PID=""
cleanup() {
  if [ -n "$DAEMON_PID" ]; then
    w rm -f es-1 es-2 client >/dev/null 2>&1 || true
    kill "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

printf 'es-1 A\nes-2 A\nes A\n' > "$WORK/queries"
chmod 644 "$WORK/queries"

# p50 p99 max (ms) of dnsperf -v lines "> NOERROR name type SECONDS".
percentiles() {
  awk '/^> /{print $NF}' | sort -g | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print "- - -"; exit }
      p50 = v[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]
      p99 = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]
      printf "%.3f %.3f %.3f\n", p50 * 1000, p99 * 1000, v[NR] * 1000
    }'
}

qps() { awk '/Queries per second/{printf "%d\n", $4}'; }
lost() { awk '/Queries lost/{print $3}'; }

# ---- aardvark-dns -----------------------------------------------------------
mkdir -p "$WORK/aardvark"
{
  echo 10.99.0.1
  echo "$(printf 'a%.0s' $(seq 64)) 10.99.0.2  es-1,es"
  echo "$(printf 'b%.0s' $(seq 64)) 10.99.0.3  es-2,es"
} > "$WORK/aardvark/bench"
cat > "$WORK/aardvark.sh" <<EOF
set -e
ip link set lo up
ip addr add 10.99.0.1/32 dev lo
# aardvark-dns daemonizes itself and writes its pid to the config dir.
"$AARDVARK" --config "$WORK/aardvark" -p 53 run >"$WORK/aardvark.log" 2>&1
for i in \$(seq 50); do dnsperf -s 10.99.0.1 -d "$WORK/queries" -n 1 >/dev/null 2>&1 && break; sleep 0.1; done
dnsperf -s 10.99.0.1 -d "$WORK/queries" -l $DURATION -c $CLIENTS > "$WORK/aardvark.tput" 2>&1
dnsperf -s 10.99.0.1 -d "$WORK/queries" -l $DURATION -Q $RATE -v > "$WORK/aardvark.lat" 2>&1
kill \$(cat "$WORK/aardvark/aardvark.pid")
EOF
unshare -rn sh "$WORK/aardvark.sh"

# ---- warren -----------------------------------------------------------------
cp "$BIN" "$WORK/warren"
chmod 755 "$WORK/warren"
AS=()
if [ "$(id -u)" = 0 ]; then
  AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  chown 65534:65534 "$WORK"
fi
export WARREN_STATE_DIR="$WORK/state" WARREN_RUNTIME_DIR="$WORK/run" HOME="$WORK"
w() { "${AS[@]}" "$WORK/warren" "$@"; }
"${AS[@]}" "$WORK/warren" daemon --dns-upstream 127.0.0.1:9 >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for i in $(seq 100); do [ -S "$WORK/run/warren.sock" ] && break; sleep 0.1; done
w network create bench >/dev/null
w run -d --name es-1 --network bench --network-alias es -- sleep 3600 >/dev/null
w run -d --name es-2 --network bench --network-alias es -- sleep 3600 >/dev/null
w run -d --name client --network bench -- sleep 3600 >/dev/null
GW=$(w network inspect bench | awk -F'"' '/"Gateway"/{print $4; exit}')
for i in $(seq 50); do w exec client -- dnsperf -s "$GW" -d "$WORK/queries" -n 1 >/dev/null 2>&1 && break; sleep 0.1; done
w exec client -- dnsperf -s "$GW" -d "$WORK/queries" -l "$DURATION" -c "$CLIENTS" > "$WORK/warren.tput" 2>&1
w exec client -- dnsperf -s "$GW" -d "$WORK/queries" -l "$DURATION" -Q "$RATE" -v > "$WORK/warren.lat" 2>&1

# ---- report -----------------------------------------------------------------
A_QPS=$(qps < "$WORK/aardvark.tput"); W_QPS=$(qps < "$WORK/warren.tput")
read -r A50 A99 AMAX < <(percentiles < "$WORK/aardvark.lat")
read -r W50 W99 WMAX < <(percentiles < "$WORK/warren.lat")
echo "DNS, local names, $DURATION s per run, $(nproc) cores ($(date -u +%F))"
printf '%-14s %12s %8s %10s %10s %10s\n' server "queries/s" lost "p50 ms" "p99 ms" "max ms"
printf '%-14s %12s %8s %10s %10s %10s\n' warren "$W_QPS" "$(lost < "$WORK/warren.tput")" "$W50" "$W99" "$WMAX"
printf '%-14s %12s %8s %10s %10s %10s\n' aardvark-dns "$A_QPS" "$(lost < "$WORK/aardvark.tput")" "$A50" "$A99" "$AMAX"
echo "(latency at a steady $RATE queries/s; throughput with $CLIENTS clients, 100 outstanding)"
awk -v w="$W_QPS" -v a="$A_QPS" 'BEGIN { if (a > 0) printf "throughput warren/aardvark-dns: %.2fx\n", w / a }'
