#!/usr/bin/env bash
# A single-node Slurm on loopback, for gdfit's tests and for trying sweeps on one machine.
#
#   scripts/slurm.sh start [DIR]   start munged, slurmctld and slurmd; wait for the node
#   scripts/slurm.sh stop [DIR]    stop them again (by the pids they wrote under DIR)
#   scripts/slurm.sh status [DIR]  sinfo of the running cluster
#
# Everything lives under DIR (default /tmp/gdfit-slurm): slurm.conf, a private munge key and
# socket, state, spool, logs and pid files; nothing under /etc is written. `start` prints the one
# line a shell needs, `export SLURM_CONF=DIR/slurm.conf`. Daemons are started directly (no
# systemd) as root, with ports picked free on 127.0.0.1 unless SLURMCTLD_PORT/SLURMD_PORT say.
# Accounting is off (there is no slurmdbd): sacct cannot report jobs, so callers bound their waits.
# Needs Debian's slurm-wlm and munge packages (apt-get install slurm-wlm munge).
set -euo pipefail

cmd=${1:-}
dir=$(realpath -m "${2:-${GDFIT_SLURM_DIR:-/tmp/gdfit-slurm}}")
wait_s=${SLURM_START_TIMEOUT:-60}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_pidfile() { # stop the daemon whose pid is in $1, waiting up to 10 s
    local pidfile=$1 pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

stop() {
    # Jobs still queued or running (a sweep that timed out) go first, so no job step outlives
    # its slurmd.
    if [[ -f $dir/slurmctld.pid ]] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        SLURM_CONF=$dir/slurm.conf timeout 15 scancel --user="$(id -un)" 2>/dev/null || true
    fi
    stop_pidfile "$dir/slurmd.pid"
    stop_pidfile "$dir/slurmctld.pid"
    stop_pidfile "$dir/munged.pid"
}

fail() { # print why and the daemons' last log lines, stop what started, exit 1
    echo "slurm.sh: $*" >&2
    for log in "$dir"/*.log; do
        [[ -f $log ]] && { echo "--- $log" >&2; tail -n 5 "$log" >&2; }
    done
    stop
    exit 1
}

start() {
    for tool in munged mungekey slurmctld slurmd sinfo sbatch; do
        command -v "$tool" >/dev/null || { echo "slurm.sh: $tool missing: apt-get install slurm-wlm munge" >&2; exit 1; }
    done
    if [[ -f $dir/slurmctld.pid ]] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        echo "slurm.sh: already running under $dir" >&2
        echo "export SLURM_CONF=$dir/slurm.conf"
        return 0
    fi
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    chmod 700 "$dir/munge"
    local host cpus mem ctld_port slurmd_port
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo) # MiB offered to jobs: half
    ctld_port=${SLURMCTLD_PORT:-$(free_port)}
    slurmd_port=${SLURMD_PORT:-$(free_port)}

    [[ -f $dir/munge/munge.key ]] || mungekey --create --keyfile="$dir/munge/munge.key" >/dev/null
    chmod 600 "$dir/munge/munge.key"
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" \
        --seed-file="$dir/munge/munged.seed" || fail "munged did not start"

    cat >"$dir/slurm.conf" <<EOF
ClusterName=gdfit
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -f "$SLURM_CONF" -i || fail "slurmctld did not start"
    slurmd -f "$SLURM_CONF" || fail "slurmd did not start"
    local deadline=$((SECONDS + wait_s))
    until sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; do
        ((SECONDS < deadline)) || fail "the node did not become idle within ${wait_s} s"
        sleep 0.5
    done
    echo "export SLURM_CONF=$SLURM_CONF"
}

case $cmd in
start) start ;;
stop) stop ;;
status) SLURM_CONF=$dir/slurm.conf sinfo ;;
*)
    echo "usage: $0 start|stop|status [DIR]" >&2
    exit 2
    ;;
esac
