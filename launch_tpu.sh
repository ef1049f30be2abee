#!/usr/bin/env bash
# Launch fgjax on a Cloud TPU VM (single host or pod slice): create the VM (directly or as a
# queued resource), copy or clone the project onto every worker, install it, and run
# `python -m fgjax.train` on all workers at once. `--dry-run` prints every command instead.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch_tpu.sh --name NAME --zone ZONE --type TYPE --config CONFIG [options] [-- OVERRIDES...]

Creates a TPU VM, installs fgjax on every worker and runs
  python -m fgjax.train --config=CONFIG --workdir=WORKDIR OVERRIDES...
on all workers (JAX finds its peers through the TPU metadata; fgjax calls
jax.distributed.initialize() on multi-host slices).

Required:
  --name NAME          TPU VM name (also the queued-resource node id).
  --zone ZONE          Zone, e.g. us-central2-b.
  --type TYPE          Accelerator type, e.g. v4-8, v4-32, v5litepod-16.
  --config CONFIG      fgjax config file, relative to the project root (configs/<name>.py).

Options:
  --runtime VERSION    TPU software version (default: tpu-ubuntu2204-base).
  --project PROJECT    Google Cloud project (default: gcloud's configured project).
  --workdir DIR        Run directory on the workers, ideally gs://bucket/run (default: runs/NAME).
  --queued             Create through a queued resource (waits until it is ACTIVE).
  --spot               Request Spot (preemptible) capacity; fgjax resumes after preemption.
  --source copy|git    copy: ship this checkout's HEAD as a tarball (default);
                       git: clone --repo at --ref on every worker.
  --repo URL           Repository to clone with --source git.
  --ref REF            Branch, tag or commit to check out with --source git (default: main).
  --skip-create        Use an existing TPU VM of that name.
  --skip-install       Skip copying and installing (rerun the job only).
  --dry-run            Print every command instead of running it.
  -h, --help           Show this help.

Everything after `--` is passed to fgjax.train as config overrides, e.g.
  launch_tpu.sh --name fg --zone us-central2-b --type v4-32 --config configs/qa_paper.py \
      --workdir gs://my-bucket/fg -- --config.ppo.kl_coef=0.2
EOF
}

NAME="" ZONE="" TYPE="" CONFIG="" PROJECT="" WORKDIR=""
RUNTIME="tpu-ubuntu2204-base" SOURCE="copy" REPO="" REF="main"
QUEUED=0 SPOT=0 SKIP_CREATE=0 SKIP_INSTALL=0 DRY_RUN=0
OVERRIDES=()

need_value() {
  if [ "$#" -lt 2 ] || [ -z "$2" ]; then
    echo "launch_tpu.sh: $1 needs a value (see --help)" >&2
    exit 2
  fi
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --name) need_value "$@"; NAME=$2; shift 2 ;;
    --zone) need_value "$@"; ZONE=$2; shift 2 ;;
    --type) need_value "$@"; TYPE=$2; shift 2 ;;
    --config) need_value "$@"; CONFIG=$2; shift 2 ;;
    --runtime) need_value "$@"; RUNTIME=$2; shift 2 ;;
    --project) need_value "$@"; PROJECT=$2; shift 2 ;;
    --workdir) need_value "$@"; WORKDIR=$2; shift 2 ;;
    --source) need_value "$@"; SOURCE=$2; shift 2 ;;
    --repo) need_value "$@"; REPO=$2; shift 2 ;;
    --ref) need_value "$@"; REF=$2; shift 2 ;;
    --queued) QUEUED=1; shift ;;
    --spot) SPOT=1; shift ;;
    --skip-create) SKIP_CREATE=1; shift ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; OVERRIDES=("$@"); break ;;
    *) echo "launch_tpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

missing=()
[ -n "$NAME" ] || missing+=("--name")
[ -n "$ZONE" ] || missing+=("--zone")
[ -n "$TYPE" ] || missing+=("--type")
[ -n "$CONFIG" ] || missing+=("--config")
if [ "${#missing[@]}" -gt 0 ]; then
  echo "launch_tpu.sh: missing ${missing[*]} (see --help)" >&2
  exit 2
fi
case "$SOURCE" in
  copy) ;;
  git) [ -n "$REPO" ] || { echo "launch_tpu.sh: --source git needs --repo" >&2; exit 2; } ;;
  *) echo "launch_tpu.sh: --source must be copy or git, got $SOURCE" >&2; exit 2 ;;
esac
WORKDIR=${WORKDIR:-runs/$NAME}

# Print (dry run) or run one command; arguments are shell-quoted when printed.
run() {
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

gcloud_tpu() {
  local args=("$@" "--zone=$ZONE")
  [ -n "$PROJECT" ] && args+=("--project=$PROJECT")
  run gcloud compute tpus "${args[@]}"
}

on_all_workers() {
  gcloud_tpu tpu-vm ssh "$NAME" --worker=all --command="$1"
}

REMOTE_DIR="fgjax"

create_vm() {
  local spot=()
  [ "$SPOT" -eq 1 ] && spot=(--spot)
  if [ "$QUEUED" -eq 1 ]; then
    gcloud_tpu queued-resources create "$NAME" --node-id="$NAME" --accelerator-type="$TYPE" \
      --runtime-version="$RUNTIME" "${spot[@]}"
    if [ "$DRY_RUN" -eq 1 ]; then
      gcloud_tpu queued-resources describe "$NAME" --format="value(state.state)"
      return
    fi
    local state=""
    until [ "$state" = "ACTIVE" ]; do
      state=$(gcloud_tpu queued-resources describe "$NAME" --format="value(state.state)")
      case "$state" in
        FAILED|SUSPENDED) echo "launch_tpu.sh: queued resource $NAME is $state" >&2; exit 1 ;;
      esac
      [ "$state" = "ACTIVE" ] || { echo "queued resource $NAME: ${state:-unknown}; waiting"; sleep 30; }
    done
  else
    gcloud_tpu tpu-vm create "$NAME" --accelerator-type="$TYPE" --version="$RUNTIME" "${spot[@]}"
  fi
}

ship_source() {
  if [ "$SOURCE" = "copy" ]; then
    local tarball=/tmp/fgjax-$NAME.tar.gz
    run git -C "$(dirname "$0")" archive --format=tar.gz -o "$tarball" HEAD
    gcloud_tpu tpu-vm scp "$tarball" "$NAME:fgjax.tar.gz" --worker=all
    on_all_workers "rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf fgjax.tar.gz -C $REMOTE_DIR"
  else
    on_all_workers "rm -rf $REMOTE_DIR && git clone $(printf '%q' "$REPO") $REMOTE_DIR && git -C $REMOTE_DIR checkout $(printf '%q' "$REF")"
  fi
}

install_project() {
  on_all_workers "cd $REMOTE_DIR && python3 -m pip install -U pip && python3 -m pip install -e . 'jax[tpu]'"
}

run_job() {
  local cmd
  cmd="cd $REMOTE_DIR && python3 -m fgjax.train --config=$(printf '%q' "$CONFIG") --workdir=$(printf '%q' "$WORKDIR")"
  local override
  for override in "${OVERRIDES[@]}"; do
    cmd+=" $(printf '%q' "$override")"
  done
  on_all_workers "$cmd"
}

[ "$SKIP_CREATE" -eq 1 ] || create_vm
if [ "$SKIP_INSTALL" -eq 0 ]; then
  ship_source
  install_project
fi
run_job
