#!/usr/bin/env bash
# Start a single-node SLURM test cluster (munged, slurmctld, slurmd) on this machine, with a fake GPU.
#
# Usage: tests/slurm/start.sh [STATE_DIR]   (default /tmp/netdyn-slurm)
# Exit 0: the cluster runs and accepted a gpu=1 test job; the ids of the daemons it started are in STATE_DIR/pids.
# Exit 3: this machine cannot run it (not root, packages unavailable, a foreign /etc/slurm/slurm.conf); the
#         reason is the last line on stdout, starting with "SKIP:".
# Other:  a real failure; the daemon logs are in STATE_DIR.
# The config must be /etc/slurm/slurm.conf: the executor plugin's job step drops SLURM_CONF.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${1:-/tmp/netdyn-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# netdyn-ci"
# Two fake GPUs, so two gpu=1 jobs share the node as they would share two real ones.
GPUS=2
GPU_FILES=/dev/null,/dev/zero

skip() { echo "SKIP: $*"; exit 3; }
# A failed start leaves nothing running: stop whatever it had started.
trap 'rc=$?; if [ $rc -ne 0 ] && [ $rc -ne 3 ]; then "$HERE/stop.sh" "$STATE"; fi' EXIT

[ "$(id -u)" = 0 ] || skip "the test cluster needs root (daemons, /etc/slurm); running as uid $(id -u)"

have_binaries() { command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged; } >/dev/null
if ! have_binaries; then
    command -v apt-get >/dev/null || skip "slurm-wlm/munge are not installed and apt-get is unavailable"
    echo "installing slurm-wlm and munge (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1; } ||
        skip "apt-get could not install slurm-wlm and munge (offline or no such packages)"
    have_binaries || skip "slurm-wlm/munge installed but slurmctld/slurmd/sbatch/munged are missing"
fi

if [ -e "$CONF" ] && [ "$(head -c ${#MARK} "$CONF")" != "$MARK" ]; then
    skip "$CONF exists and is not the test cluster's; refusing to overwrite a real cluster config"
fi
if [ -s "$STATE/pids" ]; then
    echo "a test cluster started from $STATE may still run: stopping it first"
    "$HERE/stop.sh" "$STATE"
fi
# A controller that already answers (checked before any config is written) is a test cluster started earlier
# from another state folder: use it, and leave it running for whoever started it.
if scontrol ping 2>/dev/null | grep -q UP; then
    echo "a slurmctld already runs with $CONF: using it (stop it with tests/slurm/stop.sh and its state folder)"
    exit 0
fi

HOST="$(hostname -s)"
CPUS="$(nproc)"
MEMORY="$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"
mkdir -p "$STATE/slurmd" "$STATE/slurmctld" /etc/slurm
: >"$STATE/pids"
fill() { sed -e "s|@HOST@|$HOST|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEMORY@|$MEMORY|g" -e "s|@STATE@|$STATE|g" \
    -e "s|@GPUS@|$GPUS|g" -e "s|@GPU_FILES@|$GPU_FILES|g" "$1"; }
fill "$HERE/slurm.conf.in" >"$CONF"
fill "$HERE/gres.conf.in" >/etc/slurm/gres.conf

# munge: reuse a running munged (not ours to stop), else start one as the munge user.
if ! (munge -n | unmunge) >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || /usr/sbin/create-munge-key -f >/dev/null; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge && chown munge:munge /run/munge /var/lib/munge /var/log/munge
    setpriv --reuid munge --regid munge --init-groups munged --foreground >"$STATE/munged.log" 2>&1 &
    echo "munged $!" >>"$STATE/pids"
    for _ in $(seq 50); do (munge -n | unmunge) >/dev/null 2>&1 && break; sleep 0.2; done
    (munge -n | unmunge) >/dev/null 2>&1 || { echo "munged did not start:"; cat "$STATE/munged.log"; exit 1; }
fi

# Foreground mode (-D) in the background, so $! is the daemon itself; -c/-i: forget any earlier job state.
slurmctld -D -c -i >"$STATE/slurmctld.out" 2>&1 &
echo "slurmctld $!" >>"$STATE/pids"
for _ in $(seq 50); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
slurmd -D >"$STATE/slurmd.out" 2>&1 &
echo "slurmd $!" >>"$STATE/pids"

state=""
for _ in $(seq 100); do
    state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)"
    case "$state" in idle*|mixed*|allocated*) break ;; esac
    sleep 0.3
done
case "$state" in
    idle*|mixed*|allocated*) ;;
    *) echo "node $HOST is '$state', not idle"; tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" 2>/dev/null; exit 1 ;;
esac

# One gpu=1 job end to end, as the workflow's jobs will ask for it.
if ! timeout 60 srun --gpus=1 --time=1 true; then
    echo "a --gpus=1 test job failed"; tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" 2>/dev/null; exit 1
fi
echo "SLURM test cluster up on $HOST ($CPUS CPUs, $GPUS fake GPUs); daemons: $(tr '\n' ' ' <"$STATE/pids")"
