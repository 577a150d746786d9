#!/usr/bin/env bash
# A single-node Slurm cluster for lecal's Slurm tests (`make test-slurm`), on one Debian
# machine as root, without systemd: munged, slurmctld and slurmd started by hand.
#
#   scripts/slurm-local.sh install   Debian's slurmctld, slurmd, slurm-client and munge
#   scripts/slurm-local.sh start     a fresh cluster (config, daemons, node idle)
#   scripts/slurm-local.sh stop      cancel every job and stop the daemons it started
#
# Env: SLURM_LOCAL_DIR (default /tmp/lecal-slurm): state, spool and logs.
set -euo pipefail
# srun and friends misbehave with a closed stdin.
exec </dev/null

BASE=${SLURM_LOCAL_DIR:-/tmp/lecal-slurm}
CONF=/etc/slurm/slurm.conf
NODE=localhost

log() { echo "[slurm-local] $*"; }
die() {
  log "FAIL: $*"
  for f in "$BASE"/log/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done
  exit 1
}
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
pid_in() { [ -s "$1" ] && cat "$1" || true; }
# until SECONDS COMMAND...: retries COMMAND every half second
until_ok() {
  local n=$(($1 * 2))
  shift
  until "$@" >/dev/null 2>&1; do
    n=$((n - 1))
    [ "$n" -gt 0 ] || return 1
    sleep 0.5
  done
}

do_install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v sbatch >/dev/null && command -v munged >/dev/null; then
    log "installed: $(slurmctld -V)"
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  log "installed: $(slurmctld -V)"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return
  fi
  install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
  install -d -o munge -g munge -m 0711 /var/lib/munge
  install -d -o munge -g munge -m 0755 /run/munge
  [ -s /etc/munge/munge.key ] || runuser -u munge -- /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  # munged refuses to run as root; --origin avoids a failed lookup of this host's name.
  runuser -u munge -- /usr/sbin/munged --origin=127.0.0.1
  until_ok 10 bash -c 'munge -n | unmunge' || die "munged does not answer"
  pid_in /run/munge/munged.pid >"$BASE/munged.ours"
}

write_config() {
  mkdir -p "$BASE"/{state,spool,log} /etc/slurm
  local hw
  hw=$(slurmd -C 2>/dev/null | head -n 1 || true)
  if [[ "$hw" == NodeName=* ]]; then
    hw=${hw#NodeName=* }
  else
    hw="CPUs=$(nproc) RealMemory=$(($(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024))"
  fi
  cat >"$CONF" <<EOF
# Written by lecal's scripts/slurm-local.sh: a single-node test cluster.
ClusterName=lecal
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
# A dependency that can never be met (a failed teacher) cancels the job.
DependencyParameters=kill_invalid_depend
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
Waittime=0
MinJobAge=3600
JobRequeue=1
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE $hw State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
# A partition with a time limit, for the jobs that must fit one.
PartitionName=short Nodes=$NODE MaxTime=00:30:00 State=UP
EOF
}

start() {
  alive "$(pid_in "$BASE/slurmctld.pid")" && die "a cluster from $BASE is running: stop it first"
  rm -rf "$BASE"
  mkdir -p "$BASE"
  start_munge
  write_config
  slurmctld || die "slurmctld exited with $?"
  until_ok 30 bash -c 'scontrol ping | grep -q UP' || die "slurmctld does not answer"
  slurmd -N "$NODE" || die "slurmd exited with $?"
  until_ok 30 bash -c "[ \"\$(sinfo -h -n $NODE -o %T)\" = idle ]" || die "the node is not idle: $(sinfo -h -o '%T %E' 2>&1)"
  log "up: node $NODE idle ($(sinfo -h -o '%c CPUs'))"
}

stop_pid() {
  alive "$1" || return 0
  kill "$1" 2>/dev/null || true
  until_ok 20 bash -c "! kill -0 $1" || kill -9 "$1" 2>/dev/null || true
}

stop() {
  if alive "$(pid_in "$BASE/slurmctld.pid")"; then
    local ids
    ids=$(squeue -h -o %A | sort -u | tr '\n' ' ')
    # shellcheck disable=SC2086 # one argument per job id
    [ -z "${ids// /}" ] || scancel $ids 2>/dev/null || true
    until_ok 30 bash -c '! squeue -h -t PENDING,RUNNING,COMPLETING | grep -q .' || true
  fi
  stop_pid "$(pid_in "$BASE/slurmd.pid")"
  stop_pid "$(pid_in "$BASE/slurmctld.pid")"
  if [ -s "$BASE/munged.ours" ]; then
    stop_pid "$(cat "$BASE/munged.ours")"
    rm -f "$BASE/munged.ours"
  fi
  if [ -f "$CONF" ] && grep -q "lecal's scripts/slurm-local.sh" "$CONF"; then rm -f "$CONF"; fi
  log "stopped"
}

[ "$(id -u)" = 0 ] || { echo "slurm-local.sh: run as root" >&2; exit 1; }
for cmd in "$@"; do
  case "$cmd" in
  install) do_install ;;
  start) start ;;
  stop) stop ;;
  *) echo "slurm-local.sh: unknown command $cmd (install, start, stop)" >&2; exit 2 ;;
  esac
done
