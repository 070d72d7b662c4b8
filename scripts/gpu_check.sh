#!/usr/bin/env bash
# The CUDA backend on a real GPU, in one short run that needs no Rust there.
#
#   bash scripts/gpu_check.sh build   # here: build, strip and pack into .device/gpu-check
#   bash scripts/gpu_check.sh run     # on the GPU machine, with .device carried
#
# `build` compiles, with `--features cuda`, every test binary that has CUDA
# arms (the per-device tests, tests/cuda.rs, the known answers) and the
# shakespeare, step_time and gpt2_generate examples, and packs them with
# the corpus. `run`
# runs each test binary's CUDA tests with ZEROFORMER_REQUIRE_CUDA=1, then
# 50 gpt-mini steps of examples/shakespeare on the GPU and on the CPU,
# comparing the losses at every step, then a speed table: GPT-2 124M's
# training step (batch 8, context 1024, f32) by step_time beside PyTorch
# eager doing the same model on the same GPU (scripts/train_gpt_torch.py
# --device cuda, TF32 off on both sides), then batch-1 GPT-2 124M greedy
# generation beside Hugging Face transformers' cached generate on the same
# GPU (scripts/bench_generate_hf.py --device cuda; left out, saying so,
# where transformers is not installed), and ends with one summary line.
# It takes a few minutes; the device tool's run carries `.device`:
#
#   run(command="bash scripts/gpu_check.sh run", carry=[".device"], timeout_s=420)
#
# GPU_CHECK_FEATURES=cuda-sim builds the same pack for the simulated GPU,
# so that the script itself can be checked on a machine without one; there
# `run` uses cpu-mini for the loss comparison and leaves out the speed
# table (GPT-2 on a simulator would take hours).
set -euo pipefail
cd "$(dirname "$0")/.."
pack=.device/gpu-check
features=${GPU_CHECK_FEATURES:-cuda}

