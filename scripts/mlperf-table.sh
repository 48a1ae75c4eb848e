#!/usr/bin/env bash
# The per-layer Cortex-M4 tables of the MLPerf Tiny models (markdown, for docs/performance.md):
# for each model, imports it (tflite/examples/mlperf_dir.rs), runs the firmware's graph runner
# in QEMU on the 16 golden inputs (`cargo run --release --bin graph` in firmware/, which counts
# instructions with -icount shift=0 and checks every output against CMSIS-NN's), and sets each
# op's instructions beside CMSIS-NN's figure for the same layer
# (../shared/models/mlperf-tiny/cmsis-nn-anchor.md). Called by `scripts/mcu-table.sh --mlperf`.
#
#   scripts/mlperf-table.sh [ic kws ad vww]
set -euo pipefail
cd "$(dirname "$0")/.."
anchor=../shared/models/mlperf-tiny/cmsis-nn-anchor.md
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(ic kws ad vww)
declare -A goal=([ic]=14900000 [kws]=3900000 [ad]=350000 [vww]=12400000)
declare -A goal_arena=([ic]=32768 [kws]=10957 [ad]=1024 [vww]=79872)
summary_file=$(mktemp)
trap 'rm -f "$summary_file"' EXIT
for m in "${models[@]}"; do
    dir=target/graph-qemu/$m
    cargo run -q --release -p tinyconv-tflite --example mlperf_dir -- "$m" "$dir" >/dev/null
    out=$(cd firmware && TINYCONV_GRAPH_DIR="../$dir" cargo run -q --release --bin graph 2>/dev/null) || {
        echo "the graph runner failed on $m:" >&2
        echo "$out" >&2
        exit 1
    }
    echo "### $m"
    echo
    # The anchor's rows of this model: | # | op | kernel | MACs | instructions | ...
    cmsis=$(awk -F'|' -v m="$m" '
        /^## / { split($0, h, " "); on = (h[2] == m) }
        on && /^\| [0-9]+ \|/ { gsub(/[, ]/, "", $2); gsub(/[, ]/, "", $6); print $2, $6 }' "$anchor")
    echo "$out" | awk -v cmsis="$cmsis" -v goal="${goal[$m]}" -v goal_arena="${goal_arena[$m]}" -v model="$m" '
    BEGIN {
        n = split(cmsis, rows, "\n")
        for (i = 1; i <= n; i++) { split(rows[i], f, " "); anchor[f[1]] = f[2] }
        print "| # | op | output | MACs | instructions | per MAC | CMSIS-NN | per MAC | speed-up |"
        print "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    }
    /^  op +[0-9]+:/ {
        sub(/^  op +/, ""); i = $1 + 0; op = $2; shape = $5; instr = $6; macs = $8
        c = (i in anchor) ? anchor[i] : 0; ctotal += c
        printf "| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", i, op, shape, macs, instr,
            (macs > 0 ? sprintf("%.2f", instr / macs) : "–"), c,
            (macs > 0 && c > 0 ? sprintf("%.2f", c / macs) : "–"),
            (c > 0 && instr > 0 ? sprintf("%.2fx", c / instr) : "–")
    }
    /^  total :/ { total = $3; tmacs = $5 }
    /^RESULT / { result = $0; for (k = 2; k <= NF; k++) { split($k, kv, "="); r[kv[1]] = kv[2] } }
    END {
        printf "| | **total** | | %s | %s | %.2f | %s | %.2f | %.2fx |\n\n", tmacs, total, total / tmacs, ctotal, ctotal / tmacs, ctotal / total
        print "```"; print result; print "```"; print ""
        printf "| %s | %s | %s | %s | %.2f | %.2fx | %s | %s | %s | %s |\n", model, r["correct"] "/" r["images"], tmacs, total, total / tmacs, ctotal / total, ctotal, goal, r["arena"], goal_arena >> summary
    }' summary="$summary_file"
done
echo "### Totals"
echo
echo "| model | outputs identical to CMSIS-NN | MACs | instructions | per MAC | vs CMSIS-NN | CMSIS-NN | goal | arena B | goal B |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
cat "$summary_file"
