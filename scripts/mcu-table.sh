#!/usr/bin/env bash
# Prints the per-layer Cortex-M4 table of docs/performance.md (markdown) and the RESULT line:
# builds the firmware, runs its self-test in QEMU (`cd firmware && cargo run --release`, which
# counts instructions with -icount shift=0) and turns the per-layer counts it prints into a
# table against CMSIS-NN's figures and the goals of issue 6.
#
#   scripts/mcu-table.sh            # the model the firmware embeds (models/mnist-cnn.tcm)
#   TINYCONV_MODEL=... scripts/mcu-table.sh
#   scripts/mcu-table.sh --speed-plan   # the arena plan for speed instead of the smallest one
#   scripts/mcu-table.sh --mlperf       # the MLPerf Tiny models instead (scripts/mlperf-table.sh)
set -euo pipefail
if [[ "${1:-}" == "--mlperf" ]]; then shift; exec "$(dirname "$0")/mlperf-table.sh" "$@"; fi
cd "$(dirname "$0")/../firmware"
features=()
if [[ "${1:-}" == "--speed-plan" ]]; then features=(--features speed-plan); fi
out=$(cargo run --release "${features[@]}" 2>/dev/null) || {
    echo "the firmware self-test failed:" >&2
    echo "$out" | grep -v '^img ' >&2
    exit 1
}
echo "$out" | awk '
BEGIN {
    # CMSIS-NN v19.1 (gcc -O3, DSP) instructions and the goals, by layer index.
    name[0] = "conv1 3x3, 1→16, same (+pool)";   cmsis[0] = 1188040; goal[0] = 300000
    name[1] = "conv2 3x3, 16→128 (+pool)";       cmsis[1] = 5287600; goal[1] = 2650000
    name[2] = "conv3 3x3, 128→256 (+pool)";      cmsis[2] = 7915160; goal[2] = 4700000
    name[4] = "fc1 1024→500 (+ReLU)";            cmsis[4] = 984760;  goal[4] = 520000
    name[5] = "fc2 500→10";                      cmsis[5] = 10040;   goal[5] = 10000
    cmsis_total = 15719680; goal_total = 8000000
}
/^  layer [0-9]+: / {
    i = $2 + 0; instr[i] = $4; macs[i] = $6
}
/^  other/ { other = $3 }
/^  total/ { total = $3; total_macs = $5 }
/^RESULT / { result = $0 }
function row(label, n, m, c, g) {
    printf "| %s | %s | %s | %s | %s | %s | %s |\n", label, m, n,
        (m > 0 ? sprintf("%.2f", n / m) : "–"),
        (c > 0 ? sprintf("%s (%.2fx)", c, c / n) : "–"),
        (g > 0 ? g : "–"),
        (g > 0 ? (n <= g ? "met" : "missed") : "")
}
END {
    print "| layer | MACs | instructions | instructions/MAC | CMSIS-NN (speed-up) | goal | |"
    print "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
    for (i = 0; i <= 5; i++) if (i in name) row(name[i], instr[i], macs[i], cmsis[i], goal[i])
    printf "| flatten, other (pixel quantization, argmax, hooks) | | %d | | | | |\n", instr[3] + other
    row("**total**", total, total_macs, cmsis_total, goal_total)
    print ""
    print result
}'
