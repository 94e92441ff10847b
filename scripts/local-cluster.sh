#!/usr/bin/env bash
# Starts a multi-node goray cluster on this machine: a head and N worker
# nodes, each a daemon with its own session directory, ports and object
# store, as separate machines would run them. Stop it with `goray stop`.
#
#   scripts/local-cluster.sh            # head + 2 nodes of 2 CPUs
#   NODES=3 CPUS=4 scripts/local-cluster.sh
#   GORAY_ADDRESS=$(cat "${TMPDIR:-/tmp}/goray/current_cluster") go run ./examples/quickstart
set -euo pipefail

NODES="${NODES:-2}"
CPUS="${CPUS:-2}"
STORE="${STORE:-512MiB}"
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/goray ./cmd/goray

out="$(bin/goray start --head --port 0 --num-cpus 0 --object-store-memory "$STORE" --node-timeout 5s)"
echo "$out"
addr="$(sed -n 's/^ *Address: *//p' <<<"$out")"
for i in $(seq 1 "$NODES"); do
	bin/goray start --address "$addr" --num-cpus "$CPUS" --object-store-memory "$STORE" --labels "node=$i"
done
bin/goray status --address "$addr"
echo "Run a driver with GORAY_ADDRESS=$addr; stop everything with bin/goray stop."
