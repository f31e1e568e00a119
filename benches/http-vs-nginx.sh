#!/usr/bin/env bash
# P4: the example server against nginx on loopback, both writing to the same disk.
#
# curl uploads the same 1 GiB file through each (server: POST to the upload route; nginx:
# WebDAV PUT) and downloads it back, alternating, P4_ROUNDS times; the ratio is the server's
# throughput over nginx's (goal >= 0.80). Then curl streams 4 GiB into the server and the
# script reports the server's peak resident memory during that upload (goal <= 64 MiB).
#
# Usage: benches/http-vs-nginx.sh   (or: cargo bench -p backup-server --bench http_vs_nginx)
# Environment: BACKUP_SERVER_BIN (default: builds target/release/backup-server),
#   P4_SIZE_MIB (1024), P4_BIG_MIB (4096), P4_ROUNDS (3), P4_DOWNLOADS (per round, 3),
#   P4_WORK (a folder on the disk to use).
# nginx comes from Debian's package: installed when missing and running as root, else the
# benchmark says it is skipped.
#
# Fairness notes: the server's upload-confirmation grace (a fixed wait for backup-maker's
# cancellation, 2 s by default) is set to 0 so that throughput is compared, not a timer; the
# server fsyncs every upload before answering and verifies every download's digest as it
# streams, nginx does neither.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SIZE_MIB=${P4_SIZE_MIB:-1024}
BIG_MIB=${P4_BIG_MIB:-4096}
ROUNDS=${P4_ROUNDS:-3}
DOWNLOADS=${P4_DOWNLOADS:-3}

if ! command -v nginx >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "P4: installing nginx (Debian package)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  else
    echo "skipped: P4 http_vs_nginx: nginx is not installed (apt-get install nginx, as root)"
    exit 0
  fi
fi
for tool in curl base64 awk; do
  command -v "$tool" >/dev/null || { echo "skipped: P4 http_vs_nginx: $tool is missing"; exit 0; }
done

SERVER_BIN=${BACKUP_SERVER_BIN:-}
if [ -z "$SERVER_BIN" ]; then
  (cd "$ROOT" && cargo build --release -q -p backup-server)
  SERVER_BIN="$ROOT/target/release/backup-server"
fi

WORK=$(mktemp -d "${P4_WORK:-/var/tmp}/p4.XXXXXX")
SERVER_PID=""
NGINX_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
chmod 755 "$WORK"

free_port() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

# The input: an ASCII-armored OpenPGP-looking file (the server's collections accept only
# those), SIZE_MIB MiB of base64 lines.
INPUT="$WORK/input.asc"
{
  printf -- '-----BEGIN PGP MESSAGE-----\n\n'
  head -c $((SIZE_MIB * 1024 * 1024 * 3 / 4)) /dev/urandom | base64 -w 64
  printf -- '-----END PGP MESSAGE-----\n'
} >"$INPUT"
BYTES=$(stat -c %s "$INPUT")

# The server: the example manifests plus a collection big enough for the runs.
mkdir -p "$WORK/config" "$WORK/server"
cp -r "$ROOT/examples/server/config/." "$WORK/config/"
cat >"$WORK/config/backup-repository/backups.riotkit.org/v1alpha1/backupcollections/bench.yaml" <<'EOF'
---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata:
    name: bench
spec:
    description: P4 benchmark
    filenameTemplate: bench-${version}.asc
    maxBackupsCount: 2
    maxOneVersionSize: 6G
    maxCollectionSize: 12G
    strategyName: fifo
    accessControl:
        - name: some-user
          type: user
          roles: [collectionManager]
EOF
SERVER_PORT=$(free_port 18080)
"$SERVER_BIN" --config-local-path "$WORK/config" --data-dir "$WORK/server" --listen "127.0.0.1:$SERVER_PORT" \
  --jwt-secret-key "p4 benchmark secret key, long enough" --upload-confirm-grace 0s --log-level warn \
  >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!

# nginx: WebDAV PUT into a folder of the same disk.
NGINX_PORT=$(free_port $((SERVER_PORT + 1)))
mkdir -p "$WORK/nginx/root" "$WORK/nginx/tmp" "$WORK/nginx/logs"
chmod -R 777 "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/nginx/root;
        client_max_body_size 0;
        location / {
            dav_methods PUT DELETE;
            create_full_put_path on;
        }
    }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>"$WORK/nginx/logs/start.log" &
NGINX_PID=$!

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "P4: nothing listens on $1" >&2
  cat "$WORK/server.err" "$WORK/nginx/logs/"*.log >&2 || true
  exit 1
}
wait_port "$SERVER_PORT"
wait_port "$NGINX_PORT"

