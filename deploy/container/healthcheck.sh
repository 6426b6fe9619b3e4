#!/bin/bash
# The image's HEALTHCHECK: GET /health on the port `rerank serve` listens on (its --port
# argument, else RERANK_PORT, else 8080), with bash's /dev/tcp (no curl in the image).
set -u
port="${RERANK_PORT:-8080}"
mapfile -d '' args < /proc/1/cmdline
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --port) port="${args[i + 1]:-$port}" ;;
    --port=*) port="${args[i]#--port=}" ;;
  esac
done
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
read -r status <&3
[[ "$status" == *" 200 "* ]]
