#!/bin/bash
# Container health probe without curl: GET http://127.0.0.1:$PORT<path> over bash's /dev/tcp,
# healthy only on HTTP 200.   Usage: healthcheck [/readyz|/healthz] [port]
path="${1:-/readyz}"
port="${2:-${PORT:?PORT is not set}}"
exec 3<>"/dev/tcp/127.0.0.1/${port}" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 3 status <&3 || exit 1
case "$status" in
  "HTTP/1."[01]" 200"*) exit 0 ;;
  *) echo "unhealthy: ${status%$'\r'}" >&2; exit 1 ;;
esac
