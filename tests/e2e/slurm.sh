# run/slurm against a real Slurm: a controller and two simulated nodes
# (cpu1 in partition "cpu", gpu1 in partition "gpu") with their own munge,
# all on this machine and everything under one scratch folder: config,
# spool, state, logs, munge key and socket. The daemons are stopped on every
# way out (trap), by pid.
. tests/lib.sh
ROOT=$(pwd)

# curve-keygen (run/slurm --curve): a Z85 keypair, the secret key private.
k=$(scratch curve-keygen)
if "$BIN/curve-keygen" --out "$k/keys" >/dev/null && [ "$(stat -c %a "$k/keys/curve.key")" = 600 ] \
   && grep -qxE '.{40}' "$k/keys/curve.key" && grep -qxE '.{40}' "$k/keys/curve.pub" \
   && ! cmp -s "$k/keys/curve.key" "$k/keys/curve.pub"; then pass curve_keygen_pair
else fail curve_keygen_pair "$(ls -l "$k/keys" 2>&1)"; fi
expect_error curve_keygen_needs_out "--out DIR is required" "$BIN/curve-keygen"
expect_error curve_keygen_bad_dir "cannot create" "$BIN/curve-keygen" --out /proc/fewsam/keys

if [ "$(id -u)" != 0 ]; then skip slurm_cluster "needs root (munged runs as the munge user, slurmd as root)"; finish; fi
for c in slurmctld slurmd munged sbatch srun scontrol sinfo squeue scancel setpriv ss pgrep; do
  command -v $c >/dev/null || { skip slurm_cluster "no $c (Debian: slurmctld slurmd slurm-client munge; run/deps)"; finish; }
done
id munge >/dev/null 2>&1 || { skip slurm_cluster "no munge user (Debian's munge package)"; finish; }

d=$(scratch slurm); d=$(cd "$d" && pwd)
mkdir -p "$d"/{etc,state,spool,log,pid,munge,job}
PIDS=()

stop_daemons() {
  local p
  # Jobs first: a job step's processes live under slurmstepd, which outlives
  # slurmd.
  if [ -n "${SLURM_CONF:-}" ] && [ -n "$(squeue -h -o %A 2>/dev/null)" ]; then
    scancel $(squeue -h -o %A) 2>/dev/null
    for _ in $(seq 100); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  # slurmd and slurmctld together (each takes a few seconds), munged last.
  for p in "${PIDS[@]}"; do [ "$p" = "${MUNGE_PID:-}" ] || kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 100); do
    local alive=0
    for p in "${PIDS[@]}"; do [ "$p" = "${MUNGE_PID:-}" ] || ! kill -0 "$p" 2>/dev/null || alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 30); do
    local alive=0
    for p in "${PIDS[@]}"; do ! kill -0 "$p" 2>/dev/null || alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  PIDS=()
  [ -z "${MUNGE_TMP:-}" ] || rm -rf "$MUNGE_TMP"
}
trap stop_daemons EXIT
trap 'exit 130' INT TERM

# Free TCP ports: the controller and one per simulated node.
free_ports() {
  local n=$1 p used
  used=$(ss -Htan | awk '{print $4}' | sed 's/.*://' | sort -u)
  p=$((20000 + RANDOM % 30000))
  while [ "$n" -gt 0 ]; do
    grep -qx "$p" <<<"$used" || { echo $p; n=$((n - 1)); }
    p=$((p + 1))
  done
}
read -r CTLD_PORT CPU_PORT GPU_PORT <<<"$(free_ports 3 | tr '\n' ' ')"

# munge: a private key (0400, owned by munge) and socket; the socket's
# folder must be reachable (o+x) for root's clients. Where the munge user
# cannot reach the scratch folder (a repository under /root), its files go
# to a folder in /tmp, removed at the end.
M=$d/munge
if ! setpriv --reuid munge --regid munge --clear-groups test -x "$d"; then
  M=$(mktemp -d /tmp/fewsam-munge.XXXXXX); MUNGE_TMP=$M