build() {
  rm -rf "$pack" && mkdir -p "$pack/bin"
  # The test binaries, in the release profile (smaller and faster), and
  # the example.
  cargo test --release --features "$features" --no-run --message-format=json 2>/dev/null \
    | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])' > "$pack/tests.txt"
  cargo build --release --features "$features" --example shakespeare --example step_time \
    --example gpt2_generate --quiet
  while read -r name exe; do
    # Only binaries with CUDA tests travel.
    if "$exe" --list 2>/dev/null | grep 'cuda' > /dev/null; then
      cp "$exe" "$pack/bin/$name"
    fi
  done < "$pack/tests.txt"
  cp target/release/examples/{shakespeare,step_time,gpt2_generate} "$pack/bin/"
  echo "$features" > "$pack/features"
  strip "$pack"/bin/*
  cp ../shared/data/tinyshakespeare.txt "$pack/"
  # The test binaries read fixtures at the path they were built at.
  pwd > "$pack/built_at"
  python3 - "$pack" <<'PY'
import lzma, pathlib, sys
for exe in pathlib.Path(sys.argv[1], "bin").iterdir():
    data = exe.read_bytes()
    pathlib.Path(str(exe) + ".xz").write_bytes(lzma.compress(data, preset=6))
    exe.unlink()
PY
  du -sh "$pack"
  ls "$pack/bin"
}

run() {
  [ -d "$pack/bin" ] || { echo "no $pack: run 'bash scripts/gpu_check.sh build' here and carry .device"; exit 1; }
  local started=$SECONDS work
  work=$(mktemp -d)
  python3 - "$pack" "$work" <<'PY'
import lzma, os, pathlib, sys
for packed in pathlib.Path(sys.argv[1], "bin").glob("*.xz"):
    exe = pathlib.Path(sys.argv[2], packed.stem)
    exe.write_bytes(lzma.decompress(packed.read_bytes()))
    os.chmod(exe, 0o755)
PY
  # CUDA's libraries: the toolkit's, else the ones PyTorch's wheels bring.
  local libs=/usr/local/cuda/lib64
  libs="$libs:$(python3 - <<'PY' 2>/dev/null || true
import glob, os, site
dirs = []
for base in site.getsitepackages():
    dirs += glob.glob(os.path.join(base, "nvidia", "*", "lib"))
print(":".join(dirs))
PY
)"
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # Fixtures are read where the tests were built.
  local built_at
  built_at=$(cat "$pack/built_at")
  if [ "$built_at" != "$PWD" ] && [ ! -e "$built_at" ]; then
    mkdir -p "$(dirname "$built_at")" && ln -s "$PWD" "$built_at"
  fi
  local gpu
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo "unknown GPU")
  echo "== $gpu"
  local passed=0 failed=0 bad=""
  for exe in "$work"/*; do
    case "$(basename "$exe")" in shakespeare | step_time | gpt2_generate) continue ;; esac
    echo "== $(basename "$exe")"
    set +e
    ZEROFORMER_REQUIRE_CUDA=1 timeout 300 "$exe" cuda --test-threads 4 > "$work/log" 2>&1
    local rc=$?
    set -e
    grep -E '^test .* (FAILED|ok)$|^test result' "$work/log" | grep -v ' ok$' || true
    local p f
    p=$(grep -oE '[0-9]+ passed' "$work/log" | awk '{s += $1} END {print s + 0}')
    f=$(grep -oE '[0-9]+ failed' "$work/log" | awk '{s += $1} END {print s + 0}')
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$rc" -ne 0 ]; then
      bad="$bad $(basename "$exe")"
      grep -A15 -- '---- ' "$work/log" | head -60 || tail -20 "$work/log"
    fi
  done
  local preset=gpt-mini steps=50 simulated=no
  if [ "$(cat "$pack/features")" = cuda-sim ]; then preset=cpu-mini steps=30 simulated=yes; fi
  echo "== shakespeare: $steps $preset steps on the GPU and on the CPU"
  local timing=""
  for device in cuda cpu; do
    local t0=$SECONDS
    "$work/shakespeare" --data "$pack/tinyshakespeare.txt" --preset "$preset" --iters "$steps" \
      --eval-every "$steps" --eval-iters 2 --sample-tokens 40 --out "$work/run-$device" --device "$device" \
      --metrics "$work/$device.jsonl" | tail -2
    timing="$timing ${device}_s=$((SECONDS - t0))"
  done
  local worst
  worst=$(python3 - "$work/cpu.jsonl" "$work/cuda.jsonl" <<'PY'
import json, sys
cpu, gpu = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert len(cpu) == len(gpu), (len(cpu), len(gpu))
print(f"{max(abs(a['loss'] - b['loss']) for a, b in zip(cpu, gpu)):.1e}")
PY
)
  local speed=""
  if [ "$simulated" = no ]; then
    echo "== GPT-2 124M training step, batch 8, context 1024, f32: zeroformer, then PyTorch eager (SDPA, fused AdamW)"
    local ours theirs
    ours=$("$work/step_time" --preset gpt2 --vocab 50257 --batch-size 8 --steps 10 --warmup 3 --device cuda | tail -1)
    echo "$ours"
    theirs=$(python3 scripts/train_gpt_torch.py --preset gpt2 --vocab 50257 --batch-size 8 --steps 10 --warmup 3 \
      --device cuda | tail -1) || theirs="tokens_per_s=0 (PyTorch failed)"
    echo "$theirs"
    speed=$(python3 - "$ours" "$theirs" <<'PY'
import sys
rate = lambda line: float(line.rsplit("tokens_per_s=", 1)[1].split()[0])
ours, theirs = (rate(l) for l in sys.argv[1:])
print(f" gpt2_tokens_per_s={ours:.0f} torch_tokens_per_s={theirs:.0f} ratio={ours / theirs:.2f}x" if theirs else
      f" gpt2_tokens_per_s={ours:.0f} torch=failed")
PY
)
    echo "== GPT-2 124M greedy generation, batch 1: zeroformer beside transformers' cached generate"
    if python3 -c "import transformers" 2> /dev/null; then
      python3 scripts/bench_generate_hf.py --device cuda --rounds 3 --bin "$work/gpt2_generate" | tee "$work/generate.log"
      speed="$speed $(python3 - "$work/generate.log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"median: ours ([\d.]+) tok/s.*HF transformers ([\d.]+) tok/s.*ours/HF ([\d.]+)x", text)
i8 = re.search(r"int8: ([\d.]+) tok/s", text)
print(f"generate_tokens_per_s={m[1]} hf_tokens_per_s={m[2]} generate_ratio={m[3]}x int8_tokens_per_s={i8[1]}"
      if m else "generate=failed")
PY
)"
    else
      echo "transformers is not installed: generation left out"
      speed="$speed generate=no_transformers"
    fi
  fi
  rm -rf "$work"
  local verdict=passed
  { [ "$failed" -eq 0 ] && [ -z "$bad" ] && python3 -c "import sys; sys.exit(not float('$worst') <= 1e-4)"; } || verdict=FAILED
  echo "gpu_check: $verdict gpu=\"$gpu\" cuda_tests=$passed/$((passed + failed))${bad:+ failing_binaries=$bad} ${preset}_${steps}_steps_max_loss_diff=$worst$timing$speed total_s=$((SECONDS - started))"
  [ "$verdict" = passed ]
}

case "${1:-}" in
  build) build ;;
  run) run ;;
  *) echo "usage: $0 build|run"; exit 2 ;;
esac
