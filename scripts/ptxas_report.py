#!/usr/bin/env python3
"""Assembles the PTX of every CUDA kernel with ptxas and prints, per kernel
and architecture, its registers, stack frame and spill bytes.

The PTX comes from tests/cuda_nvrtc.rs (run with ZEROFORMER_PTX_DIR=DIR):
DIR/sm_80/<file>.ptx and DIR/sm_90/<file>.ptx. ptxas comes from the PyPI
wheel nvidia-cuda-nvcc-cu12, which needs no GPU.

    python3 scripts/ptxas_report.py --ptx-dir DIR --ptxas PATH/TO/ptxas
"""
import argparse
import pathlib
import re
import subprocess
import sys


def report(ptxas, arch, ptx):
    """(kernel, registers, stack, spill stores, spill loads) for each entry of one PTX file."""
    out = subprocess.run(
        [ptxas, f"-arch={arch}", "-v", str(ptx), "-o", "/dev/null"],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        sys.exit(f"ptxas failed on {ptx} for {arch}:\n{out.stderr}")
    rows, kernel, frame = [], None, None
    for line in out.stderr.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)'", line):
            kernel = m.group(1)
        elif m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line):
            frame = tuple(int(g) for g in m.groups())
        elif (m := re.search(r"Used (\d+) registers", line)) and kernel:
            rows.append((kernel, int(m.group(1))) + (frame or (0, 0, 0)))
            kernel, frame = None, None
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ptx-dir", required=True, type=pathlib.Path)
    parser.add_argument("--ptxas", required=True)
    args = parser.parse_args()
    spilling = []
    print(f"{'arch':6} {'file':12} {'kernel':28} {'regs':>4} {'stack':>5} {'spill st':>8} {'spill ld':>8}")
    for arch_dir in sorted(p for p in args.ptx_dir.iterdir() if p.is_dir()):
        for ptx in sorted(arch_dir.glob("*.ptx")):
            for kernel, regs, stack, stores, loads in report(args.ptxas, arch_dir.name, ptx):
                print(f"{arch_dir.name:6} {ptx.stem + '.cu':12} {kernel:28} {regs:4} {stack:5} {stores:8} {loads:8}")
                if stores or loads:
                    spilling.append(f"{arch_dir.name} {kernel}")
    print(f"{len(spilling)} kernels spill to local memory" + (f": {', '.join(spilling)}" if spilling else ""))


if __name__ == "__main__":
    main()
