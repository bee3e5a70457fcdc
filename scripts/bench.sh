#!/usr/bin/env bash
# Runs every benchmark of shmfs and prints the results (benchstat-friendly),
# then shmfs bench (the comparison with the alternatives, docs/benchmarks.md).
# The machines are small and shared: each package's benchmarks run with the
# reference measurements (memmove, raw futex ping-pong, no-op FUSE read) of
# the same run, so compare ratios, not absolute numbers across runs.
#
#   scripts/bench.sh            # everything, ~5 minutes
#   QUICK=1 scripts/bench.sh    # fewer iterations, idle agent 5 s
set -euo pipefail
cd "$(dirname "$0")/.."
n=${COUNT:-1}
if [ -n "${QUICK:-}" ]; then
	lat=1000x; export SHMFS_IDLE_DURATION=5s
else
	lat=5000x
fi
run() { echo "### $*"; go test -run '^$' -count "$n" "$@"; }
run -bench . -benchtime 200ms ./internal/shm/ ./core/memfile/
run -bench . ./core/mutex/
run -bench . -benchtime 3000x ./core/event/
run -bench 'Encode|Decode' ./core/registration/
run -bench IdleAgent100 -benchtime 1x ./core/registration/
run -bench . -benchtime "$lat" ./core/
run -bench . -benchtime 2000x ./fs/
# shmfs beside the alternatives (Unix socket, pipe, TCP, NATS) and the floors:
echo "### shmfs bench"
go run ./cmd/shmfs bench ${QUICK:+--quick}
