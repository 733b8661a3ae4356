#!/usr/bin/env bash
# A throwaway one-node Ceph cluster with the RADOS Gateway (S3) on 127.0.0.1, for tests and benchmarks.
#
#   ceph-rgw.sh install              install radosgw, ceph-mon and ceph-osd from Debian if missing
#   ceph-rgw.sh start DIR [PORT]     start mon, one memstore OSD and rgw under DIR; rgw listens on PORT
#                                    (default: a free port). Prints KEY=VALUE lines (also in DIR/env):
#                                    LORRY_RGW_ENDPOINT, LORRY_RGW_ACCESS_KEY, LORRY_RGW_SECRET_KEY,
#                                    LORRY_RGW_PIDS, LORRY_RGW_START_SECONDS, and with TLS (below)
#                                    LORRY_RGW_SSL_ENDPOINT
#   ceph-rgw.sh stop DIR             end exactly the processes that `start DIR` started (DIR/pids)
#
# Runs as root, non-interactively (CI). Data lives in RAM (memstore): delete what a run uploads.
# TLS: with LORRY_RGW_SSL_CERTIFICATE and LORRY_RGW_SSL_PRIVATE_KEY (PEM files) set, rgw also listens
# with TLS on a second free port (LORRY_RGW_SSL_PORT to choose it). Server-side encryption (SSE-C, and
# SSE-KMS with the test-only key "lorry-testkey" of ceph.conf.in) is accepted on the TLS port only, as
# rgw_crypt_require_ssl is left at its default.
# Settings that matter, learnt the hard way:
#   - cephx off, and ms_mon_client_mode = crc: without it rgw waits 300 s for the mon;
#   - pool size 1 (one OSD);
#   - memstore_device_bytes raised from its 1 GiB default (LORRY_RGW_MEMSTORE_BYTES, default 8 GiB);
#   - rgw_frontends with tcp_nodelay=1: without it every small GET takes ~44 ms on loopback.
# Start takes ~1-2 s on the 2-core CI machines (with paxos_propose_interval lowered, see ceph.conf.in);
# stop under 0.1 s.
set -euo pipefail

ACCESS_KEY=${LORRY_RGW_ACCESS_KEY:-lorry-access-key}
SECRET_KEY=${LORRY_RGW_SECRET_KEY:-lorry-secret-key-0123456789}
MEMSTORE_BYTES=${LORRY_RGW_MEMSTORE_BYTES:-8589934592}
TIMEOUT=${LORRY_RGW_TIMEOUT:-120}
PACKAGES=(radosgw ceph-mon ceph-osd)

die() { echo "ceph-rgw.sh: $*" >&2; exit 1; }

install() {
    local missing=()
    for bin in radosgw radosgw-admin ceph-mon ceph-osd monmaptool ceph; do
        command -v "$bin" >/dev/null || missing+=("$bin")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run as root to install ${PACKAGES[*]}"
    echo "ceph-rgw.sh: installing ${PACKAGES[*]} (~15 s)" >&2
    export DEBIAN_FRONTEND=noninteractive
    local log
    log=$(mktemp)
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; } >"$log" 2>&1
    then
        cat "$log" >&2
        rm -f "$log"
        die "could not install ${PACKAGES[*]} with apt-get"
    fi
    rm -f "$log"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Run a daemon in the foreground of a background job, so its PID is ours and nothing else's.
launch() {
    local name=$1; shift
    "$@" -f >"$DIR/log/$name.out" 2>&1 </dev/null &
    echo $! >>"$DIR/pids"
    disown $!
}

# Running, and not a zombie waiting for whoever adopted it to reap it.
alive() { [[ -r /proc/$1/stat ]] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }

