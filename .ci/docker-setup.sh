#!/usr/bin/env bash
# Set up a local Docker engine and the openenv base image on Debian bookworm.
#
#   1. install Debian's docker.io + debootstrap when dockerd is missing
#   2. start dockerd in the background when `docker info` does not answer
#   3. build the local base image openenv-base:bookworm with debootstrap
#      (rootfs tarball cached under /var/cache/openenv/ for re-imports)
#   4. build openenv-base-tools:bookworm: the base plus git and procps (the terminal env's
#      image builds from it), the .debs downloaded by the host's apt and cached there too
#
# Idempotent: every step is skipped when its result is already there.
# Needs root. No registry access needed (only the Debian mirror apt already uses).
#
# Environment overrides:
#   OPENENV_BASE_IMAGE     image tag to create       (default openenv-base:bookworm)
#   OPENENV_TOOLS_IMAGE    tools image tag           (default openenv-base-tools:bookworm)
#   OPENENV_DEBIAN_MIRROR  mirror for debootstrap    (default: taken from apt sources)
#   OPENENV_CACHE_DIR      rootfs tarball cache dir  (default /var/cache/openenv)
#   OPENENV_DOCKERD_FLAGS  extra flags for dockerd   (default none)
#   OPENENV_DOCKERD_LOG    dockerd log file          (default /tmp/dockerd.log)
#   OPENENV_DOCKER_TIMEOUT seconds to wait for the daemon (default 60)
set -euo pipefail

SUITE=bookworm
VARIANT=minbase
INCLUDE=python3,python3-venv
IMAGE=${OPENENV_BASE_IMAGE:-openenv-base:bookworm}
CACHE_DIR=${OPENENV_CACHE_DIR:-/var/cache/openenv}
DOCKERD_LOG=${OPENENV_DOCKERD_LOG:-/tmp/dockerd.log}
DOCKER_TIMEOUT=${OPENENV_DOCKER_TIMEOUT:-60}
DOCKER_SOCK=/var/run/docker.sock
# Bump RECIPE_VERSION whenever the rootfs recipe below changes: it is part of
# the cache file name and of the image label, so stale caches are not reused.
RECIPE_VERSION=1
RECIPE_ID=$(printf '%s\n' "$RECIPE_VERSION" "$SUITE" "$VARIANT" "$INCLUDE" | sha256sum | cut -c1-12)
CACHE_TAR=$CACHE_DIR/openenv-base-$SUITE-$RECIPE_ID.tar.gz

