#!/usr/bin/env bash
# warren against its peers, side by side in one run (issue 7).
#
#   benches/compare.sh            # ROUNDS=3 SECS=5 by default
#
# Measures, alternating the systems within each round and reporting the
# median of ROUNDS:
#   1. sandbox to sandbox, one network: iperf3 TCP, 1 and 4 streams;
#      warren vs two network namespaces on a kernel bridge with veths at the
#      same MTU (65520; needs root, skipped with a note otherwise);
#   2. run to ready: `warren run --network N -- true`, 50 runs, p50 and p99
#      (the whole command: namespaces, attach, exec and exit);
#   3. daemon memory: idle, with 100 idle sandboxes, per sandbox.
# Egress against pasta and slirp4netns is `cargo bench --bench nat`; ingress
# through published ports comes with them (issue 5).
#
# Installs its peers from Debian packages when run as root and they are
# missing (scripts/install-deps --bench). Everything runs in namespaces it
# makes and on loopback; it cleans up after itself and is bounded in time
# (about 3 minutes with the defaults). As root, warren runs as uid 65534,
# as in the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
MTU=65520

if [ "$(id -u)" = 0 ]; then scripts/install-deps --bench; fi
command -v iperf3 >/dev/null || { echo "compare.sh: iperf3 is missing" >&2; exit 1; }
cargo build --release -q

work=$(mktemp -d /tmp/warren-compare.XXXXXX)
chmod 0755 "$work"
cp target/release/warren "$work/warren"
as_user() {
  if [ "$(id -u)" = 0 ]; then
    chown -R 65534:65534 "$work"
    setpriv --reuid 65534 --regid 65534 --clear-groups "$@"
  else
    "$@"
  fi
}
W() {
  as_user env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$work" \
    WARREN_STATE_DIR="$work/state" WARREN_RUNTIME_DIR="$work/run" \
    WARREN_DNS_UPSTREAM=127.0.0.1:9 "$work/warren" "$@"
}
bridge=0
cleanup() {
  for id in $(W ps -q 2>/dev/null); do W rm -f "$id" >/dev/null 2>&1 || true; done
  [ -f "$work/run/warren.pid" ] && kill "$(cat "$work/run/warren.pid")" 2>/dev/null || true
  if [ "$bridge" = 1 ]; then
    ip netns del wcmp1 2>/dev/null || true
    ip netns del wcmp2 2>/dev/null || true
    ip link del wcmpbr 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.2f}")' "$@"; }
gbits() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["end"]["sum_received"]["bits_per_second"]/1e9)'; }

# --- set-up ------------------------------------------------------------
W network create --subnet 10.201.0.0/24 bench >/dev/null
W run -d --name srv --network bench -- iperf3 -s >/dev/null
W run -d --name cli --network bench -- sleep 3600 >/dev/null
srv_ip=$(W inspect srv | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["NetworkSettings"]["Networks"]["bench"]["IPAddress"])')
sleep 0.5
if [ "$(id -u)" = 0 ]; then
  bridge=1
  ip netns add wcmp1; ip netns add wcmp2
  ip link add wcmpbr type bridge; ip link set wcmpbr mtu $MTU up
  for n in 1 2; do
    ip link add wcmpv$n type veth peer name eth0 netns wcmp$n
    ip link set wcmpv$n master wcmpbr mtu $MTU up
    ip -n wcmp$n link set lo up
    ip -n wcmp$n link set eth0 mtu $MTU up
    ip -n wcmp$n addr add 10.202.0.$n/24 dev eth0
  done
  ip netns exec wcmp1 iperf3 -s -D
  sleep 0.5
fi

# --- 1. sandbox to sandbox -------------------------------------------------
declare -A res
for r in $(seq "$ROUNDS"); do
  for p in 1 4; do
    res[warren_$p]+=" $(W exec cli -- iperf3 -c "$srv_ip" -t "$SECS" -P $p -J | gbits)"
    if [ "$bridge" = 1 ]; then
      res[bridge_$p]+=" $(ip netns exec wcmp2 iperf3 -c 10.202.0.1 -t "$SECS" -P $p -J | gbits)"
    fi
  done
done

# --- 2. run to ready ---------------------------------------------------
startup=$(python3 - "$work" <<'PY'
import os, subprocess, sys, time
work = sys.argv[1]
env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": work, "WARREN_STATE_DIR": work + "/state",
       "WARREN_RUNTIME_DIR": work + "/run", "WARREN_DNS_UPSTREAM": "127.0.0.1:9"}
cmd = [work + "/warren", "run", "--network", "bench", "--", "true"]
if os.getuid() == 0:
    cmd = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"] + cmd
ts = []
for _ in range(50):
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    ts.append((time.perf_counter() - t) * 1000)
ts.sort()
print(f"{ts[len(ts)//2]:.1f} {ts[int(len(ts)*0.99)-1]:.1f}")
PY
)

# --- 3. memory ---------------------------------------------------------
rss() { awk '/VmRSS/ {print $2}' "/proc/$(cat "$work/run/warren.pid")/status"; }
for id in $(W ps -q); do W rm -f "$id" >/dev/null; done
sleep 0.5
idle=$(rss)
for i in $(seq 100); do W run -d --network bench -- sleep 3600 >/dev/null; done
sleep 0.5
loaded=$(rss)

# --- table -------------------------------------------------------------
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}x')" "$1" "$2"; }
echo
echo "warren vs peers, $(nproc) cores, $(date -u +%Y-%m-%d), median of $ROUNDS x ${SECS}s"
echo
echo "| measurement | warren | peer | ratio | goal |"
echo "|---|---|---|---|---|"
for p in 1 4; do
  w=$(median ${res[warren_$p]})
  if [ "$bridge" = 1 ]; then
    b=$(median ${res[bridge_$p]})
    echo "| sandbox to sandbox, $p stream(s), Gbit/s | $w | kernel bridge $b | $(ratio "$w" "$b") | >= 0.8x |"
  else
    echo "| sandbox to sandbox, $p stream(s), Gbit/s | $w | kernel bridge: skipped (needs root) | | >= 0.8x |"
  fi
done
read -r p50 p99 <<<"$startup"
echo "| run to ready (whole run -- true), ms | p50 $p50, p99 $p99 | | | p50 < 30 |"
echo "| daemon RSS idle, MB | $(python3 -c "print(f'{$idle/1024:.1f}')") | | | < 30 |"
echo "| daemon RSS per idle sandbox, KB | $(( (loaded - idle) / 100 )) | | | < 100 |"
echo
echo "Egress against pasta and slirp4netns: cargo bench --bench nat"
