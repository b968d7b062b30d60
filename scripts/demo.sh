#!/usr/bin/env bash
# The demo (run by build.sh): checkpoint a running counter with `crest dump`, show that it is
# gone and what the images hold, bring it back with `crest restore -d` under the same PID, and
# watch it count on from where it stopped. Needs root and out/crest (scripts/publish.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
crest="$PWD/out/crest"
work=$(mktemp -d /tmp/crest-demo.XXXXXX)
images="$work/images"
pid=

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -Wall -Wextra -Werror -o "$work/counter" demo/counter.c
mkdir "$images"

step "start a counter: its own session (setsid), stdin /dev/null, one number every 0.2 s to counter.log"
# Not a job of an interactive shell, so setsid(1) does not fork: $! is the counter itself.
setsid "$work/counter" </dev/null >>"$work/counter.log" 2>&1 &
pid=$!
disown "$pid" # no job notice when the dump kills it; bash still reaps it at once
sleep 2
echo "counter $pid is at $(tail -n1 "$work/counter.log")"

step "checkpoint it: crest dump (the process is killed once its images are written)"
run "$crest" dump -t "$pid" -D "$images" -v4 -o dump.log
last=$(tail -n1 "$work/counter.log")
for _ in {1..100}; do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
if kill -0 "$pid" 2>/dev/null; then echo "process $pid still exists after the dump" >&2; exit 1; fi
echo "process $pid is gone; its last number was $last"
echo "log: $(wc -l <"$images/dump.log") lines in $images/dump.log; images:"
ls -l "$images" | tail -n +2 | awk '{ printf "  %10s  %s\n", $5, $9 }'

step "what the images say"
run "$crest" show "$images/pstree.img"
"$crest" show "$images/core-$pid.img" >"$work/core.json"
"$crest" show "$images/mm-$pid.img" >"$work/mm.json"
/usr/bin/python3 - "$work/core.json" "$work/mm.json" <<'PY'
import json, sys
core = json.load(open(sys.argv[1]))["entries"][0]
mm = json.load(open(sys.argv[2]))["entries"][0]
tc, regs = core.get("tc", {}), core.get("thread_info", {}).get("gpregs", {})
print(f"core: comm {tc.get('comm')!r}, task state {tc.get('task_state')}, exit code {tc.get('exit_code', 0)}, "
      f"rip {regs.get('ip')}, rsp {regs.get('sp')}, in syscall {regs.get('orig_ax')}")
vmas = mm.get("vmas", [])
print(f"mm:   {len(vmas)} VMAs, code {mm.get('mm_start_code')}-{mm.get('mm_end_code')}, "
      f"brk {mm.get('mm_start_brk')}-{mm.get('mm_brk')}, exe file id {mm.get('exe_file_id')}")
PY

step "restore it: crest restore -d (detached: crest exits, the counter runs on)"
run "$crest" restore -D "$images" -d -v4 -o restore.log
run ps -o pid,ppid,sid,stat,cmd -p "$pid"
sleep 1.5
after=$(awk -v last="$last" 'f { printf "%s ", $1 } $1 == last { f = 1 }' "$work/counter.log")
echo "counted up to $last before the dump; after the restore: $after"
first=${after%% *}
if [[ $first != $((last + 1)) ]]; then echo "the counter did not continue from $last" >&2; exit 1; fi

step "stop it"
run kill "$pid"
pid=
echo "demo done: checkpoint, restore under the same PID, state kept"
