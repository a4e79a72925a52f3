#!/usr/bin/env bash
# A one-node SLURM cluster on this machine for the SLURM tests (tests/test_slurm.py), from
# Debian's slurm-wlm and munge: installs them if missing, writes a munge key and
# /etc/slurm/slurm.conf (this host as the one node, partition `debug`), starts munged,
# slurmctld and slurmd as root, and waits until `sinfo` shows the node idle (~10-30 s).
# Idempotent: a cluster that already answers is reused, untouched. Needs root. Its state lives
# in its own dirs (/var/spool/wcntk-slurm/): another cluster's state (e.g. Debian's default
# /var/spool/slurmctld naming another ClusterName) is left alone; a state dir of ours that names
# another cluster is moved aside. When the cluster does not come up it says why (the step that
# failed and the daemons' last log lines) and stops the daemons this run started.
#   bash .ci/slurm_up.sh            # start (or reuse)
#   bash .ci/slurm_up.sh --down     # stop the three daemons this script started
# Logs: /var/log/slurm/slurm{ctld,d}.log, /var/log/munge/munged.log.
set -eEuo pipefail

CONF=/etc/slurm/slurm.conf
RUN=/run/wcntk-slurm          # pid files of the daemons started here
STATE=/var/spool/wcntk-slurm  # slurmctld's state (ctld/) and slurmd's spool (d/)
LOGS=(/var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/munge/munged.log)
started=()                    # the daemons this run started

node_up() {   # the node answers and takes jobs (idle, mixed or allocated)
    timeout 10 sinfo -h -N -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated|completing)'
}

stop() {      # stop daemon $1 if a pid file of ours names it
    [[ -f $RUN/$1.pid ]] && kill "$(cat "$RUN/$1.pid")" 2>/dev/null || true
    rm -f "$RUN/$1.pid"
}

alive() {     # daemon $1 is running
    pgrep -x "$1" >/dev/null
}

fail() {      # why, the daemons' last log lines; stop what this run started; exit 1
    trap - ERR
    echo "slurm_up: $1" >&2
    for log in "${LOGS[@]}"; do
        if [[ -s $log ]]; then echo "slurm_up: last lines of $log:" >&2; tail -n 15 "$log" >&2; fi
    done
    for d in "${started[@]}"; do stop "$d"; done
    if (( ${#started[@]} )); then echo "slurm_up: stopped what this run started: ${started[*]}" >&2; fi
    exit 1
}
trap 'fail "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

if [[ "${1:-}" == "--down" ]]; then
    for d in slurmd slurmctld munged; do stop "$d"; done
    exit 0
fi

if command -v sinfo >/dev/null && node_up; then
    echo "slurm_up: the cluster is already up: $(sinfo -h -o '%P %a %D %T %l' | head -1)"
    exit 0
fi
if [[ $(id -u) != 0 ]]; then
    echo "slurm_up: needs root (installs packages, writes /etc/slurm, starts daemons as root)" >&2
    exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm_up: installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
fi
mkdir -p "$RUN"

# munge: a key (the package makes one; make one if it did not), its run dir, the daemon.
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key && chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$RUN/munged.pid"
    started+=(munged)
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || fail "munged started but munge credentials do not work"
fi

# slurm.conf: one node (this host, its CPUs and memory less 512 MB), one partition.
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(free -m | awk '/^Mem:/{print $2}') - 512 ))
mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" /var/log/slurm
if [[ -f $STATE/ctld/clustername && $(cat "$STATE/ctld/clustername") != wcntk ]]; then
    old="$STATE/ctld.$(date +%Y%m%dT%H%M%S)"
    mv "$STATE/ctld" "$old" && mkdir -p "$STATE/ctld"
    echo "slurm_up: $STATE/ctld held another cluster's state ($(cat "$old/clustername")): moved to $old"
fi
cat > "$CONF" <<CONF_END
# Written by wcntk's .ci/slurm_up.sh: a one-node test cluster.
ClusterName=wcntk
SlurmctldHost=$host
AuthType=auth/munge
# A requeued job waits cred_expire s before it may start again (default 120): 10 s here.
AuthInfo=cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
# Small timings: the tests wait on requeued and finished jobs.
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
MinJobAge=10
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=240 State=UP
CONF_END

for d in slurmctld slurmd; do
    if ! pgrep -x "$d" >/dev/null; then
        "$d" || fail "$d did not start (exit $?)"
        started+=("$d")
    fi
done
for _ in $(seq 60); do
    if node_up; then
        echo "slurm_up: node $host up ($cpus CPUs, ${mem_mb} MB), partition debug"
        exit 0
    fi
    for d in "${started[@]}"; do   # a daemon that forked and then gave up (its log says why)
        [[ $d == munged ]] || alive "$d" || fail "$d exited after it started"
    done
    # a node that was down when slurmctld last saw it comes back on its own (ReturnToService=2)
    sleep 1
done
fail "the node did not come up within 60 s: $(sinfo -h -N -o '%N %T' 2>&1 | tr '\n' ' ')"
