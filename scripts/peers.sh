#!/usr/bin/env bash
# The peer comparison: shmslot next to iceoryx2 0.10, zerodds-flatdata
# 1.0.0-rc.7, Unix domain sockets and a memcpy + flag floor, two processes
# pinned to CPUs 0 and 1, every system interleaved in each repetition.
# Arguments go to `peers run` (e.g. --quick, --json, --reps 5, --sizes 8,1KiB,
# --systems shmslot,zerodds, --runs pair); `--help` lists them.
#
# benches/peers is a workspace of its own (own Cargo.lock, peers pinned
# exactly): the main build and tests never compile the peers.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet --manifest-path benches/peers/Cargo.toml
exec benches/peers/target/release/peers run "$@"
