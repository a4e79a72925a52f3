#!/usr/bin/env bash
# A one-node SLURM cluster on this machine for the SLURM tests (tests/test_slurm.py), from
# Debian's slurm-wlm and munge: installs them if missing, writes a munge key and
# /etc/slurm/slurm.conf (this host as the one node, partition `debug`), starts munged,
# slurmctld and slurmd as root, and waits until `sinfo` shows the node idle (~10-30 s).
# Idempotent: a cluster that already answers is reused, untouched. Needs root.
#   bash .ci/slurm_up.sh            # start (or reuse)
#   bash .ci/slurm_up.sh --down     # stop the three daemons this script started
# Logs: /var/log/slurm/slurm{ctld,d}.log, /var/log/munge/munged.log.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
RUN=/run/wcntk-slurm          # pid files of the daemons started here

node_up() {   # the node answers and takes jobs (idle, mixed or allocated)
    timeout 10 sinfo -h -N -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated|completing)'
}

if [[ "${1:-}" == "--down" ]]; then
    for d in slurmd slurmctld munged; do
        [[ -f $RUN/$d.pid ]] && kill "$(cat "$RUN/$d.pid")" 2>/dev/null || true
        rm -f "$RUN/$d.pid"
    done
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
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# slurm.conf: one node (this host, its CPUs and memory less 512 MB), one partition.
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(free -m | awk '/^Mem:/{print $2}') - 512 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > "$CONF" <<CONF_END
# Written by wcntk's .ci/slurm_up.sh: a one-node test cluster.
ClusterName=wcntk
SlurmctldHost=$host
AuthType=auth/munge
# A requeued job waits cred_expire s before it may start again (default 120): 10 s here.
AuthInfo=cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
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

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
    if node_up; then
        echo "slurm_up: node $host up ($cpus CPUs, ${mem_mb} MB), partition debug"
        exit 0
    fi
    # a node that was down when slurmctld last saw it comes back on its own (ReturnToService=2)
    sleep 1
done
echo "slurm_up: the node did not come up within 60 s:" >&2
sinfo -N -l >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
