#!/usr/bin/env bash
# On the device: `tessera conformance run --platform cuda --full --sanitize`, one op at a time, each
# within its own time limit (a device call is too short for all ops at once).
#   bash benchmarks/scripts/sanitize_h200.sh OUT LIMIT_S OP [OP ...]
set -uo pipefail
out=$1; limit=$2; shift 2
mkdir -p "$out"
for op in "$@"; do
    t0=$(date +%s)
    timeout "$limit" python3 -m tessera conformance run --platform cuda --full --sanitize --ops "$op" \
        --seed 2026 --out "/tmp/sanitized_$op" > "/tmp/sanitized_$op.log" 2>&1
    echo "sanitize --full $op rc=$? in $(( $(date +%s) - t0 )) s"
    grep -E "passed, |^(fail|error) " "/tmp/sanitized_$op.log" | head -8
    cp "/tmp/sanitized_$op/report.json" "$out/sanitized_full_$op.json" 2>/dev/null
    cp "/tmp/sanitized_$op.log" "$out/sanitized_full_$op.log"
done
