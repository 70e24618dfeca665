#!/usr/bin/env bash
# Checks the Dockerfile's steps on this machine, without a container builder:
#
#   1. every COPY source exists in the build context, and .dockerignore keeps every workspace
#      member's manifest (cargo reads them all);
#   2. every RUN step of the build stage is a cargo build, and it is run here as written (in the
#      repository, which is the stage's WORKDIR), so --locked and the package name are checked by
#      a real build;
#   3. every COPY --from the build stage names a file that build produced;
#   4. the runtime stage's binary, ENV, EXPOSE, USER and ENTRYPOINT agree, and the binary runs as
#      the image's user (uid 65532 for distroless "nonroot", never root) with the image's ENV and
#      a PORT set as a platform sets it: it answers /healthz and exits 0 on SIGTERM.
#
# Usage: scripts/dockerfile-steps.sh [--image]
#   --image   then also build the image, when docker, podman or buildah is here and the base
#             images can be pulled; otherwise say why not and exit 0 (exit 1 instead when
#             CALLSTREAM_REQUIRE_IMAGE=1).
# Needs bash, cargo and setpriv (util-linux). Run as root (to switch to the image's user), or as
# that user.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

fail() { echo "dockerfile-steps: FAIL: $*" >&2; exit 1; }
say() { echo "dockerfile-steps: $*"; }

# ---- Parse: instructions with their continuation lines joined, comments dropped.
mapfile -t instructions < <(
  sed -e 's/\r$//' Dockerfile | awk '
    /^[[:space:]]*#/ && cont == "" { next }
    { line = cont $0 }
    /\\[[:space:]]*$/ { sub(/\\[[:space:]]*$/, " ", line); cont = line; next }
    { cont = ""; if (line ~ /[^[:space:]]/) print line }'
)

stage="" ; last_stage=""
declare -A workdir=()
build_runs=() ; copies=() ; from_copies=()
runtime_env=() ; expose="" ; user="" ; entrypoint=""
for ins in "${instructions[@]}"; do
  read -r op rest <<<"$ins"
  op=${op^^}
  case $op in
    ARG) ;;
    FROM)
      # FROM image [AS name]
      stage=$(awk '{ if (tolower($(NF-1)) == "as") print $NF; else print "stage" NR }' <<<"$rest")
      last_stage=$stage
      runtime_env=() ; expose="" ; user="" ; entrypoint="" ;;
    WORKDIR) workdir[$stage]=$rest ;;
    RUN) build_runs+=("$stage|$rest") ;;
    COPY)
      if [[ $rest == --from=* ]]; then
        from_copies+=("$stage|$rest")
      else
        copies+=("$stage|$rest")
      fi ;;
    ENV) runtime_env+=($rest) ;;
    EXPOSE) expose=$rest ;;
    USER) user=$rest ;;
    ENTRYPOINT|CMD) entrypoint=$rest ;;
    *) fail "instruction $op is not understood by this script: teach it, or keep the Dockerfile simple" ;;
  esac
done
[ -n "$last_stage" ] || fail "no FROM in the Dockerfile"

