#!/usr/bin/env bash
# On the device: the quick conformance certificate of cuda with the new cases, a sanitized run of the
# MoE routing kernel, and the MoE routing probe (tiny Qwen3-MoE checkpoints one after another).
#   bash benchmarks/scripts/trust_h200.sh OUT
set -uo pipefail
out=${1:-/tmp/out}
mkdir -p "$out"
TESSERA_HOME=/tmp/home timeout 150 python3 -m tessera conformance run --platform cuda --quick --seed 2026 --out /tmp/quick \
    > /tmp/quick.log 2>&1
echo "quick rc=$?"; grep -E "passed, |^(fail|error|xpass) " /tmp/quick.log | head -30
cp /tmp/quick.log "$out/conformance_quick.log"; cp /tmp/quick/report.json "$out/conformance_quick_report.json"
cp /tmp/quick/report.md "$out/conformance_quick_report.md"
cp /tmp/home/certificates/cuda/*.json "$out/conformance_quick_certificate.json"
timeout 40 python3 -m tessera conformance run --platform cuda --sanitize --ops moe_route \
    --kernels triton_moe_route --dtypes bfloat16 --seed 2026 --out /tmp/sanitized > /tmp/sanitized.log 2>&1
echo "sanitize rc=$?"; grep -E "passed, |^(fail|error) " /tmp/sanitized.log | head -10
cp /tmp/sanitized/report.json "$out/conformance_sanitized_moe_route.json" 2>/dev/null
timeout 110 python3 benchmarks/scripts/moe_routing_probe.py "$out" 2>&1 | grep -vE "Warning|it/s\]|deprecated" | tail -30
