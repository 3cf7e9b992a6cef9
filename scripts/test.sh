#!/usr/bin/env bash
# Runs every test of shmslot: the workspace suite (unit, conformance,
# cross-process, crashes and kills, corrupt segments, hostile scribbler,
# permissions, differential, allocation, locators, the transport across
# processes, users and IPC namespaces, flink CLI, Cyclone DDS 11 over the
# PSMX plugin) under nextest, then the loom models of the ring protocol.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Cyclone DDS tests of the PSMX plugin build Cyclone 11.0.1 from source
# (cmake) and cyclors' bindings of it (bindgen, which needs libclang), and
# run Cyclone's Python binding from a venv.
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || missing+=(libclang-dev)
# The mixed-deployment test's venv (Debian splits venv/ensurepip off python3).
python3 -c "import ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing ${missing[*]} (apt-get) =="
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "missing: ${missing[*]}. Install them first:" >&2
        echo "  sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

# The mixed-deployment test runs Cyclone's own Python binding from PyPI.
if ! target/cyclone-py/bin/python -c "import cyclonedds" >/dev/null 2>&1; then
    echo "== venv target/cyclone-py with cyclonedds==11.0.1 (pip) =="
    python3 -m venv target/cyclone-py
    target/cyclone-py/bin/pip install -q cyclonedds==11.0.1
fi

echo "== the PSMX plugin library (its Cyclone tests load it) =="
cargo build --release -p psmx_shmslot

echo "== workspace tests (cargo nextest, release profile) =="
cargo nextest run --workspace --release --no-fail-fast --features shmslot/dust-dds

echo "== loom models of the ring protocol (--cfg loom) =="
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 \
    cargo test --release --lib -- loom