# ---- 1. COPY sources exist and .dockerignore keeps what cargo needs.
ignored() {
  local path=$1 pat
  while read -r pat; do
    [[ -z $pat || $pat == \#* ]] && continue
    pat=${pat#/}
    # "**/x" matches x at any depth; "x" matches x and everything under it.
    if [[ $path == $pat || $path == $pat/* || $path == */${pat#\*\*/} || $path == */${pat#\*\*/}/* ]]; then
      return 0
    fi
  done < <([ -f .dockerignore ] && cat .dockerignore)
  return 1
}
for c in "${copies[@]}"; do
  read -r -a words <<<"${c#*|}"
  for src in "${words[@]:0:${#words[@]}-1}"; do
    [[ $src == --* ]] && continue
    [ -e "$src" ] || fail "COPY source $src does not exist"
    [ "$src" = "." ] || ! ignored "$src" || fail "COPY source $src is excluded by .dockerignore"
  done
done
members=$(sed -n '/^members *=/,/\]/p' Cargo.toml | grep -o '"[^"]*"' | tr -d '"')
for f in Cargo.toml Cargo.lock $(for m in $members; do echo "$m/Cargo.toml"; done); do
  [ -f "$f" ] || fail "$f is missing"
  ! ignored "$f" || fail "$f is excluded by .dockerignore, and cargo needs it"
done
say "COPY sources exist; .dockerignore keeps Cargo.toml, Cargo.lock and every member ($(echo $members | wc -w))"

# ---- 2. The build stage's RUN steps, run here as written.
[ ${#build_runs[@]} -gt 0 ] || fail "no RUN step builds the binary"
for r in "${build_runs[@]}"; do
  cmd=${r#*|}
  [[ $cmd =~ ^cargo\ build\ [-A-Za-z0-9_\ ]+$ ]] || fail "RUN step is not a plain cargo build: $cmd"
  [[ " $cmd " == *" --locked "* ]] || fail "the image build must be --locked: $cmd"
  say "running the image's build step here: $cmd"
  # Word splitting is intended: the step is plain words (checked above).
  # shellcheck disable=SC2086
  $cmd
done

# ---- 3. COPY --from names what the build produced; stage the runtime's files.
root=$(mktemp -d)
child=""
cleanup() {
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then kill -KILL "$child" 2>/dev/null || true; fi
  rm -rf "$root"
}
trap cleanup EXIT
chmod 755 "$root"
for c in "${from_copies[@]}"; do
  read -r -a words <<<"${c#*|}"
  from=${words[0]#--from=}
  src=${words[1]}
  dest=${words[2]}
  wd=${workdir[$from]:-/}
  [[ $src == "$wd"/* ]] || fail "COPY --from=$from $src is outside that stage's WORKDIR $wd"
  local_src=${src#"$wd"/}
  [ -f "$local_src" ] || fail "COPY --from=$from $src: the build produced no $local_src"
  mkdir -p "$root$(dirname "$dest")"
  install -m 755 "$local_src" "$root$dest"
  chmod -R a+rX "$root"
done

# ---- 4. The runtime stage, as the image would run it.
bin=$(sed -n 's/^\["\([^"]*\)".*/\1/p' <<<"$entrypoint")
[ -n "$bin" ] || fail "ENTRYPOINT must be exec form, [\"/path\"]: $entrypoint"
[ -x "$root$bin" ] || fail "ENTRYPOINT $bin is not what the runtime stage copied in"
case ${user%%:*} in
  "" | root | 0) fail "the runtime stage must set USER to an unprivileged user, not '${user:-root}'" ;;
  nonroot) uid=65532 ;;  # distroless's nonroot user
  *[!0-9]*) fail "USER $user: use nonroot or a numeric uid so that this script can run as it" ;;
  *) uid=${user%%:*} ;;
esac
declare -A env_of=()
for kv in "${runtime_env[@]}"; do env_of[${kv%%=*}]=${kv#*=}; done
[ "${env_of[HOST]:-}" = "0.0.0.0" ] || fail "ENV HOST must be 0.0.0.0 in a container (is '${env_of[HOST]:-unset}')"
[ -n "${env_of[PORT]:-}" ] || fail "ENV PORT is not set"
[ "$expose" = "${env_of[PORT]}" ] || fail "EXPOSE $expose differs from ENV PORT=${env_of[PORT]}"

# A free port, as the platform would pass in PORT (not the image's default, to prove it is read).
# Below the kernel's ephemeral range (32768 and up by default): a port no
# one listens on may still be the local end of a connection, and binding
# it fails (a CI run once drew 47448 while other tests ran).
port=""
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 12000))
  if ! (exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$p"); then port=$p; break; fi
done
[ -n "$port" ] || fail "no free port found"

env_args=()
for k in "${!env_of[@]}"; do env_args+=("$k=${env_of[$k]}"); done
log="$root/log"
env -i "${env_args[@]}" PORT="$port" LOG_FORMAT=json \
  setpriv --reuid="$uid" --regid="$uid" --clear-groups "$root$bin" 2>"$log" &
child=$!

health=""
for _ in $(seq 200); do
  if health=$( exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$port" &&
      printf 'GET /healthz HTTP/1.1\r\nHost: image.test\r\nConnection: close\r\n\r\n' >&3 &&
      cat <&3 ); then
    break
  fi
  kill -0 "$child" 2>/dev/null || { cat "$log" >&2; fail "the binary exited at boot"; }
  sleep 0.1
done
[[ $health == "HTTP/1.1 200"* ]] || { cat "$log" >&2; fail "no 200 from /healthz on PORT=$port: $health"; }
ran_as=$(awk '/^Uid:/ { print $2 }' "/proc/$child/status")
[ "$ran_as" = "$uid" ] || fail "the binary ran as uid $ran_as, not $uid"
grep -q "\"bind\":\"0.0.0.0:$port\"" "$log" || { cat "$log" >&2; fail "the boot log does not show 0.0.0.0:$port"; }
kill -TERM "$child"
status=0
wait "$child" || status=$?
child=""
[ "$status" = 0 ] || { cat "$log" >&2; fail "exit status $status after SIGTERM"; }
say "the binary ran as uid $uid with PORT=$port, answered /healthz and exited 0 on SIGTERM"

# ---- Optional: the image itself.
[ "${1:-}" = "--image" ] || exit 0
skip() {
  if [ "${CALLSTREAM_REQUIRE_IMAGE:-0}" = 1 ]; then fail "image not built: $*"; fi
  say "image not built: $*"
  exit 0
}
builder=""
for b in docker podman buildah; do
  command -v "$b" >/dev/null || continue
  case $b in
    docker) docker info >/dev/null 2>&1 && builder=docker ;;
    *) builder=$b ;;
  esac
  [ -n "$builder" ] && break
done
[ -n "$builder" ] || skip "no working docker, podman or buildah here"
bases=$(awk 'toupper($1) == "FROM" { print $2 }' Dockerfile |
  sed "s/\${RUST_VERSION}/$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)/")
case $builder in
  docker) pull=(docker pull -q) ; build=(docker build -t callstream:check .) ;;
  podman) pull=(podman pull -q) ; build=(podman build -t callstream:check .) ;;
  buildah) pull=(buildah pull -q) ; build=(buildah bud -t callstream:check .) ;;
esac
for base in $bases; do
  "${pull[@]}" "$base" >/dev/null 2>&1 || skip "$builder cannot pull $base (no registry access?)"
done
say "building the image with $builder"
"${build[@]}"
say "image callstream:check built"
