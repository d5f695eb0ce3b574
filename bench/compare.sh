#!/usr/bin/env bash
# Compares a signed-in request through wxgate with the same request proxied by nginx
# (no authentication) and sent straight to the upstream.
#
#   bench/compare.sh                 # 3 rounds of 5 s per cell (about 7 minutes)
#   bench/compare.sh --long          # 5 rounds of 20 s per cell
#   bench/compare.sh --rounds N --duration S --no-build --only memory,nginx
#       (--no-memory skips the start-up and sessions-per-MB figures at the end)
#   WXGATE_ENV="RUST_LOG=warn" bench/compare.sh   # extra environment for wxgate (experiments)
#   WXGATE=/path/to/wxgate bench/compare.sh --no-build   # another build
#   BEFORE=/path/to/old/wxgate bench/compare.sh   # adds "before": that build, memory store
#   BEFORE_STORE=redis BEFORE=... bench/compare.sh --only redis   # that build on Redis
#   BEFORE_SERVER='access_log = "line"' BEFORE=target/release/wxgate ...   # [server]
#       lines for the before instance: one build against itself with a setting changed
#
# Scenarios, each at 16 and 128 keep-alive connections, one after another in every
# round (so drift on a shared machine hits them all alike), each round starting one
# scenario further along (so none always follows the same one); the table shows medians:
#   direct     wrk -> upstream
#   nginx      wrk -> nginx proxy_pass (keep-alive upstream pool, no auth) -> upstream
#   memory     wrk -> wxgate, signed in, memory session store -> upstream
#   cookie     the same, cookie session store
#   redis      the same, Redis session store (a private redis-server on a free port)
#   public     wxgate, memory instance, a path in access.public_paths: proxied with
#              no session check and no identity header (what the HTTP path costs
#              without sign-in; the difference to "memory" is the sign-in's cost)
#   routes     wxgate, memory store, signed in, with 50 [[routes]] (by host and by path)
#              and the request taking the last one: against "memory", what choosing a
#              route costs (examples/route_match.rs measures the lookup alone)
#   302        wxgate, no session: a WeChat browser navigation answered with the
#              302 to WeChat's authorize URL (never reaches the upstream)
#   qr         wxgate, no session: a desktop browser's navigation answered with the
#              QR sign-in page (a new ticket, its QR code drawn; its own instance,
#              tickets living 10 s, so the other rows' memory is not affected)
#   jssdk      wxgate with [account]: GET /_wxgate/jssdk/config?url=... answered with
#              a JS-SDK signature (the shared jsapi_ticket, a nonce, SHA-1; its own
#              instance, memory store; never reaches the upstream)
#   hub        wxgate with [[hub.clients]]: an app's sign-in through the hub, half the
#              requests each: the signed-in browser's /_wxgate/oidc/authorize (302 with
#              a code) and the app's /_wxgate/oidc/token redeeming it (an id_token);
#              its own instance, memory store; never reaches the upstream
#   oauth2-proxy  oauth2-proxy v7.15.6 (built with `go install` when missing), signed
#              in through examples/bench_oidc (a minimal OIDC provider of the bench's
#              own), cookie session store, its request log on (stdout, to a file):
#              another authenticating proxy doing the same job, side by side
#
#   --p99      the tail view: 16 connections only, 7 rounds unless --rounds says
#              otherwise, rows nginx,memory,public unless --only says otherwise; prints
#              p50 / p99 / p99.9 of every round and their medians, and p99 over nginx's
#
# Each row is a pair of functions below: setup_NAME starts what the row needs (or
# fails, and the row is dropped) and cell_NAME CONNS measures one cell with run_cell.
# A new row is those two functions and its name in ROWS.
#
# The upstream is nginx answering every request with the same 1 KB body. Sessions are
# real: the script signs in against `wxgate mock-wechat` with curl (authorize page,
# consent POST, callback) and replays the session cookie.
#
# Fairness: nginx logs every request to a file (`access_log` with the default
# `combined` format, unbuffered: one write per request); wxgate runs with its default
# logging (info, one JSON line per request on stderr, written in batches: the default
# server.access_log = "buffered") redirected to a file; oauth2-proxy writes its
# request log (on by default) to a file too. The proxies get one worker
# thread/process per core (wxgate's server.workers default; GOMAXPROCS).
# The upstream has `access_log off`.
#
# Columns: requests/s; p50/p99 latency from wrk (p99.9 too, in --p99); proxy CPU µs
# per request (user+sys of the proxy's processes from /proc/PID/stat, before/after, over requests served);
# "upconn": new TCP connections the upstream accepted during the cell (connection
# reuse: should stay at the pool size, not grow with requests); peak RSS (VmHWM,
# reset before each cell, summed over the proxy's processes). For redis the
# redis-server's CPU per request is shown too.
set -euo pipefail