fi
chown munge:munge "$M"; chmod 0711 "$M"
head -c 1024 /dev/urandom > "$M/munge.key"
chown munge:munge "$M/munge.key"; chmod 0400 "$M/munge.key"
SOCK=$M/munge.socket
start=$(date +%s%N)
setpriv --reuid munge --regid munge --clear-groups munged --socket="$SOCK" --key-file="$M/munge.key" --pid-file="$M/munged.pid" \
  --log-file="$M/munged.log" --seed-file="$M/munged.seed" --foreground --force >"$d/log/munged.out" 2>&1 &
MUNGE_PID=$!; PIDS+=($MUNGE_PID)
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done

cat > "$d/etc/slurm.conf" <<EOF
ClusterName=fewsamtest
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=$CTLD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
CommunicationParameters=NoInAddrAny
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool/%n
SlurmctldPidFile=$d/pid/slurmctld.pid
SlurmdPidFile=$d/pid/slurmd-%n.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=3
InactiveLimit=0
NodeName=cpu1 NodeAddr=127.0.0.1 Port=$CPU_PORT CPUs=8 State=UNKNOWN
NodeName=gpu1 NodeAddr=127.0.0.1 Port=$GPU_PORT CPUs=8 State=UNKNOWN
PartitionName=cpu Nodes=cpu1 Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=gpu1 MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$d/etc/slurm.conf
unset SLURM_JOB_ID SLURM_JOBID SLURM_NODELIST SLURM_PARTITION

slurmctld -D -i -f "$SLURM_CONF" >"$d/log/slurmctld.out" 2>&1 & PIDS+=($!)
for n in cpu1 gpu1; do
  mkdir -p "$d/spool/$n"
  slurmd -D -N $n -f "$SLURM_CONF" >"$d/log/slurmd-$n.out" 2>&1 & PIDS+=($!)
done
up=0
for _ in $(seq 100); do
  [ "$(sinfo -h -N -o '%N %t' 2>/dev/null | grep -cE ' (idle|mix|alloc)$')" = 2 ] && { up=1; break; }
  sleep 0.1
done
if [ $up = 1 ]; then
  echo "# cluster up in $(( ($(date +%s%N) - start) / 1000000 )) ms"; pass slurm_cluster_up
else
  fail slurm_cluster_up "nodes not idle: $(sinfo -h -N -o '%N %t' 2>&1 | tr '\n' ' '); $(tail -3 "$d/log/slurmctld.log" 2>/dev/null)"
  finish
fi

# A trivial job on each node, then a heterogeneous one across both.
out=$(cd "$d/job" && timeout 30 srun -p cpu -N1 -n1 sh -c 'echo $SLURMD_NODENAME' 2>&1; \
      timeout 30 srun -p gpu -N1 -n1 sh -c 'echo $SLURMD_NODENAME' 2>&1)
[ "$(tr '\n' ' ' <<<"$out")" = "cpu1 gpu1 " ] && pass srun_on_both_nodes || fail srun_on_both_nodes "$out"

cat > "$d/job/het.sh" <<'EOF'
#!/bin/bash
#SBATCH -p gpu -n1
#SBATCH hetjob
#SBATCH -p cpu -n2
srun --het-group=0 sh -c 'echo "0 $SLURMD_NODENAME"' &
srun --het-group=1 sh -c 'echo "1 $SLURMD_NODENAME $SLURM_PROCID"' &
wait
EOF
out=$(cd "$d/job" && timeout 60 sbatch --wait -o "$d/job/het.out" "$d/job/het.sh" 2>&1); rc=$?
got=$(sort "$d/job/het.out" 2>/dev/null | tr '\n' ' ')
[ $rc = 0 ] && [ "$got" = "0 gpu1 1 cpu1 0 1 cpu1 1 " ] && pass heterogeneous_job \
  || fail heterogeneous_job "rc $rc: $out; output: $got"

