# Sourced by run/local and run/slurm: what the two trainer launchers share.
# They take the same command line (pipeline.mk's RUN_LOCAL interface),
#   PROG train [--synthesizers N] [--synth-args ARGS] [--socket PATH]
#              [--logs DIR] [--synthesizer BIN] -- TRAINER [TRAINER ARGS...]
# differ only in how they start processes (fork here, srun on a cluster),
# and stop and wait for them alike. The sourcing script sets prog first.

die() { echo "$prog: error: $*" >&2; exit 1; }
usage_error() { echo "$prog: $*" >&2; echo "Try '$prog --help'." >&2; exit 2; }
# the script's leading comment block, without the #!
usage() { awk 'NR > 1 { if (!/^#/) exit; sub(/^# ?/, ""); print }' "$0"; }
need_value() { [ "$2" -ge 2 ] || usage_error "$1 needs a value"; }
is_count() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -le "$2" ]; }
# launch_any_alive PID...: whether any of the processes is still running
launch_any_alive() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }

# launch_parse MAX_SYNTHESIZERS ARGS...: the train command's options into
# L_N, L_SARGS (array), L_SOCK, L_LOGS, L_SYNTH_BIN and the trainer's
# command into L_TRAINER (array).
launch_parse() {
  local max=$1 synth_args=""
  shift
  L_N=2 L_SOCK="" L_LOGS="" L_SYNTH_BIN=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --synthesizers) need_value "$1" $#; L_N=$2; shift 2 ;;
      --synth-args) need_value "$1" $#; synth_args=$2; shift 2 ;;
      --socket) need_value "$1" $#; L_SOCK=$2; shift 2 ;;
      --logs) need_value "$1" $#; L_LOGS=$2; shift 2 ;;
      --synthesizer) need_value "$1" $#; L_SYNTH_BIN=$2; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      --) shift; break ;;
      *) usage_error "unknown option '$1' (the trainer's command goes after --)" ;;
    esac
  done
  [ $# -ge 1 ] || usage_error "no trainer command after --"
  is_count "$L_N" "$max" || usage_error "--synthesizers: '$L_N' is not a number from 0 to $max"
  L_TRAINER=("$@")
  read -r -a L_SARGS <<<"$synth_args"
}

# launch_synth_inputs: the exemplars (L_DATA) and seed (L_SEED) the
# synthesizers need, which are the trainer's, and the synthesizer
# executable (L_SYNTH_BIN: given, else beside the trainer's).
launch_synth_inputs() {
  local i a
  L_DATA="" L_SEED=0
  for ((i = 1; i < ${#L_TRAINER[@]}; i++)); do
    a=${L_TRAINER[i]}
    case "$a" in
      --data|-d) L_DATA=${L_TRAINER[i + 1]:-} ;;
      --data=*) L_DATA=${a#--data=} ;;
      --seed) L_SEED=${L_TRAINER[i + 1]:-} ;;
      --seed=*) L_SEED=${a#--seed=} ;;
    esac
  done
  [ -n "$L_DATA" ] || usage_error "the trainer's command has no --data (the exemplars the synthesizers need)"
  [ -n "$L_SYNTH_BIN" ] || L_SYNTH_BIN=$(dirname "${L_TRAINER[0]}")/synthesizer
  [ -x "$L_SYNTH_BIN" ] || die "cannot run '$L_SYNTH_BIN': no such executable (give --synthesizer)"
  [ -z "$L_LOGS" ] || mkdir -p "$L_LOGS" || die "cannot create '$L_LOGS'"
}

# launch_stop PID...: SIGTERM (a synthesizer says bye and exits; srun
# forwards it to its tasks), then SIGKILL for whatever is left after 5 s.
launch_stop() {
  local p
  for p in "$@"; do kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    launch_any_alive "$@" || break
    sleep 0.1
  done
  for p in "$@"; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
}

# launch_wait TRAINER_PID SYNTHESIZER_PID...: waits for the trainer and
# returns its status. Every synthesizer gone for 5 s while the trainer runs
# returns 1 at once (the trainer would only wait for samples nobody makes);
# after the trainer's success, gives the synthesizers 10 s to leave (they
# exit by themselves after its bye). The caller's EXIT trap stops the rest.
launch_wait() {
  local tpid=$1 gone_since="" rc=0
  shift
  while kill -0 "$tpid" 2>/dev/null; do
    if ! launch_any_alive "$@"; then
      [ -n "$gone_since" ] || gone_since=$SECONDS
      # the trainer says bye only when it is done: give it time to finish writing
      if [ $((SECONDS - gone_since)) -ge 5 ]; then
        echo "$prog: error: every synthesizer has exited; stopping the trainer" >&2
        return 1
      fi
    fi
    sleep 0.2
  done
  wait "$tpid" || rc=$?
  if [ $rc -ne 0 ]; then
    echo "$prog: the trainer exited with status $rc; stopping the synthesizers" >&2
    return $rc
  fi
  for _ in $(seq 100); do
    launch_any_alive "$@" || break
    sleep 0.1
  done
  return 0
}
