# Shared by the study's long background scripts (sourced, not run): restoring a working
# database from its committed snapshot, and yielding the CPU to the user's own work.

# restore_db DIR SNAPSHOT: DIR/run.db from SNAPSHOT when DIR has none (a fresh clone).
restore_db() {
  if [ ! -f "$1/run.db" ] && [ -f "$2" ]; then
    mkdir -p "$1" && cp "$2" "$1/run.db"
  fi
}

# yield_cpu: one torch thread, and a niced autogroup. Linux groups a session's processes
# (autogroup) and shares the CPU fairly between groups whatever their nice values, so a niced
# job in its own session (setsid) still takes half of the cores from a foreground shell;
# lowering the group's priority too is what yields them. Done only when the calling script
# leads its own session, so it never lowers a user's terminal.
yield_cpu() {
  export OMP_NUM_THREADS=1
  if [ "$(ps -o sid= -p $$ | tr -d ' ')" = "$$" ] && [ -w /proc/self/autogroup ]; then
    echo "${NICE:-5}" > /proc/self/autogroup 2>/dev/null || true
  fi
}
