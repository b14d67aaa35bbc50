#!/usr/bin/env bash
# Install what is needed, build touchpulse and run its demo (no broker needed).
# Extra arguments go to touchpulse, e.g. scripts/demo.sh --demo-speed 240
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release
exec build/release/touchpulse --demo "$@"