ROWS="direct,nginx,memory,cookie,redis,public,routes,302,qr,jssdk,hub,oauth2-proxy"
ROUNDS=""
DURATION=5
BUILD=1
MEMORY=1
ONLY=""
CONNS="16 128"
P99=0
while [ $# -gt 0 ]; do
    case "$1" in
    --long) ROUNDS=5; DURATION=20 ;;
    --rounds) ROUNDS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --no-build) BUILD=0 ;;
    --no-memory) MEMORY=0 ;;
    --only) ONLY="$2"; shift ;;
    --conns) CONNS="$2"; shift ;;
    --p99) P99=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$P99" = 1 ]; then
    CONNS=16
    MEMORY=0
    ONLY="${ONLY:-nginx,memory,public}"
    ROUNDS="${ROUNDS:-7}"
fi
ONLY="${ONLY:-$ROWS}"
ROUNDS="${ROUNDS:-3}"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CORES="$(nproc)"
TICK="$(getconf CLK_TCK)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/wxgate-bench.XXXXXX")"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "[bench] $*" >&2; }

# ------------------------------------------------------------------ prerequisites

need() { # need PROGRAM DEBIAN_PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    [ -x "/usr/sbin/$1" ] && return 0
    log "$1 not found: installing $2"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && $sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need wrk wrk
need nginx nginx
need redis-server redis-server
need curl curl
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

if [ "$BUILD" = 1 ]; then
    log "building wxgate (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin wxgate --example sessions_memory --example bench_oidc)
fi
WXGATE="${WXGATE:-$ROOT/target/release/wxgate}"
[ -x "$WXGATE" ] || { echo "no $WXGATE (run without --no-build)" >&2; exit 1; }
BENCH_OIDC="$ROOT/target/release/examples/bench_oidc"

O2P_VERSION="v7.15.6"
OAUTH2_PROXY="${OAUTH2_PROXY:-$(command -v oauth2-proxy || echo "$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin/oauth2-proxy")}"

# ------------------------------------------------------------------ helpers

# A port nobody listens on, below the kernel's ephemeral range (wrk's thousands of
# client sockets take ports from that range). Another program could still take it
# before we bind it; on a benchmark machine that does not happen.
EPHEMERAL_LOW="$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
free_port() {
    local p
    while :; do
        p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

try_http() { # try_http URL [PID]: until it answers at all (at most 10 s, or until PID exits)
    for _ in $(seq 1 200); do
        [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null && return 1
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.05
    done
    return 1
}

wait_http() { try_http "$1" || { echo "nothing answers at $1" >&2; exit 1; }; }

# Every pid of a process group leader (nginx master + workers) or the process itself.
group_pids() { pgrep -g "$1" 2>/dev/null || echo "$1"; }

cpu_ticks() { # user+sys ticks of the given pids
    local t=0 pid f
    for pid in "$@"; do
        # The command name (field 2) may contain spaces: cut after its closing paren.
        f="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null)" || continue
        set -- $f
        t=$((t + ${12} + ${13}))
    done
    echo "$t"
}

reset_hwm() { for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; done; }

hwm_kb() {
    local t=0 pid v
    for pid in "$@"; do
        v="$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

# ------------------------------------------------------------------ the upstream

UP_PORT="$(free_port)"
STATUS_PORT="$(free_port)"
BODY="$(head -c 1024 /dev/zero | tr '\0' 'x')"
mkdir -p "$WORK/upstream"
cat >"$WORK/upstream/nginx.conf" <<EOF
worker_processes $CORES;
daemon off;
pid $WORK/upstream/nginx.pid;
error_log $WORK/upstream/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        location / { default_type text/plain; return 200 "$BODY"; }
    }
    server {
        listen 127.0.0.1:$STATUS_PORT;
        location / { stub_status; }
    }
}
EOF
setsid "$NGINX" -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/"

upstream_accepts() {
    curl -s "http://127.0.0.1:$STATUS_PORT/" | awk '/^ *[0-9]+ +[0-9]+ +[0-9]+/ {print $1; exit}'
}

# ------------------------------------------------------------------ nginx proxy

NGX_PORT="$(free_port)"
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes $CORES;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log $WORK/nginx/access.log combined;
    keepalive_requests 1000000;
    upstream app { server 127.0.0.1:$UP_PORT; keepalive 256; }
    server {
        listen 127.0.0.1:$NGX_PORT reuseport backlog=4096;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
}
EOF
NGX_PID=""

# ------------------------------------------------------------------ mock WeChat + wxgate

MOCK_PORT="$(free_port)"
"$WXGATE" mock-wechat --listen "127.0.0.1:$MOCK_PORT" >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$MOCK_PORT/"
MOCK_APPID="$(sed -n 's/.*(appid \([^,]*\), secret \([^)]*\)).*/\1/p' "$WORK/mock.log" | head -1)"
MOCK_SECRET="$(sed -n 's/.*(appid \([^,]*\), secret \([^)]*\)).*/\2/p' "$WORK/mock.log" | head -1)"
SECRET="bench-session-secret-0123456789abcdefghijklmnopqrstuvwxyz"
UA_WECHAT="Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Mobile MicroMessenger/8.0.49"
UA_DESKTOP="Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"

declare -A WX_PORT WX_PID COOKIE

start_wxgate() { # start_wxgate KEY STORE [extra session toml lines] [binary]
    local key="$1" store="$2" extra="${3:-}" bin="${4:-$WXGATE}" port admin dir
    port="$(free_port)"
    admin="$(free_port)"
    dir="$WORK/wxgate-$key"
    mkdir -p "$dir"
    local server_extra=""
    [ "$key" = before ] && server_extra="${BEFORE_SERVER:-}"
    cat >"$dir/wxgate.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
public_url = "http://127.0.0.1:$port"
$server_extra
[admin]
listen = "127.0.0.1:$admin"
[upstream]
url = "http://127.0.0.1:$UP_PORT"
[wechat]
appid = "$MOCK_APPID"
secret = "$MOCK_SECRET"
scope = "snsapi_userinfo"
authorize_url = "http://127.0.0.1:$MOCK_PORT/connect/oauth2/authorize"
qrconnect_url = "http://127.0.0.1:$MOCK_PORT/connect/qrconnect"
api_base_url = "http://127.0.0.1:$MOCK_PORT"
[access]
public_paths = ["/public/*"]
[session]
store = "$store"
secret = "$SECRET"
$extra
EOF
    # Default logging (info, JSON because stderr is not a terminal), kept in a file.
    setsid env -u RUST_LOG ${WXGATE_ENV:-} "$bin" serve -c "$dir/wxgate.toml" 2>"$dir/wxgate.log" >/dev/null &
    WX_PID[$key]=$!
    PIDS+=("${WX_PID[$key]}")
    WX_PORT[$key]="$port"
    if try_http "http://127.0.0.1:$admin/readyz" "${WX_PID[$key]}"; then
        COOKIE[$key]="$(sign_in "$port")"
    fi
    if [ -z "${COOKIE[$key]:-}" ]; then
        log "SKIPPED: wxgate $key ($store store) did not start or sign in; its log:"
        tail -3 "$dir/wxgate.log" >&2
        return 1
    fi
}

# Walks the sign-in as WeChat's browser would: wxgate's 302 to authorize, the
# consent page, the consent POST, the callback; prints the session cookie pair.
sign_in() {
    local port="$1" jar loc query consent callback
    jar="$(mktemp "$WORK/jar.XXXXXX")"
    loc="$(curl -s -o /dev/null -w '%{redirect_url}' -A "$UA_WECHAT" -H 'Accept: text/html' -c "$jar" -b "$jar" "http://127.0.0.1:$port/bench")"
    loc="${loc%%#*}"
    query="${loc#*\?}"
    curl -s -o /dev/null -A "$UA_WECHAT" "$loc"
    callback="$(curl -s -o /dev/null -w '%{redirect_url}' -A "$UA_WECHAT" \
        --data "$query&user=alice&action=allow" "http://127.0.0.1:$MOCK_PORT/connect/oauth2/consent")"
    curl -s -o /dev/null -A "$UA_WECHAT" -c "$jar" -b "$jar" "$callback"
    consent="$(awk '$6 == "_wxgate" {print $6 "=" $7}' "$jar")"
    # The cookie must let a request through to the upstream's 1 KB body.
    if [ "$(curl -s -o /dev/null -w '%{http_code}:%{size_download}' -H "Cookie: $consent" "http://127.0.0.1:$port/bench")" = "200:1024" ]; then
        echo "$consent"
    fi
}

# ------------------------------------------------------------------ one cell

# run_cell NAME CONNS URL PIDS-VAR [wrk args...]: appends one result line to $WORK/results
run_cell() {
    local name="$1" conns="$2" url="$3" pids_csv="$4"
    shift 4
    local pids=() aux=() out t0 t1 a0 a1 r0 r1 reqs rps p50 p99 p999 cpu auxcpu hwm
    [ -n "$pids_csv" ] && IFS=, read -r -a pids <<<"$pids_csv"
    if [ "$name" = redis ] || [ "$name/${BEFORE_STORE:-}" = before/redis ]; then aux=("$REDIS_PID"); fi
    reset_hwm "${pids[@]}"
    a0="$(upstream_accepts)"
    t0="$(cpu_ticks "${pids[@]}")"
    r0="$(cpu_ticks "${aux[@]}")"
    out="$(wrk -t "$CORES" -c "$conns" -d "${DURATION}s" --latency -s "$WORK/tail.lua" "$@" "$url")"
    t1="$(cpu_ticks "${pids[@]}")"
    r1="$(cpu_ticks "${aux[@]}")"
    a1="$(upstream_accepts)"
    hwm="$(hwm_kb "${pids[@]}")"
    reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
    rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
    if grep -q 'Non-2xx' <<<"$out" && [ "$name" != 302 ]; then
        log "$name/$conns: $(grep 'Non-2xx' <<<"$out")"
    fi
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out" | to_ms)"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out" | to_ms)"
    p999="$(awk '$1 == "p99.9_us" {printf "%.3f", $2 / 1000}' <<<"$out")"
    cpu="$(awk -v d=$((t1 - t0)) -v n="$reqs" -v tick="$TICK" 'BEGIN {printf "%.1f", (n > 0 ? d * 1e6 / tick / n : 0)}')"
    auxcpu="$(awk -v d=$((r1 - r0)) -v n="$reqs" -v tick="$TICK" 'BEGIN {printf "%.1f", (n > 0 ? d * 1e6 / tick / n : 0)}')"
    echo "$name $conns $rps $p50 $p99 $cpu $((a1 - a0 - 1)) $hwm $auxcpu ${p999:-0} $round" >>"$WORK/results"
    log "$(printf '%-7s c=%-4s %10s req/s  p50 %7s ms  p99 %7s ms  p99.9 %7s ms  cpu %6s us/req  upconn %s' "$name" "$conns" "$rps" "$p50" "$p99" "${p999:-?}" "$cpu" "$((a1 - a0 - 1))")"
}

# wrk prints p50..p99; the tail view wants p99.9 too (microseconds).
cat >"$WORK/tail.lua" <<'EOF'
done = function(summary, latency, requests)
    io.write(string.format("p99.9_us %d\n", latency:percentile(99.9)))
end
EOF

to_ms() { # wrk's "1.23ms" / "456.00us" / "1.02s" -> milliseconds
    awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000} printf "%.3f", v}'
}

# ------------------------------------------------------------------ rows

drop() { # drop ROW...: removes rows from ONLY
    for d in "$@"; do ONLY="$(echo ",$ONLY," | sed "s/,$d,/,/; s/^,//; s/,\$//")"; done
}

# One wxgate instance per key, started on first use (the memory instance serves the
# memory, public and 302 rows).
ensure_wxgate() { # ensure_wxgate KEY STORE [extra toml] [binary]
    [ -n "${WX_PID[$1]:-}" ] && return 0
    [ -n "${WX_FAILED[$1]:-}" ] && return 1
    if start_wxgate "$@"; then
        log "wxgate $1 ($2 store) on :${WX_PORT[$1]}, signed in"
    else
        WX_FAILED[$1]=1
        return 1
    fi
}
declare -A WX_FAILED

REDIS_PID=""

setup_direct() { :; }
cell_direct() { run_cell direct "$1" "http://127.0.0.1:$UP_PORT/bench" ""; }

setup_nginx() {
    setsid "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
    NGX_PID=$!
    PIDS+=("$NGX_PID")
    wait_http "http://127.0.0.1:$NGX_PORT/"
}
cell_nginx() { run_cell nginx "$1" "http://127.0.0.1:$NGX_PORT/bench" "$(group_pids "$NGX_PID" | paste -sd,)"; }

signed_in_cell() { # signed_in_cell KEY CONNS: a signed-in GET through that instance
    run_cell "$1" "$2" "http://127.0.0.1:${WX_PORT[$1]}/bench" "${WX_PID[$1]}" -H "Cookie: ${COOKIE[$1]}"
}

setup_memory() { ensure_wxgate memory memory; }
cell_memory() { signed_in_cell memory "$1"; }

setup_cookie() { ensure_wxgate cookie cookie; }
cell_cookie() { signed_in_cell cookie "$1"; }

setup_redis() {
    RPORT="$(free_port)"
    redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$WORK" --logfile "$WORK/redis.log" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$RPORT") 2>/dev/null && break; sleep 0.05; done
    ensure_wxgate redis redis "redis_url = \"redis://127.0.0.1:$RPORT/0\""
}
cell_redis() { signed_in_cell redis "$1"; }

