#!/usr/bin/env bash
# On the device: the quick conformance certificate of cuda (op, layer with graphs on and off, model
# levels).
#   bash benchmarks/scripts/trust_h200.sh OUT [LIMIT_S]
set -uo pipefail
out=${1:-/tmp/out}
quick_limit=${2:-470}
mkdir -p "$out"
TESSERA_HOME=/tmp/home timeout "$quick_limit" python3 -m tessera conformance run --platform cuda --quick --seed 2026 \
    --out /tmp/quick > /tmp/quick.log 2>&1
echo "quick rc=$?"; grep -E "passed, |^(fail|error|xpass) " /tmp/quick.log | head -30
cp /tmp/quick.log "$out/conformance_quick.log"
cp /tmp/quick/report.json /tmp/quick/report.md "$out/" 2>/dev/null
cp /tmp/home/certificates/cuda/*.json "$out/certificate.json" 2>/dev/null
