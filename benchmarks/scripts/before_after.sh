#!/usr/bin/env bash
# Before/after on the device: the landed tree (in .before/, from `git archive`) and this tree, each
# installed (not editable) into its own target folder, run the same command in the same call.
#   bash benchmarks/scripts/before_after.sh install
#   bash benchmarks/scripts/before_after.sh bench  OUT     # bench throughput llama3-8b 64 x 256 -> 256
#   bash benchmarks/scripts/before_after.sh conformance OUT  # quick conformance on cuda
set -euo pipefail
stage=$1
out=${2:-/tmp/out}
mkdir -p "$out"
run() {  # run TREE ARGS...: the tessera CLI of one tree
    local tree=$1
    shift
    PYTHONPATH=/tmp/site:/tmp/$tree-site python3 -m tessera.cli "$@"
}
case "$stage" in
install)
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
    for pair in after:. before:.before; do
        tree=${pair%%:*}
        (cd "${pair#*:}" && python3 -m pip install -q --no-index --no-deps --no-build-isolation \
            --target "/tmp/$tree-site" . plugins/cpu plugins/triton plugins/cuda)
    done
    ;;
bench)
    for tree in before after before after; do
        run $tree bench throughput --preset llama3-8b --num-prompts 64 --input-len 256 --output-len 256 \
            --out "$out/throughput_llama3-8b_$tree.json" 2>&1 | grep -iE "tok/s|output|error" | head -5
    done
    ;;
conformance)
    for tree in before after; do
        TESSERA_HOME=/tmp/home-$tree run $tree conformance run --platform cuda --quick --seed 1234 \
            --out "/tmp/conf-$tree" > "/tmp/conf-$tree.log" 2>&1 || true
        tail -3 "/tmp/conf-$tree.log"
        cp "/tmp/conf-$tree/report.json" "$out/conformance_quick_$tree.json"
    done
    ;;
esac
