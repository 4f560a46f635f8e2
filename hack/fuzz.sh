#!/usr/bin/env bash
# The YAML fuzz targets (tests/fuzz/yaml_targets.py) for longer than the suite runs them:
#   hack/fuzz.sh [SECONDS per target, default 600] [TARGET...]
# Each target keeps its corpus in .weir/fuzz/<target> (a later run starts where this one
# stopped) and its log in .weir/fuzz/<target>.log. An input that breaks an invariant, or takes
# over 10 s or 1.5 GiB, is written to .weir/fuzz/crashes/ and stops the run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(PYTHONPATH="$PWD" .venv/bin/python -m tests.fuzz.yaml_targets --list)
fi
mkdir -p .weir/fuzz/crashes
for target in "${targets[@]}"; do
  echo "== ${target}: ${seconds}s"
  log=".weir/fuzz/${target}.log"
  status=0
  PYTHONPATH="$PWD" .venv/bin/python -m tests.fuzz.yaml_targets "$target" ".weir/fuzz/${target}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1536 \
    -artifact_prefix=.weir/fuzz/crashes/ -print_final_stats=1 > "$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log"
    echo "fuzz: ${target} failed (exit ${status}); the input is in .weir/fuzz/crashes/" >&2
    exit "$status"
  fi
  grep -E '^(Done|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log"
done
