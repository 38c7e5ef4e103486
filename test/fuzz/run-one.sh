#!/usr/bin/env bash
# run-one.sh PKG TARGET FUZZTIME — go test -fuzz for one fuzz target
# (make fuzz runs it for every target).
#
# Go 1.26's fuzz coordinator can fail a run at the end of -fuzztime with a
# bare "context deadline exceeded" when a worker answers its stop late (a
# loaded machine); the race is in the toolchain (fixed in Go 1.27), not in
# the target, and such a run writes no failing input. A run that fails so,
# with no new input under PKG/testdata/fuzz/TARGET, is run once more and
# says so; any other failure, or the same one twice, fails.
set -uo pipefail
pkg=$1 target=$2 fuzztime=$3
go=${GO:-go}
corpus="$pkg/testdata/fuzz/$target"
for attempt in 1 2; do
	before=$(ls "$corpus" 2>/dev/null)
	out=$("$go" test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	[ "$rc" -eq 0 ] && exit 0
	after=$(ls "$corpus" 2>/dev/null)
	if [ "$attempt" -eq 1 ] && [ "$before" = "$after" ] &&
		printf '%s\n' "$out" | grep -qx '[[:space:]]*context deadline exceeded'; then
		echo "== $pkg $target: failed at the end of -fuzztime with no failing input written (the toolchain's fuzz coordinator race); once more"
		continue
	fi
	exit "$rc"
done
