#!/usr/bin/env bash
# Runs every test of shmslot: the workspace suite (unit, conformance,
# cross-process, crashes and kills, corrupt segments, hostile scribbler,
# permissions, differential, allocation, locators, the transport across
# processes, users and IPC namespaces, flink CLI) under nextest, then the
# loom models of the ring protocol.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== workspace tests (cargo nextest, release profile) =="
cargo nextest run --workspace --release --no-fail-fast --features shmslot/dust-dds

echo "== loom models of the ring protocol (--cfg loom) =="
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 \
    cargo test --release --lib -- loom
