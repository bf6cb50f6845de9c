#!/usr/bin/env bash
# Peak memory of a batch job against the size of its input: runs `augur embed` (or `augur extract`)
# on CSV tables of increasing row counts built from the annotated notes, and prints wall time,
# peak RSS (as /usr/bin/time reports it: it includes file pages mapped by the process, such as the
# memory-mapped input), peak anonymous memory (heap: sampled from /proc every 0.2 s) and their
# ratios to the smallest table. A streaming job keeps the ratios near 1.
#
#   benches/memory_bench.sh                          # embed, 10000 and 200000 rows, all-MiniLM-L6-v2
#   COMMAND=extract ROWS="2000 20000" benches/memory_bench.sh
#   MODEL=multilingual-e5-small ROWS="10000 200000" benches/memory_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

COMMAND="${COMMAND:-embed}"
ROWS="${ROWS:-10000 200000}"
MODEL="${MODEL:-all-MiniLM-L6-v2}"
WORK="${TMPDIR:-/tmp}/augur-memory-bench"
mkdir -p "$WORK"

cargo build -q --bin augur
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
AUGUR="$TARGET_DIR/debug/augur"

# Rows are the clauses of the annotated notes (short CRM lines), cycled, with unique ids.
make_table() {
  python3 - "$1" "$2" <<'PY'
import csv, json, re, sys
rows, path = int(sys.argv[1]), sys.argv[2]
clauses = []
for name in ("fixtures/signals/gold_zh.jsonl", "fixtures/signals/gold_en.jsonl"):
    for line in open(name, encoding="utf-8"):
        note = json.loads(line)
        for part in re.split(r"[。！？；\n]|(?<=[.!?;])\s+", note["text"]):
            if len(part.strip()) >= 6:
                clauses.append((note["account_id"], note["timestamp"], part.strip()))
with open(path, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["id", "account_id", "timestamp", "channel", "text"])
    for i in range(rows):
        account, ts, text = clauses[i % len(clauses)]
        w.writerow([f"N-{i:07d}", account, ts, "chat", text])
PY
}

printf '%-8s %8s %9s %12s %6s %13s %6s\n' command rows seconds "peak RSS MB" ratio "peak anon MB" ratio
first_rss=""
first_anon=""
for n in $ROWS; do
  table="$WORK/notes_$n.csv"
  [ -f "$table" ] || make_table "$n" "$table"
  out="$WORK/out_$n.parquet"
  rm -f "$out"
  stats="$WORK/time_$n.txt"
  /usr/bin/time -f '%e %M' -o "$stats" \
    "$AUGUR" "$COMMAND" "$table" -o "$out" --model "$MODEL" >/dev/null 2>"$WORK/log_$n.txt" &
  sleep 0.2
  pid=$(pgrep -n -f "$AUGUR $COMMAND $table") || pid=""
  anon_kb=0
  while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do
    kb=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${kb:-0}" -gt "$anon_kb" ] && anon_kb=$kb
    sleep 0.2
  done
  wait
  read -r seconds kb <"$stats"
  rss=$((kb / 1024))
  anon=$((anon_kb / 1024))
  first_rss="${first_rss:-$rss}"
  first_anon="${first_anon:-$anon}"
  printf '%-8s %8s %9s %12s %6s %13s %6s\n' "$COMMAND" "$n" "$seconds" "$rss" \
    "$(python3 -c "print(f'{$rss / $first_rss:.2f}')")" "$anon" \
    "$(python3 -c "print(f'{$anon / max($first_anon, 1):.2f}')")"
done
