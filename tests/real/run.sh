#!/usr/bin/env bash
# abatch against real model servers: KServe (v1 and v2 protocols on one port) and MLflow,
# each serving a logistic regression on iris trained here, on 127.0.0.1. The predicted
# classes of fixtures/iris.jsonl must be fixtures/expected/iris-classes.jsonl. Then LitServe's
# OpenAI-compatible chat endpoint (a deterministic model, no weights) answers the OpenAI batch
# file fixtures/openai-batch.jsonl through --api openai-batch, twice: whole, and resumed.
# Last, a real Spark job (pyspark, local[2]) pipes partitions through abatch --aligned against
# the mock server, and every output line must stand in its input line's place.
#
# The servers are installed from PyPI into virtual environments under $ABATCH_REAL_CACHE
# (default ~/.cache/abatch-real-servers), once: a second run skips the installs.
# Uses target/debug/abatch and abatch-mock, or $ABATCH_BIN and $ABATCH_MOCK.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/tests/real"
cache=${ABATCH_REAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/abatch-real-servers}
abatch=${ABATCH_BIN:-$root/target/debug/abatch}
mock=${ABATCH_MOCK:-$root/target/debug/abatch-mock}
python=${PYTHON:-python3}
work=$(mktemp -d)
pids=()

say() { echo "real servers: $*" >&2; }

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# venv NAME PACKAGE...: a virtual environment with exactly these packages, made once.
venv() {
    local name=$1
    shift
    local dir="$cache/$name"
    local stamp
    stamp="$dir/.installed-$(echo "$*" | sha1sum | cut -c1-12)"
    if [ ! -e "$stamp" ]; then
        say "installing $* into $dir (once)"
        rm -rf "$dir"
        "$python" -m venv "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
        touch "$stamp"
    fi
}

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for URL LOG PID: until URL answers 200, the server dies, or two minutes pass.
wait_for() {
    local url=$1 log=$2 pid=$3
    for _ in $(seq 1 240); do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "the server for $url exited; its log:"
            cat "$log" >&2
            return 1
        fi
        if "$python" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.5
    done
    say "$url did not answer within two minutes; the server's log:"
    cat "$log" >&2
    return 1
}

# check NAME ARGS...: abatch over the fixture must give the expected classes.
check() {
    local name=$1
    shift
    local out="$work/$name.jsonl"
    NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 "$abatch" --ordered -b 8 -c 2 "$@" \
        "$root/fixtures/iris.jsonl" -o "$out"
    if ! diff -u "$root/fixtures/expected/iris-classes.jsonl" "$out" >&2; then
        say "$name: wrong predictions (diff above)"
        return 1
    fi
    say "$name: $(wc -l <"$out") predictions as expected"
}

[ -x "$abatch" ] && [ -x "$mock" ] || (cd "$root" && cargo build --workspace --locked --quiet)

venv kserve kserve==0.21.0 scikit-learn==1.9.1 joblib==1.6.0
venv mlflow mlflow-skinny==3.17.2 scikit-learn==1.9.1 pandas==3.1.1
venv litserve litserve==0.2.19 fastapi==0.165.0 uvicorn==0.54.0 pydantic==2.14.4 pyzmq==27.3.0
venv pyspark pyspark==4.0.1

"$cache/kserve/bin/python" "$here/train.py" joblib "$work/iris.joblib"
"$cache/mlflow/bin/python" "$here/train.py" mlflow "$work/iris-mlflow"

kserve_port=$(free_port)
"$cache/kserve/bin/python" "$here/kserve_iris.py" "$work/iris.joblib" "$kserve_port" \
    >"$work/kserve.log" 2>&1 &
pids+=($!)
kserve_pid=$!

mlflow_port=$(free_port)
PATH="$cache/mlflow/bin:$PATH" "$cache/mlflow/bin/mlflow" models serve -m "$work/iris-mlflow" \
    --env-manager local -h 127.0.0.1 -p "$mlflow_port" >"$work/mlflow.log" 2>&1 &
pids+=($!)
mlflow_pid=$!

wait_for "http://127.0.0.1:$kserve_port/v2/models/iris/ready" "$work/kserve.log" "$kserve_pid"
check kserve-v1 -u "http://127.0.0.1:$kserve_port/v1/models/iris:predict" --api tfserving
check kserve-v2 -u "http://127.0.0.1:$kserve_port/v2/models/iris/infer" --api v2

wait_for "http://127.0.0.1:$mlflow_port/ping" "$work/mlflow.log" "$mlflow_pid"
check mlflow -u "http://127.0.0.1:$mlflow_port/invocations" --api tfserving
openai_port=$(free_port)
"$cache/litserve/bin/python" "$here/openai_server.py" "$openai_port" >"$work/openai.log" 2>&1 &
pids+=($!)
openai_pid=$!
wait_for "http://127.0.0.1:$openai_port/health" "$work/openai.log" "$openai_pid"
batch="$root/fixtures/openai-batch.jsonl"
NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 "$abatch" --api openai-batch -c 4 \
    -u "http://127.0.0.1:$openai_port" "$batch" -o "$work/openai-out.jsonl"
"$python" "$here/check_openai_batch.py" "$batch" "$work/openai-out.jsonl"
# Resumed: an output holding the first 7 answers, one more cut half-way, as a killed run
# leaves it; the second run sends only the 13 others.
head -n 7 "$work/openai-out.jsonl" >"$work/openai-resumed.jsonl"
sed -n 8p "$work/openai-out.jsonl" | head -c 40 >>"$work/openai-resumed.jsonl"
NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 "$abatch" --api openai-batch -c 4 --resume \
    -u "http://127.0.0.1:$openai_port" "$batch" -o "$work/openai-resumed.jsonl" \
    --stats "$work/openai-stats.json"
"$python" "$here/check_openai_batch.py" "$batch" "$work/openai-resumed.jsonl"
"$python" -c 'import json, sys; n = json.load(open(sys.argv[1]))["requests"]["count"]; assert n == 13, n' \
    "$work/openai-stats.json"
say "litserve: OpenAI batch file answered, and resumed with 13 requests"
mock_port=$(free_port)
"$mock" --port "$mock_port" >"$work/mock.log" 2>&1 &
pids+=($!)
# The mock answers 405 to anything but a POST: any answer at all says it is up.
for _ in $(seq 1 100); do
    if "$python" -c "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" \
        "$mock_port" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
"$cache/pyspark/bin/python" "$here/spark_pipe.py" "$abatch" "http://127.0.0.1:$mock_port/predict" \
    2> >(grep -v -e '^\s*at ' -e WARN -e log4j >&2)
say "all passed"