setup_public() { ensure_wxgate memory memory; }
cell_public() { run_cell public "$1" "http://127.0.0.1:${WX_PORT[memory]}/public/bench" "${WX_PID[memory]}"; }

setup_302() { ensure_wxgate memory memory; }
cell_302() {
    run_cell 302 "$1" "http://127.0.0.1:${WX_PORT[memory]}/bench" "${WX_PID[memory]}" \
        -H "User-Agent: $UA_WECHAT" -H "Accept: text/html"
}

setup_qr() { ensure_wxgate qr memory $'[desktop]\nticket_ttl = "10s"\nmax_tickets = 10000000'; }
cell_qr() {
    run_cell qr "$1" "http://127.0.0.1:${WX_PORT[qr]}/bench" "${WX_PID[qr]}" \
        -H "User-Agent: $UA_DESKTOP" -H "Accept: text/html"
}

setup_jssdk() { ensure_wxgate jssdk memory $'[account]'; }
cell_jssdk() {
    run_cell jssdk "$1" \
        "http://127.0.0.1:${WX_PORT[jssdk]}/_wxgate/jssdk/config?url=http%3A%2F%2F127.0.0.1%3A${WX_PORT[jssdk]}%2Fshop%3Fid%3D7" \
        "${WX_PID[jssdk]}"
}

