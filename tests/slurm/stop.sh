#!/usr/bin/env bash
# Stop the daemons tests/slurm/start.sh started (by the process ids it saved), after cancelling leftover jobs.
# Usage: tests/slurm/stop.sh [STATE_DIR]   (default /tmp/netdyn-slurm).
# It also removes the test cluster's /etc/slurm/slurm.conf and gres.conf (only files start.sh wrote, marked
# "# netdyn-ci"): with a slurm.conf whose controller is down, `scontrol show config` retries for ~9 s, and the SLURM
# executor plugin runs it whenever snakemake starts, so every later snakemake command on this machine would wait.
set -uo pipefail

STATE="${1:-/tmp/netdyn-slurm}"
stop_daemons() {
    # Jobs outlive slurmd (slurmstepd is its own process): cancel them while slurmctld still runs.
    # Only this test cluster's jobs exist here: start.sh refuses to run where another slurm.conf is in place.
    if grep -q '^slurmctld ' "$STATE/pids"; then
        jobs="$(squeue -h -o %i 2>/dev/null || true)"
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 30); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.3; done
        fi
    fi

    # Stop in reverse start order: slurmd, slurmctld, then munged.
    tac "$STATE/pids" | while read -r name pid; do
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; echo "$name ($pid) needed SIGKILL"; fi
        echo "stopped $name ($pid)"
    done
    : >"$STATE/pids"
}

if [ -s "$STATE/pids" ]; then stop_daemons; else echo "no daemons recorded in $STATE/pids"; fi

# The config goes only when no controller is left running (one started from another state folder still needs it).
MARK="# netdyn-ci"
if ! pgrep -x slurmctld >/dev/null; then
    for conf in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
        if [ -f "$conf" ] && [ "$(head -c ${#MARK} "$conf")" = "$MARK" ]; then rm -f "$conf" && echo "removed $conf"; fi
    done
fi
