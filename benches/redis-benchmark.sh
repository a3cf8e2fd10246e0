#!/usr/bin/env bash
# The raw server-side ceiling beside `cargo bench -p ee-benches --bench redis_conn`:
# redis-benchmark (C, 50 connections) against a throwaway redis-server, for the
# same GET and EVALSHA, without and with pipelining (a multiplexed connection
# pipelines concurrent requests the way -P does).
set -euo pipefail
port="${1:-6391}"
dir="$(mktemp -d)"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes --logfile "$dir/log"
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$port" set bench:key "a-short-value-of-32-bytes-------" >/dev/null
sha="$(redis-cli -p "$port" script load "return redis.call('GET', KEYS[1])")"
for pipeline in 1 16; do
  echo "-- 50 connections, pipeline $pipeline"
  redis-benchmark -p "$port" -c 50 -n 300000 -P "$pipeline" -q GET bench:key | tr '\r' '\n' | grep -a 'requests per second' | tail -n1 | sed 's/^/GET: /'
  redis-benchmark -p "$port" -c 50 -n 300000 -P "$pipeline" -q EVALSHA "$sha" 1 bench:key | tr '\r' '\n' | grep -a 'requests per second' | tail -n1 | sed 's/^/EVALSHA: /'
done