# Another build (BEFORE=), in the same rounds: before/after figures that share the
# machine's conditions. Memory store, or Redis with BEFORE_STORE=redis (with the redis
# row, whose redis-server it shares).
setup_before() {
    if [ "${BEFORE_STORE:-memory}" = redis ]; then
        [ -n "$REDIS_PID" ] || { log "SKIPPED: before (BEFORE_STORE=redis needs the redis row)"; return 1; }
        ensure_wxgate before redis "redis_url = \"redis://127.0.0.1:$RPORT/0\"" "$BEFORE"
    else
        ensure_wxgate before memory "" "$BEFORE"
    fi
}
cell_before() { signed_in_cell before "$1"; }

# oauth2-proxy in front of the same upstream, signed in through bench_oidc.
O2P_PID=""
O2P_PORT=""
O2P_COOKIE=""
setup_oauth2_proxy() {
    if [ ! -x "$OAUTH2_PROXY" ]; then
        if command -v go >/dev/null 2>&1; then
            log "oauth2-proxy not found: go install github.com/oauth2-proxy/oauth2-proxy/v7@$O2P_VERSION (a few minutes)"
            go install "github.com/oauth2-proxy/oauth2-proxy/v7@$O2P_VERSION" >&2 || true
            OAUTH2_PROXY="$(go env GOPATH)/bin/oauth2-proxy"
        fi
        [ -x "$OAUTH2_PROXY" ] || { log "SKIPPED: oauth2-proxy (no binary, no go)"; return 1; }
    fi
    if [ ! -x "$BENCH_OIDC" ]; then
        (cd "$ROOT" && cargo build --release --quiet --example bench_oidc)
    fi
    local oidc_port dir jar code
    oidc_port="$(free_port)"
    O2P_PORT="$(free_port)"
    dir="$WORK/oauth2-proxy"
    mkdir -p "$dir"
    "$BENCH_OIDC" "127.0.0.1:$oidc_port" >"$dir/oidc.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$oidc_port/.well-known/openid-configuration"
    # Its defaults otherwise (cookie session store, request, auth and standard logs on
    # stdout, kept in a file as wxgate's are); GOMAXPROCS is the core count.
    setsid "$OAUTH2_PROXY" \
        --http-address "127.0.0.1:$O2P_PORT" \
        --upstream "http://127.0.0.1:$UP_PORT/" \
        --provider oidc \
        --oidc-issuer-url "http://127.0.0.1:$oidc_port" \
        --oidc-enabled-signing-alg ES256 \
        --client-id bench --client-secret bench-secret \
        --redirect-url "http://127.0.0.1:$O2P_PORT/oauth2/callback" \
        --cookie-secret "0123456789abcdef0123456789abcdef" \
        --cookie-secure=false \
        --email-domain '*' \
        --skip-provider-button >"$dir/oauth2-proxy.log" 2>&1 &
    O2P_PID=$!
    PIDS+=("$O2P_PID")
    try_http "http://127.0.0.1:$O2P_PORT/ping" "$O2P_PID" || {
        log "SKIPPED: oauth2-proxy did not start; its log:"
        tail -3 "$dir/oauth2-proxy.log" >&2
        return 1
    }
    # The browser's walk: 302 to the provider, its 302 back, the callback.
    jar="$WORK/oauth2-proxy/jar"
    curl -s -o /dev/null -L -c "$jar" -b "$jar" "http://127.0.0.1:$O2P_PORT/bench"
    O2P_COOKIE="$(awk '$6 ~ /^_oauth2_proxy/ {printf "%s%s=%s", sep, $6, $7; sep="; "}' "$jar")"
    code="$(curl -s -o /dev/null -w '%{http_code}:%{size_download}' -H "Cookie: $O2P_COOKIE" "http://127.0.0.1:$O2P_PORT/bench")"
    if [ "$code" != "200:1024" ]; then
        log "SKIPPED: oauth2-proxy did not sign in ($code); its log:"
        tail -3 "$dir/oauth2-proxy.log" >&2
        return 1
    fi
    log "oauth2-proxy $O2P_VERSION on :$O2P_PORT, signed in"
}
cell_oauth2_proxy() { run_cell oauth2-proxy "$1" "http://127.0.0.1:$O2P_PORT/bench" "$O2P_PID" -H "Cookie: $O2P_COOKIE"; }