log() { printf '[docker-setup] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

# Make sure whatever `docker` CLI is on PATH (e.g. /usr/local/bin/docker, a
# newer client than Debian's /usr/bin/docker; it negotiates the API version
# down) talks to the local daemon we manage, not some other context/host.
export DOCKER_HOST="unix://$DOCKER_SOCK"
unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH || true

# ---------------------------------------------------------------------------
# 1. packages
# ---------------------------------------------------------------------------
need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing ${need_pkgs[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
else
    log "dockerd and debootstrap already installed"
fi
command -v docker >/dev/null 2>&1 || die "no docker CLI on PATH after install"

# ---------------------------------------------------------------------------
# 2. daemon
# ---------------------------------------------------------------------------
docker_up() { timeout 10 docker info >/dev/null 2>&1; }

dockerd_pid() {
    local pid
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

# wait_docker PID: wait until the daemon answers; fail early if PID dies.
wait_docker() {
    local pid=$1 i
    for ((i = 0; i < DOCKER_TIMEOUT; i++)); do
        docker_up && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && [ -z "$(dockerd_pid)" ]; then
            return 1
        fi
        sleep 1
    done
    return 1
}

start_dockerd() {
    # setsid: own session/process group, so it survives the caller's job
    # control / CI step teardown. stdin from /dev/null so nohup is quiet.
    log "starting: dockerd $* (log: $DOCKERD_LOG)"
    setsid nohup dockerd "$@" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    echo $!
}

if docker_up; then
    log "docker daemon already answering on $DOCKER_SOCK"
else
    pid=$(dockerd_pid)
    if [ -n "$pid" ]; then
        # A daemon is already starting (or hung): do not start a second one.
        log "dockerd (pid $pid) running but not answering yet; waiting up to ${DOCKER_TIMEOUT}s"
        wait_docker "$pid" || die "dockerd pid $pid does not answer; see $DOCKERD_LOG"
    else
        # shellcheck disable=SC2206  # intentional word splitting of extra flags
        extra=(${OPENENV_DOCKERD_FLAGS:-})
        pid=$(start_dockerd -H "unix://$DOCKER_SOCK" "${extra[@]}")
        if ! wait_docker "$pid"; then
            log "dockerd did not come up with default flags; last log lines:"
            tail -n 15 "$DOCKERD_LOG" >&2 || true
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            # Fallback for restricted sandboxes: no overlayfs / no netfilter.
            # (Containers can still use --network none; bridge networking
            # without iptables has no NAT.)
            log "retrying with fallback flags: --storage-driver=vfs --iptables=false --ip6tables=false"
            pid=$(start_dockerd -H "unix://$DOCKER_SOCK" --storage-driver=vfs \
                --iptables=false --ip6tables=false "${extra[@]}")
            wait_docker "$pid" || {
                tail -n 30 "$DOCKERD_LOG" >&2 || true
                die "dockerd failed to start; see $DOCKERD_LOG"
            }
        fi
        log "dockerd up (pid $pid, storage driver: $(docker info --format '{{.Driver}}' 2>/dev/null))"
    fi
fi

# ---------------------------------------------------------------------------
# 3. base image
# ---------------------------------------------------------------------------

# Mirror used by this machine's apt for the plain suite (not -security).
detect_mirror() {
    local f uri
    # one-line format: deb [opts] URI SUITE COMPONENTS...
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk -v s="$SUITE" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == s) { print $i; exit }
            }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    # deb822 format: stanzas with URIs: / Suites:
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(awk -v s="$SUITE" '
            function flush() {
                if (uris != "" && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " s " ")) {
                    split(uris, u, " "); print u[1]; found = 1
                }
                uris = ""; suites = ""; types = ""
            }
            /^[ \t]*$/ { flush(); if (found) exit; next }
            /^[ \t]*#/ { next }
            tolower($1) == "uris:"   { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
            tolower($1) == "suites:" { $1 = ""; suites = $0; sub(/^ +/, "", suites) }
            tolower($1) == "types:"  { $1 = ""; types = $0; sub(/^ +/, "", types) }
            END { if (!found) flush() }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    echo http://deb.debian.org/debian
}

import_tar() {
    log "importing $1 as $IMAGE"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --change "LABEL org.openenv.base.recipe=$RECIPE_ID" \
        - "$IMAGE" <"$1" >/dev/null
}

make_base() {
    if [ -s "$CACHE_TAR" ]; then
        t0=$SECONDS
        import_tar "$CACHE_TAR"
        log "re-imported from cache in $((SECONDS - t0))s"
        return 0
    fi

    MIRROR=${OPENENV_DEBIAN_MIRROR:-$(detect_mirror)}
    MIRROR=${MIRROR%/}
    # /var/tmp rather than /tmp: /tmp may be a noexec/nodev tmpfs.
    ROOTFS=$(mktemp -d /var/tmp/openenv-rootfs.XXXXXX)
    cleanup() {
        # debootstrap mounts proc/sys inside the target; if it was interrupted
        # they may still be mounted: unmount before deleting (never follow them).
        local m
        for m in $(awk -v r="$ROOTFS" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
            umount -l "$m" 2>/dev/null || true
        done
        rm -rf --one-file-system "$ROOTFS"
        rm -f "$CACHE_TAR.tmp"
    }
    trap cleanup RETURN

    log "debootstrap --variant=$VARIANT --include=$INCLUDE $SUITE $ROOTFS $MIRROR (takes ~1 min)"
    t0=$SECONDS
    if ! debootstrap --variant="$VARIANT" --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" \
        >"$ROOTFS.log" 2>&1; then
        tail -n 30 "$ROOTFS.log" >&2 || true
        log "full log: $ROOTFS.log"
        die "debootstrap failed"
    fi
    rm -f "$ROOTFS.log"
    log "debootstrap done in $((SECONDS - t0))s"

    # Trim: apt caches/lists (derived images run apt-get update anyway), docs,
    # host-specific files copied by debootstrap, device nodes (docker provides /dev).
    (
        cd "$ROOTFS"
        rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* \
            usr/share/man/* usr/share/info/* var/log/*.log var/log/apt/* \
            dev/* etc/resolv.conf etc/hostname
        find usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
        find usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
        touch etc/resolv.conf etc/hostname
        {
            echo "deb $MIRROR $SUITE main"
            echo "deb $MIRROR $SUITE-updates main"
        } >etc/apt/sources.list
    )

    mkdir -p "$CACHE_DIR"
    t0=$SECONDS
    tar -C "$ROOTFS" --numeric-owner -c . | gzip -1 >"$CACHE_TAR.tmp"
    mv -f "$CACHE_TAR.tmp" "$CACHE_TAR"
    log "cached rootfs: $CACHE_TAR ($(du -h "$CACHE_TAR" | cut -f1)) in $((SECONDS - t0))s"

    t0=$SECONDS
    import_tar "$CACHE_TAR"
    log "import done in $((SECONDS - t0))s; $IMAGE size: $(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "image $IMAGE already present"
else
    make_base
fi

# ---------------------------------------------------------------------------
# 4. tools image: the base plus Debian packages some env images need (the terminal env's git)
# ---------------------------------------------------------------------------
# `docker build` of an env image runs with no network, so Debian packages are added here, to
# an image of their own: the host's apt downloads them (and what they need that the base lacks,
# resolved against the base's own dpkg status), a throw-away container of the base installs them
# with no network, and `docker commit` keeps the result as one layer.
TOOLS_IMAGE=${OPENENV_TOOLS_IMAGE:-openenv-base-tools:bookworm}
TOOLS_PACKAGES="git procps"
TOOLS_ID=$(printf '%s\n' "$RECIPE_ID" "$TOOLS_PACKAGES" | sha256sum | cut -c1-12)

make_tools() {
    local debs=$CACHE_DIR/tools-debs-$TOOLS_ID status container
    mkdir -p "$debs/partial"
    status=$(mktemp)
    docker run --rm --network none "$IMAGE" cat /var/lib/dpkg/status >"$status"
    [ -n "$(ls /var/lib/apt/lists/*Packages* 2>/dev/null)" ] || apt-get update -qq
    log "downloading $TOOLS_PACKAGES (and what the base lacks for them) with apt-get"
    # shellcheck disable=SC2086  # the package list is split on purpose
    apt-get install --download-only --no-install-recommends -y -qq \
        -o Dir::State::status="$status" -o Dir::Cache::archives="$debs" $TOOLS_PACKAGES >/dev/null
    rm -f "$status"
    container=$(docker create --network none --user 0:0 -v "$debs:/debs:ro" "$IMAGE" \
        sh -c 'dpkg -i /debs/*.deb >/dev/null && rm -rf /var/log/dpkg.log /var/cache/debconf/*-old')
    if ! docker start -a "$container" >&2; then
        docker rm -f "$container" >/dev/null
        die "installing $TOOLS_PACKAGES into $TOOLS_IMAGE failed"
    fi
    docker commit --change 'CMD ["/bin/bash"]' --change "LABEL org.openenv.tools=$TOOLS_ID" \
        "$container" "$TOOLS_IMAGE" >/dev/null
    docker rm "$container" >/dev/null
    log "$TOOLS_IMAGE made ($TOOLS_PACKAGES)"
}

if [ "$(docker image inspect --format '{{ index .Config.Labels "org.openenv.tools" }}' \
    "$TOOLS_IMAGE" 2>/dev/null)" = "$TOOLS_ID" ]; then
    log "image $TOOLS_IMAGE already present"
else
    make_tools
fi
