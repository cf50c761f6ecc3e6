#!/usr/bin/env bash
# Every benchmark at the sizes the issue asks for; results land in bench/RESULTS.md.
# Needs nginx (the native proxy in front of PostgREST) and valgrind: ./scripts/install-bench-deps
set -euo pipefail
cd "$(dirname "$0")/.."
python bench/producer.py --calls 20000
python bench/log_many.py --rounds 21
python bench/drain.py --events 200000
python bench/profile_drain.py --events 50000
python bench/decode_compare.py --events 20000
python bench/instructions.py --events 3000
python bench/lag.py --rates 2000,10000 --seconds 60 --backlog 1000000
python bench/dashboard.py --requests 200 --backlog 1000000
python bench/cluster.py --events 50000