# 49 routes the request does not take (by the public host and by path), then its own.
setup_routes() {
    local routes="" i
    for i in $(seq 0 23); do
        routes+=$'\n[[routes]]\nhost = "127.0.0.1"\npath = "/app'"$i"$'/*"\nupstream = "http://127.0.0.1:'"$UP_PORT"'"'
    done
    for i in $(seq 0 24); do
        routes+=$'\n[[routes]]\npath = "/svc'"$i"$'/*"\nupstream = "http://127.0.0.1:'"$UP_PORT"'"'
    done
    routes+=$'\n[[routes]]\npath = "/bench"\nupstream = "http://127.0.0.1:'"$UP_PORT"'"'
    ensure_wxgate routes memory "$routes"
}
cell_routes() { signed_in_cell routes "$1"; }

# The hub's two endpoints an app's sign-in costs it, half the requests each: the
# signed-in browser's authorize (302 to the app with a fresh code) and the app's token
# request redeeming that code (PKCE, client_secret_post; id_token signed). The script
# keeps each thread's codes in a queue: a code is redeemed once, by a later request.
HUB_SECRET="bench-hub-client-secret-0123456789abcdef"
HUB_VERIFIER="bench-verifier-of-forty-three-characters-or-more-0123"
HUB_CB="http%3A%2F%2F127.0.0.1%3A1%2Fcb"
setup_hub() {
    ensure_wxgate hub memory $'[[hub.clients]]\nclient_id = "bench"\nclient_secret = "'"$HUB_SECRET"$'"\nredirect_uris = ["http://127.0.0.1:1/cb"]\nscope = "snsapi_userinfo"' || return 1
    local challenge authorize token loc code answer
    challenge="$(printf %s "$HUB_VERIFIER" | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '=\n')"
    authorize="/_wxgate/oidc/authorize?response_type=code&client_id=bench&redirect_uri=$HUB_CB&scope=openid&state=s&nonce=n&code_challenge=$challenge&code_challenge_method=S256"
    token="redirect_uri=$HUB_CB&code_verifier=$HUB_VERIFIER&client_id=bench&client_secret=$HUB_SECRET&grant_type=authorization_code"
    cat >"$WORK/hub.lua" <<LUA
local codes = {}
request = function()
    local code = table.remove(codes)
    if code then
        return wrk.format("POST", "/_wxgate/oidc/token",
            {["Content-Type"] = "application/x-www-form-urlencoded"},
            "$token&code=" .. code)
    end
    return wrk.format("GET", "$authorize", {["Cookie"] = "${COOKIE[hub]}", ["Accept"] = "text/html"})
end
response = function(status, headers, body)
    local location = headers["location"] or headers["Location"]
    if location then
        local code = location:match("[?&]code=([^&]+)")
        if code then table.insert(codes, code) end
    end
end
done = function(summary, latency, requests)
    io.write(string.format("p99.9_us %d\n", latency:percentile(99.9)))
end
LUA
    # One pair by hand: the authorize answers with a code and the token endpoint
    # redeems it, or the row would not measure what it says.
    loc="$(curl -s -o /dev/null -w '%{redirect_url}' -H "Cookie: ${COOKIE[hub]}" "http://127.0.0.1:${WX_PORT[hub]}$authorize")"
    code="$(sed -n 's/.*[?&]code=\([^&]*\).*/\1/p' <<<"$loc")"
    answer="$(curl -s --data "$token&code=$code" "http://127.0.0.1:${WX_PORT[hub]}/_wxgate/oidc/token")"
    if ! grep -q '"id_token"' <<<"$answer"; then
        log "SKIPPED: hub: no id_token for a code (authorize -> $loc; token -> $answer)"
        return 1
    fi
}
cell_hub() {
    # Half the answers are the authorize's 302s; the token answers are 200s.
    run_cell hub "$1" "http://127.0.0.1:${WX_PORT[hub]}/" "${WX_PID[hub]}" -s "$WORK/hub.lua"
}