# The pipeline through run/slurm: prep on cpu1, the trainer on gpu1 with two
# synthesizer tasks on cpu1 over CURVE-encrypted tcp://, eval on gpu1.
W="$SHARED/golden/tiny.safetensors"
if ! "$BIN/trainer" --help 2>/dev/null | grep -q -- '--stream' || ! "$BIN/synthesizer" --help 2>/dev/null | grep -q -- '--connect'; then
  skip slurm_pipeline "the trainer has no --stream or the synthesizer no --connect (streaming not built)"
elif [ ! -f "$W" ]; then
  skip slurm_pipeline "no $W"
else
  R=$d/run
  t0=$SECONDS
  out=$(timeout 150 run/slurm --run "$R" --cpu-partition cpu --gpu-partition gpu --gres none --synthesizers 2 \
        --cpus 2 --curve --wait BIN="$ROOT/$BIN" DATA=demo DEMO_CASES=3 SAM="$W" ITERS=3 BATCH=1 TRAIN_BACKEND=ref 2>&1); rc=$?
  echo "# run/slurm --wait: $((SECONDS - t0)) s"
  if [ $rc = 0 ] && [ -f "$R/scores/scores.json" ] && grep -q "zero-shot DSC" "$R/scores/scores.md" \
     && grep -q '"mean_dsc"' "$R/scores/scores.json"; then pass slurm_pipeline_scores
  else fail slurm_pipeline_scores "rc $rc: $(tail -5 <<<"$out" | tr '\n' ' ')"; fi
  grep -qE '^tcp://127\.0\.0\.1:[0-9]+$' "$R/slurm/endpoint" 2>/dev/null && pass endpoint_from_slurm \
    || fail endpoint_from_slurm "endpoint: $(cat "$R/slurm/endpoint" 2>&1)"
  ls "$R"/logs/synthesizer-0.log "$R"/logs/synthesizer-1.log >/dev/null 2>&1 && grep -q -- "--curve-secret-key" "$R/logs/trainer.log" \
    && pass two_synthesizers_curve || fail two_synthesizers_curve "$(ls "$R/logs")"

  # A signal to run/slurm --wait while the trainer runs: every job cancelled
  # (scancel), no stage left running, no checkpoint.
  C=$d/cancel
  t0=$SECONDS
  run/slurm --run "$C" --cpu-partition cpu --gpu-partition gpu --gres none --synthesizers 2 --cpus 2 --wait \
    BIN="$ROOT/$BIN" DATA=demo DEMO_CASES=3 SAM="$W" ITERS=500 BATCH=1 TRAIN_BACKEND=ref \
    "TRAINER_ARGS=--debug-sleep-ms 100" >"$d/cancel.out" 2>&1 &
  wpid=$!
  for _ in $(seq 600); do grep -q "joined" "$C/logs/trainer.log" 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  kill -TERM $wpid; wait $wpid; rc=$?
  ids=$(awk '{printf "%s%s", sep, $2; sep=","}' "$C/slurm/jobs" 2>/dev/null)
  for _ in $(seq 300); do [ -z "$(squeue -h -j "$ids" -o %i 2>/dev/null)" ] && break; sleep 0.1; done
  states=$(for j in ${ids//,/ }; do scontrol show job -o "$j" | grep -oE 'JobState=[A-Z]+' | cut -d= -f2 | sort -u; done | tr '\n' ' ')
  left=$(pgrep -f -- "$C/" | tr '\n' ' ')
  echo "# cancelled in $((SECONDS - t0)) s: $states"
  if [ $rc = 130 ] && [ "$states" = "COMPLETED CANCELLED CANCELLED " ] && [ -z "$left" ] \
     && [ ! -e "$C/train/checkpoint.safetensors" ]; then pass signal_cancels_jobs
  else fail signal_cancels_jobs "rc $rc, states '$states', processes left '$left', $(tail -2 "$d/cancel.out" | tr '\n' ' ')"; fi
fi

finish
