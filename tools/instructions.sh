#!/usr/bin/env bash
# Instructions per request of sessionbench's handlers, counted by valgrind's
# callgrind: repeatable where timings on a shared machine are not. For each
# server it runs the in-process handler benchmark (BenchmarkHandler: one
# request at a time, on a real database) twice, with LO and HI requests, and
# prints the difference of the two counts over HI-LO: what one request costs
# this process, without the setup both runs share (the database server is
# another process and is not counted).
#
#   tools/instructions.sh [backend [workload [servers]]]
#   tools/instructions.sh postgres counter floor,handmade,sqlsessions   # the defaults
#   LO=500 HI=3500 tools/instructions.sh                                # the defaults too
#
# GOMAXPROCS=1: with more, idle threads spin while the database answers and
# the counts follow the wall clock. asyncpreemptoff: callgrind aborts on the
# runtime's preemption signals. cpu.rdtscp=off: valgrind 3.19 does not know
# the RDTSCP instruction the runtime reads the clock with on AMD CPUs.
set -euo pipefail
backend=${1:-postgres}
workload=${2:-counter}
servers=${3:-floor,handmade,sqlsessions}
lo=${LO:-500}
hi=${HI:-3500}
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed (Debian: apt-get install -y valgrind)" >&2; exit 2; }
[ "$hi" -gt "$lo" ] || { echo "instructions.sh: HI ($hi) must be above LO ($lo)" >&2; exit 2; }
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/sbtest" ./cmd/sessionbench
for s in ${servers//,/ }; do
	for n in "$lo" "$hi"; do
		bench="Handler/$backend/$workload/$s"
		if ! (cd cmd/sessionbench && GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off \
			valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$s.$n" \
			"$tmp/sbtest" -test.run '^$' -test.bench "^Benchmark$bench\$" -test.benchtime "${n}x") >"$tmp/log.$s.$n" 2>&1 ||
			! grep -Eq "^Benchmark$bench(-[0-9]+)?[[:space:]]+$n[[:space:]]" "$tmp/log.$s.$n"; then
			# A database that cannot be reached skips the benchmark:
			# no result, whatever valgrind counted.
			echo "instructions.sh: $bench with $n requests did not run:" >&2
			grep -v '^==' "$tmp/log.$s.$n" | tail -20 >&2
			exit 1
		fi
	done
	a=$(sed -n 's/^summary: //p' "$tmp/cg.$s.$lo")
	b=$(sed -n 's/^summary: //p' "$tmp/cg.$s.$hi")
	echo "$s $(((b - a) / (hi - lo)))"
done