# ------------------------------------------------------------------ start everything

[ -n "${BEFORE:-}" ] && ONLY="$ONLY,before"
for row in ${ONLY//,/ }; do
    "setup_${row//-/_}" || drop "$row"
done

# ------------------------------------------------------------------ rounds

: >"$WORK/results"
read -ra SCENARIOS <<<"${ONLY//,/ }"
for round in $(seq 1 "$ROUNDS"); do
    log "round $round/$ROUNDS (${DURATION}s per cell)"
    # Each round starts one scenario further along: a cell's place in the round (e.g.
    # right after nginx's) moved its figures by about 1.5 µs/request, so no scenario
    # keeps the same place in every round.
    shift_by=$(((round - 1) % ${#SCENARIOS[@]}))
    order=("${SCENARIOS[@]:shift_by}" "${SCENARIOS[@]:0:shift_by}")
    for c in $CONNS; do
        for sc in "${order[@]}"; do
            "cell_${sc//-/_}" "$c"
        done
    done
done

# ------------------------------------------------------------------ table

echo
echo "wxgate benchmark: $(uname -srm), $CORES cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)),"
echo "$ROUNDS rounds x ${DURATION}s per cell, wrk -t$CORES, 1 KB upstream body; medians"
echo
awk -v conns="$CONNS" -v only="$ONLY" '
function median(key,    n, i, j, t, a) {
    n = split(vals[key], a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n == 0 ? 0 : (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2)
}
{
    k = $1 SUBSEP $2
    for (f = 3; f <= 10; f++) vals[k, f] = vals[k, f] " " $f
}
END {
    nc = split(conns, cs, " "); ns = split(only, ss, ",")
    printf "| %-12s | %5s | %9s | %8s | %8s | %12s | %6s | %8s | %9s | %9s |\n", "target", "conns", "req/s", "p50 ms", "p99 ms", "CPU us/req", "upconn", "peak RSS", "rps/nginx", "cpu/nginx"
    printf "|--------------|------:|----------:|---------:|---------:|-------------:|-------:|---------:|----------:|----------:|\n"
    for (i = 1; i <= nc; i++) {
        c = cs[i]
        nr = median(("nginx" SUBSEP c) SUBSEP 3); ncpu = median(("nginx" SUBSEP c) SUBSEP 6)
        dr = median(("direct" SUBSEP c) SUBSEP 3)
        for (j = 1; j <= ns; j++) {
            s = ss[j]; k = s SUBSEP c
            if (!((k SUBSEP 3) in vals)) continue
            rps = median(k SUBSEP 3); cpu = median(k SUBSEP 6); aux = median(k SUBSEP 9)
            cpus = s == "direct" ? "-" : sprintf("%.1f", cpu)
            if (aux > 0) cpus = sprintf("%.1f+%.1f", cpu, aux)
            rr = (nr > 0 && s != "direct") ? sprintf("%.2f", rps / nr) : "-"
            cr = (ncpu > 0 && s != "direct") ? sprintf("%.2f", cpu / ncpu) : "-"
            hw = s == "direct" ? "-" : sprintf("%.1f MB", median(k SUBSEP 8) / 1024)
            printf "| %-12s | %5s | %9.0f | %8.3f | %8.3f | %12s | %6d | %8s | %9s | %9s |\n", s, c, rps, median(k SUBSEP 4), median(k SUBSEP 5), cpus, median(k SUBSEP 7), hw, rr, cr
            if (dr > 0 && s != "direct") wd[s, c] = sprintf("%.2f", rps / dr)
        }
    }
    printf "\nreq/s relative to direct:"
    for (i = 1; i <= nc; i++) for (j = 1; j <= ns; j++) if ((ss[j], cs[i]) in wd) printf " %s/%s=%s", ss[j], cs[i], wd[ss[j], cs[i]]
    printf "\n"
}' "$WORK/results"
echo
echo "CPU for redis is wxgate+redis-server. upconn: TCP connections the upstream accepted during a cell."

if [ "$P99" = 1 ]; then
    echo
    echo "Tail at 16 connections: p50 / p99 / p99.9 (ms) in each round, then medians; p99 over nginx's median p99"
    echo
    awk -v only="$ONLY" -v rounds="$ROUNDS" '
    function median(list,    n, i, j, t, a) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n == 0 ? 0 : (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2)
    }
    $2 == 16 { cell[$1, $11] = sprintf("%.2f/%.2f/%.2f", $4, $5, $10); p50[$1] = p50[$1] " " $4; p99[$1] = p99[$1] " " $5; p999[$1] = p999[$1] " " $10 }
    END {
        ns = split(only, ss, ",")
        printf "| %-12s |", "target"
        for (r = 1; r <= rounds; r++) printf " round %d |", r
        printf " median p50 | median p99 | median p99.9 | p99 - nginx |\n|---|"
        for (r = 1; r <= rounds + 4; r++) printf "--:|"
        printf "\n"
        base = median(p99["nginx"])
        for (j = 1; j <= ns; j++) {
            s = ss[j]
            if (!(s in p99)) continue
            printf "| %-12s |", s
            for (r = 1; r <= rounds; r++) printf " %s |", ((s, r) in cell) ? cell[s, r] : "-"
            d = s == "nginx" || s == "direct" ? "-" : sprintf("%+.2f", median(p99[s]) - base)
            printf " %.3f | %.3f | %.3f | %s |\n", median(p50[s]), median(p99[s]), median(p999[s]), d
        }
    }' "$WORK/results"
fi

# ------------------------------------------------------------------ memory and start-up

if [ "$MEMORY" = 1 ] && [ ! -f "$WORK/wxgate-memory/wxgate.toml" ]; then
    log "start-up and memory figures skipped: they reuse the memory row's config (add memory to --only)"
elif [ "$MEMORY" = 1 ]; then
    EXAMPLE="$ROOT/target/release/examples/sessions_memory"
    # --no-build skips rebuilding wxgate, but the measuring program must exist.
    [ -x "$EXAMPLE" ] || (cd "$ROOT" && cargo build --release --quiet --example sessions_memory)
    echo
    dir="$WORK/startup"
    mkdir -p "$dir"
    port="$(free_port)"
    admin="$(free_port)"
    sed -e "s/^listen = \"127.0.0.1:[0-9]*\"\$/listen = \"127.0.0.1:$port\"/" \
        -e "/^\[admin\]/,/^\[/ s/^listen = .*/listen = \"127.0.0.1:$admin\"/" \
        -e "s#^public_url = .*#public_url = \"http://127.0.0.1:$port\"#" \
        "$WORK/wxgate-memory/wxgate.toml" >"$dir/wxgate.toml"
    for _ in 1 2 3; do "$EXAMPLE" startup "$WXGATE" "$dir/wxgate.toml" "127.0.0.1:$admin"; done
    echo
    "$EXAMPLE" sessions 100000 1000000
fi