SERVER="http://127.0.0.1:$SERVER_PORT"
NGINX="http://127.0.0.1:$NGINX_PORT"
TOKEN=$(curl -sS --fail -H 'Content-Type: application/json' \
  -d '{"username":"some-user","password":"admin"}' "$SERVER/api/stable/auth/login" |
  sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
[ -n "$TOKEN" ] || { echo "P4: login failed" >&2; exit 1; }

# Prints the seconds a curl took, failing on anything but the expected status.
timed() {
  local expect=$1
  shift
  local out
  out=$(curl -sS -o /dev/null -H 'Expect:' -w '%{http_code} %{time_total}' "$@")
  [ "${out%% *}" = "$expect" ] || { echo "P4: curl $* answered ${out%% *}, not $expect" >&2; exit 1; }
  echo "${out#* }"
}

up_server=0 up_nginx=0 down_server=0 down_nginx=0
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a + b }'; }
for round in $(seq 1 "$ROUNDS"); do
  sync
  t=$(timed 200 -X POST -T "$INPUT" -H "Authorization: Bearer $TOKEN" -H 'Content-Type:' \
    "$SERVER/api/alpha/repository/collection/bench/version")
  up_server=$(add "$up_server" "$t")
  sync
  t=$(timed 201 -T "$INPUT" "$NGINX/input-$round.asc")
  up_nginx=$(add "$up_nginx" "$t")
  sync
  for _ in $(seq 1 "$DOWNLOADS"); do
    t=$(timed 200 -H "Authorization: Bearer $TOKEN" "$SERVER/api/alpha/repository/collection/bench/version/latest")
    down_server=$(add "$down_server" "$t")
    t=$(timed 200 "$NGINX/input-$round.asc")
    down_nginx=$(add "$down_nginx" "$t")
  done
  [ "$round" -gt 1 ] && curl -sS -o /dev/null -X DELETE "$NGINX/input-$((round - 1)).asc"
done

# Both gave the bytes back unchanged (checked outside the timed runs).
curl -sS --fail -H "Authorization: Bearer $TOKEN" "$SERVER/api/alpha/repository/collection/bench/version/latest" | cmp -s - "$INPUT" ||
  { echo "P4: the server's download differs from the input" >&2; exit 1; }
curl -sS --fail "$NGINX/input-$ROUNDS.asc" | cmp -s - "$INPUT" || { echo "P4: nginx's download differs" >&2; exit 1; }

rate() { awk -v b="$BYTES" -v n="$2" -v t="$1" 'BEGIN { printf "%.1f", b * n / t / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
echo "P4 upload ${SIZE_MIB} MiB x$ROUNDS: server $(rate "$up_server" "$ROUNDS") MiB/s, nginx $(rate "$up_nginx" "$ROUNDS") MiB/s"
echo "P4 http_upload_vs_nginx ratio=$(ratio "$up_server" "$up_nginx")"
downloads=$((ROUNDS * DOWNLOADS))
echo "P4 download ${SIZE_MIB} MiB x$downloads: server $(rate "$down_server" "$downloads") MiB/s, nginx $(rate "$down_nginx" "$downloads") MiB/s"
echo "P4 http_download_vs_nginx ratio=$(ratio "$down_server" "$down_nginx")"

# Peak memory during a BIG_MIB upload of unknown length (chunked, as backup-maker sends).
# The login's argon2id hash (64 MiB, freed after) is not part of it: the high-water mark is
# reset first where the kernel allows (/proc/PID/clear_refs), and VmRSS is sampled too.
rm -f "$WORK/nginx/root/"*.asc "$INPUT"
kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
before=$(kib "$SERVER_PID" VmRSS)
reset="no"
echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null && reset="yes"
(
  printf -- '-----BEGIN PGP MESSAGE-----\n\n'
  head -c $((BIG_MIB * 1024 * 1024 * 3 / 4)) /dev/zero | base64 -w 64
  printf -- '-----END PGP MESSAGE-----\n'
) | curl -sS --fail -o /dev/null -H 'Expect:' -H "Authorization: Bearer $TOKEN" -H 'Content-Type:' -X POST -T - \
  "$SERVER/api/alpha/repository/collection/bench/version" &
CURL_PID=$!
sampled=0
while kill -0 "$CURL_PID" 2>/dev/null; do
  now=$(kib "$SERVER_PID" VmRSS)
  [ "$now" -gt "$sampled" ] && sampled=$now
  sleep 0.05
done
wait "$CURL_PID" || { echo "P4: the ${BIG_MIB} MiB upload failed" >&2; exit 1; }
peak=$sampled
if [ "$reset" = yes ]; then
  hwm=$(kib "$SERVER_PID" VmHWM)
  [ "$hwm" -gt "$peak" ] && peak=$hwm
fi
echo "P4 server RSS before the upload: $((before / 1024)) MiB; high-water mark reset: $reset"
echo "P4 server_peak_rss_during_${BIG_MIB}MiB_upload_mib=$(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }') (goal <= 64)"
