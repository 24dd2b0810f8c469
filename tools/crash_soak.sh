#!/bin/sh
# tests/crash_test.sh with more kills (default 500): SIGKILL at random
# moments, resume from last.safetensors, no partial file under a final name.
# Usage: tools/crash_soak.sh [KILLS]; run from the repository root.
set -eu
KILLS=${1:-500} exec sh "$(dirname "$0")/../tests/crash_test.sh"