wait_for() {
    local what=$1; shift
    local deadline=$((SECONDS + TIMEOUT))
    local pid
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${TIMEOUT}s waiting for $what (logs: $DIR/log)"
        while read -r pid; do
            alive "$pid" || die "a daemon exited while waiting for $what; logs in $DIR/log:
$(tail -n 5 "$DIR"/log/*.out)"
        done <"$DIR/pids"
        sleep 0.2
    done
}

s3_answers() {
    # Any HTTP status line from rgw means the S3 frontend is serving (anonymous GET / gives 200).
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    local status
    read -r -t 5 status <&3 || { exec 3>&-; return 1; }
    exec 3>&-
    [[ $status == HTTP/1.1\ 200* ]]
}

ssl_listens() {
    exec 3<>"/dev/tcp/127.0.0.1/$SSL_PORT" || return 1
    exec 3>&-
}

osd_up() { ceph -c "$CONF" osd stat 2>/dev/null | grep -q "1 up"; }

start() {
    install
    [[ -e $DIR/pids ]] && die "$DIR/pids exists: a cluster may be running there (stop it first)"
    local started
    started=$(date +%s.%N)
    PORT=${PORT:-$(free_port)}
    local ssl_frontend=""
    SSL_PORT=""
    if [[ -n ${LORRY_RGW_SSL_CERTIFICATE:-} ]]; then
        [[ -r $LORRY_RGW_SSL_CERTIFICATE && -r ${LORRY_RGW_SSL_PRIVATE_KEY:-} ]] \
            || die "LORRY_RGW_SSL_CERTIFICATE and LORRY_RGW_SSL_PRIVATE_KEY must name readable PEM files"
        SSL_PORT=${LORRY_RGW_SSL_PORT:-$(free_port)}
        ssl_frontend=" ssl_endpoint=127.0.0.1:$SSL_PORT ssl_certificate=$LORRY_RGW_SSL_CERTIFICATE"
        ssl_frontend+=" ssl_private_key=$LORRY_RGW_SSL_PRIVATE_KEY"
    fi
    local mon_port fsid osd_uuid
    mon_port=$(free_port)
    fsid=$(cat /proc/sys/kernel/random/uuid)
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    mkdir -p "$DIR"/{log,run,mon/ceph-a,osd/ceph-0,rgw}
    : >"$DIR/pids"
    trap stop EXIT  # a start that fails part-way ends what it started
    CONF=$DIR/ceph.conf
    sed -e "s|@DIR@|$DIR|g" -e "s|@FSID@|$fsid|g" -e "s|@MON_PORT@|$mon_port|g" \
        -e "s|@PORT@|$PORT|g" -e "s|@MEMSTORE_BYTES@|$MEMSTORE_BYTES|g" -e "s|@SSL_FRONTEND@|$ssl_frontend|g" \
        "$(dirname "$0")/ceph.conf.in" >"$CONF"

    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$DIR/monmap" >/dev/null
    ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" >"$DIR/log/mkfs-mon.out" 2>&1 \
        || die "ceph-mon --mkfs failed: $(tail -5 "$DIR/log/mkfs-mon.out")"
    launch mon.a ceph-mon -c "$CONF" -i a
    wait_for "the monitor" ceph -c "$CONF" --connect-timeout 2 mon stat

    local osd_id
    osd_id=$(ceph -c "$CONF" osd new "$osd_uuid")
    [[ $osd_id == 0 ]] || die "unexpected osd id $osd_id"
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$DIR/log/mkfs-osd.out" 2>&1 \
        || die "ceph-osd --mkfs failed: $(tail -5 "$DIR/log/mkfs-osd.out")"
    launch osd.0 ceph-osd -c "$CONF" -i 0
    wait_for "the OSD" osd_up

    radosgw-admin -c "$CONF" user create --uid lorry --display-name lorry \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" >"$DIR/log/user.out" 2>&1 \
        || die "radosgw-admin user create failed: $(tail -5 "$DIR/log/user.out")"
    launch rgw radosgw -c "$CONF" -n client.rgw.lorry
    wait_for "S3 on 127.0.0.1:$PORT" s3_answers
    [[ -z $SSL_PORT ]] || wait_for "TLS on 127.0.0.1:$SSL_PORT" ssl_listens

    local seconds
    seconds=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
    {
        echo "LORRY_RGW_ENDPOINT=http://127.0.0.1:$PORT"
        echo "LORRY_RGW_ACCESS_KEY=$ACCESS_KEY"
        echo "LORRY_RGW_SECRET_KEY=$SECRET_KEY"
        echo "LORRY_RGW_PIDS=\"$(tr '\n' ' ' <"$DIR/pids" | sed 's/ $//')\""
        echo "LORRY_RGW_START_SECONDS=$seconds"
        [[ -z $SSL_PORT ]] || echo "LORRY_RGW_SSL_ENDPOINT=https://127.0.0.1:$SSL_PORT"
    } | tee "$DIR/env"
    trap - EXIT
}

stop() {
    [[ -f $DIR/pids ]] || return 0
    local pids=() pid
    while read -r pid; do
        # Only a process we started: same PID and still one of our daemons running on DIR's config.
        [[ -n $pid ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$DIR/ceph.conf" \
            && pids+=("$pid")
    done <"$DIR/pids"
    # The cluster is throwaway (its data lives in RAM), so SIGKILL: a graceful stop takes ~7 s.
    if ((${#pids[@]})); then
        kill -KILL "${pids[@]}" 2>/dev/null || true
        local deadline=$((SECONDS + 10))
        for pid in "${pids[@]}"; do
            while alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
        done
    fi
    rm -f "$DIR/pids"
}

cmd=${1:-}
case $cmd in
    install) install ;;
    start)
        [[ $# -ge 2 ]] || die "usage: $0 start DIR [PORT]"
        DIR=$(realpath -m "$2")
        PORT=${3:-}
        start
        ;;
    stop)
        [[ $# -eq 2 ]] || die "usage: $0 stop DIR"
        DIR=$(realpath -m "$2")
        stop
        ;;
    *) die "usage: $0 install | start DIR [PORT] | stop DIR" ;;
esac
