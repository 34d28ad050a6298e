#!/usr/bin/env bash
# What claim.lua + ack.lua cost Redis per job, in instructions counted by callgrind: exact and
# repeatable whatever else the machine runs, so a script change of a few percent shows, which
# W2's wall-clock figures (±20% between runs on a shared machine) cannot show.
#
#   benches/script_cost/cost.sh [LUA_DIR] [N] [BATCH] [WINDOW_MS] [WHAT]
#     LUA_DIR    the scripts to measure (default: lua/ of this checkout); compare two versions
#                with e.g. `git show REV:lua/claim.lua > /tmp/old/claim.lua` (and ack.lua);
#                benches/script_cost/floor: the least a claim + ack can do (BENCHMARKS.md)
#     N          jobs (default 3000)   BATCH  jobs per claim and ack call (default 16, W2's)
#     WINDOW_MS  the dedup window ack.lua is given (default 60000; 0: no dedup record)
#     WHAT       claim+ack (default); schedule: N jobs BATCH per schedule.lua call;
#                promote: BATCH jobs (each due at its own ms) per promote.lua call, N in all;
#                promote-burst: the same, each call's jobs due at one instant
#
# Needs valgrind, redis-server and the .venv of tests/python/requirements.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lua=$(cd "${1:-$root/lua}" && pwd)
n=${2:-3000}
batch=${3:-16}
window=${4:-60000}
what=${5:-claim+ack}
command -v valgrind >/dev/null || { echo "cost.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
out=$(mktemp -d /tmp/script-cost-XXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$out" && exec valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$out" \
  > "$out/valgrind.log" 2>&1) &
server=$!
# The server goes with this script, also when the driver fails and `set -e` ends it early.
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.3; done
"$root/.venv/bin/python" "$here/drive.py" "$port" "$lua" "$n" "$batch" "$window" "$what"
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait
total=$(grep -h '^summary:' "$out"/cg.out.1 | awk '{print $2}')
if [ -f "$out/cg.out.2" ]; then
  # promote modes: dump 1 is the loop without the script calls, dump 2 the loop with them.
  total=$(( $(grep -h '^summary:' "$out"/cg.out.2 | awk '{print $2}') - total ))
fi
echo "$what, $n jobs, $batch per call, dedup window $window ms: $total instructions," \
  "$((total / n)) per job (callgrind dumps in $out)"
