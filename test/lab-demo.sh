#!/usr/bin/env bash
# make demo: the lab end to end on one machine (root, Linux). Brings the lab
# up (vCenter simulator, BIND 9 / Unbound / Knot Resolver / PowerDNS
# Recursor in network namespaces, three ars agents with TLS and tokens),
# then narrates: status; a DoS on the active BIND replica -> switch to
# another implementation; an exploit alert on the new active ->
# make-before-break switch; kill -9 of the leader node -> new leader;
# another DoS -> switch; the history table. Each attack prints the switch
# and what the lab's client (a query every 5 ms) lost. Tears the lab down
# at the end unless --keep. It drives the lab with ars-lab (ARS_LAB), which
# runs the ars next to it (bin/ars; -ars or ARS_BIN name another).
set -euo pipefail

ARS_LAB=${ARS_LAB:-$(pwd)/bin/ars-lab}
KEEP=0
for a in "$@"; do
  case "$a" in
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "demo: the lab needs root (network namespaces); run: sudo make demo" >&2
  exit 2
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
cleanup() {
  if [ "$KEEP" = 1 ]; then
    echo
    echo "The lab stays up (--keep). Try:"
    echo "  $ARS_LAB status"
    echo "  $ARS_LAB exec -- ars service show dns"
    echo "  $ARS_LAB attack dos -active -wait"
    echo "  $ARS_LAB down"
    return
  fi
  say "Tearing the lab down"
  "$ARS_LAB" down || true
}

start=$(date +%s)
say "Bringing the lab up (ars-lab up)"
"$ARS_LAB" down >/dev/null 2>&1 || true
run "$ARS_LAB" up
trap cleanup EXIT

# The service settles: the active answers and the standby is warm.
for _ in $(seq 1 100); do
  if "$ARS_LAB" status -o json | grep -q '"role": "standby"'; then break; fi
  sleep 0.1
done
sleep 1
run "$ARS_LAB" status

say "DoS on the active BIND 9 replica: it stops answering (wedged); the probes find it"
run "$ARS_LAB" attack dos bind9-win -wait

sleep 2.5 # min_dwell of the sample policy: the next switch is not damped
say "Exploit on the new active: an AppArmor denial in its audit log; ars watch apparmor posts the alert"
run "$ARS_LAB" attack exploit -active -wait

say "kill -9 of the leader node"
run "$ARS_LAB" node kill -leader -wait

sleep 2.5
say "Another DoS, on whichever replica serves now: the new leader switches"
run "$ARS_LAB" attack dos -active -wait

say "History (ars history, through a surviving node)"
run "$ARS_LAB" exec -- ars history

say "Demo done in $(( $(date +%s) - start )) s"
