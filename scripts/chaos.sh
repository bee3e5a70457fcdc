#!/usr/bin/env bash
# Chaos at scale: SIGKILLs random publishers, subscribers, the mount daemon
# and the mount's readers and writers, under ack-mode traffic with random
# message sizes, and prints the report: kills, hangs, messages lost or
# corrupted for live subscribers, recovery time p50/p99/max per kind of
# process killed, stale objects after `shmfs clean`. It is TestChaosKill
# in tests/chaos_test.go with a count knob; `go test ./...` (and CI) runs
# it with 50 kills. Needs root and /dev/fuse for the mount's roles.
#
#   scripts/chaos.sh          # 1000 kills, about 10 minutes on 2 cores
#   scripts/chaos.sh 200      # 200 kills
#
# Exit status: that of the test (0: no hang, no loss, no corruption,
# nothing stale).
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-1000}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
SHMFS_CHAOS_KILLS=$kills go test -count=1 -timeout 3h -run '^TestChaosKill$' -v ./tests/ >"$log" 2>&1 || status=$?
# The report lines, without the test log's file:line prefix.
sed -n 's/^ *chaos_test\.go:[0-9]*: //p' "$log" | grep -E '^chaos:' || true
if [ "$status" -ne 0 ]; then
	echo "chaos: FAILED (exit status $status); the test's output:" >&2
	grep -v -E '^\s*chaos_test\.go:[0-9]+: chaos: [0-9]+ kills after' "$log" | tail -n 60 >&2
fi
exit "$status"
