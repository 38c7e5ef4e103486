#!/usr/bin/env bash
# make demo-loopback: three real `ars agent` processes on loopback (127.0.0.1-3) from
# the deploy/ example configs, with TLS and tokens. Applies the sample DNS
# service, shows the cluster, kills the leader with SIGKILL and measures how
# long a survivor takes to report a new leader. Everything runs in a temp
# directory and is torn down at the end (--keep leaves the nodes running).
set -euo pipefail

ARS=${ARS:-$(pwd)/bin/ars}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEEP=0
for a in "$@"; do
  case "$a" in
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
  esac
done

WORK=$(mktemp -d /tmp/ars-demo.XXXXXX)
declare -A PID
NODES=(n1 n2 n3)
declare -A API=([n1]=https://127.0.0.1:7500 [n2]=https://127.0.0.2:7500 [n3]=https://127.0.0.3:7500)

cleanup() {
  if [ "$KEEP" = 1 ]; then
    echo
    echo "Nodes left running (--keep). To use the CLI:"
    echo "  export ARS_HTTP_ADDR=127.0.0.1:7500 ARS_CACERT=$WORK/certs/ca.pem ARS_HTTP_TOKEN_FILE=$WORK/certs/operator.token"
    echo "Stop them with: kill ${PID[*]}; rm -rf $WORK"
    return
  fi
  for n in "${!PID[@]}"; do kill "${PID[$n]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cli() { ARS_CACERT="$WORK/certs/ca.pem" ARS_HTTP_TOKEN_FILE="$WORK/certs/operator.token" "$ARS" "$@"; }
json_field() { sed -n "s/^  \"$1\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p"; }
now_ms() { date +%s%3N; }

for n in "${NODES[@]}"; do
  host=${API[$n]#https://}; host=${host%:*}
  for port in 7500 7501 7502; do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
      echo "demo: $host:$port is in use (another ars running?); stop it first" >&2
      exit 1
    fi
  done
done

say "Creating the CA, node certificates, gossip key and tokens (ars keygen)"
cp "$ROOT"/deploy/examples/three-node/n{1,2,3}.yaml "$WORK/"
cli keygen -dir "$WORK/certs" -nodes n1=127.0.0.1,n2=127.0.0.2,n3=127.0.0.3

start() {
  "$ARS" agent -config "$WORK/$1.yaml" >>"$WORK/$1.log" 2>&1 &
  PID[$1]=$!
}
say "Starting three agents: ars agent -config deploy/examples/three-node/n{1,2,3}.yaml"
for n in "${NODES[@]}"; do start "$n"; echo "  $n pid ${PID[$n]}, API ${API[$n]}, log $WORK/$n.log"; done

leader_of() { cli -addr "${API[$1]}" status -o json 2>/dev/null | json_field leader; }
wait_leader() { # wait_leader NODE [NOT] -> prints the leader NODE reports, other than NOT
  local deadline=$(( $(now_ms) + 20000 )) l
  while [ "$(now_ms)" -lt "$deadline" ]; do
    l=$(leader_of "$1" || true)
    if [ -n "$l" ] && [ "$l" != "${2:-}" ]; then echo "$l"; return 0; fi
    sleep 0.05
  done
  echo "demo: no leader reported by $1 within 20s; logs in $WORK" >&2
  return 1
}
LEADER=$(wait_leader n1)
FOLLOWER=n1; [ "$LEADER" = n1 ] && FOLLOWER=n2

say "ars status (asked of $FOLLOWER)"
cli -addr "${API[$FOLLOWER]}" status
say "ars members"
cli -addr "${API[$FOLLOWER]}" members
say "ars raft peers"
cli -addr "${API[$FOLLOWER]}" raft peers

say "ars service apply deploy/examples/service-dns.yaml (through follower $FOLLOWER, forwarded to $LEADER)"
cli -addr "${API[$FOLLOWER]}" service apply "$ROOT/deploy/examples/service-dns.yaml"
say "ars service show dns (read on $FOLLOWER)"
sleep 0.2
cli -addr "${API[$FOLLOWER]}" service show dns

say "kill -9 of the leader $LEADER (pid ${PID[$LEADER]})"
T0=$(now_ms)
kill -9 "${PID[$LEADER]}"
wait "${PID[$LEADER]}" 2>/dev/null || true
NEW=$(wait_leader "$FOLLOWER" "$LEADER")
T1=$(now_ms)
echo "  $FOLLOWER reports new leader $NEW $((T1 - T0)) ms after the kill (polling ars status every 50 ms)"
until cli -addr "${API[$FOLLOWER]}" members -o json | tr -d ' \n' | grep -q "\"name\":\"$LEADER\"[^}]*\"status\":\"dead\""; do
  [ $(( $(now_ms) - T0 )) -lt 20000 ] || { echo "demo: gossip never marked $LEADER dead" >&2; exit 1; }
  sleep 0.05
done
T2=$(now_ms)
echo "  $FOLLOWER's gossip marks $LEADER dead $((T2 - T0)) ms after the kill"
cli -addr "${API[$FOLLOWER]}" status
say "The state survived: ars service list on $NEW"
cli -addr "${API[$NEW]}" service list

say "Restarting $LEADER from its data dir; it rejoins as a follower"
start "$LEADER"
deadline=$(( $(now_ms) + 20000 ))
until cli -addr "${API[$LEADER]}" service show dns >/dev/null 2>&1; do
  [ "$(now_ms)" -lt "$deadline" ] || { echo "demo: $LEADER did not catch up" >&2; exit 1; }
  sleep 0.1
done
cli -addr "${API[$NEW]}" members
say "Done: new leader after $((T1 - T0)) ms, failed node detected by gossip after $((T2 - T0)) ms (default timings)."
