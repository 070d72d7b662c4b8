#!/usr/bin/env python3
"""Assembles the PTX of every CUDA kernel with ptxas and prints, per kernel
and architecture, its registers, stack frame and spill bytes.

The PTX comes from tests/cuda_nvrtc.rs (run with ZEROFORMER_PTX_DIR=DIR):
DIR/sm_80/<file>.ptx and DIR/sm_90/<file>.ptx. ptxas comes from the PyPI
wheel nvidia-cuda-nvcc-cu12, which needs no GPU.

    python3 scripts/ptxas_report.py --ptx-dir DIR --ptxas PATH/TO/ptxas

With --table FILE (CI passes src/backend/cuda/ptxas_table.tsv) it also
fails when a kernel spills more than the table records, uses more than a
quarter more registers than it records, or is missing from it (or the
table names a kernel that no longer exists). --write-table rewrites FILE
from this run, for a change that means to move those figures.
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
    parser.add_argument("--table", type=pathlib.Path, help="the checked-in figures to hold the kernels to")
    parser.add_argument("--write-table", action="store_true", help="rewrite --table from this run")
    args = parser.parse_args()
    spilling = []
    measured = {}
    print(f"{'arch':6} {'file':12} {'kernel':28} {'regs':>4} {'stack':>5} {'spill st':>8} {'spill ld':>8}")
    for arch_dir in sorted(p for p in args.ptx_dir.iterdir() if p.is_dir()):
        for ptx in sorted(arch_dir.glob("*.ptx")):
            for kernel, regs, stack, stores, loads in report(args.ptxas, arch_dir.name, ptx):
                print(f"{arch_dir.name:6} {ptx.stem + '.cu':12} {kernel:28} {regs:4} {stack:5} {stores:8} {loads:8}")
                measured[(arch_dir.name, ptx.stem + ".cu", kernel)] = (regs, stores + loads)
                if stores or loads:
                    spilling.append(f"{arch_dir.name} {kernel}")
    print(f"{len(spilling)} kernels spill to local memory" + (f": {', '.join(spilling)}" if spilling else ""))
    if args.table is None:
        return
    if args.write_table:
        lines = ["# arch\tfile\tkernel\tregisters\tspill bytes (stores + loads): ptxas 12.9, scripts/ptxas_report.py --write-table"]
        lines += [f"{a}\t{f}\t{k}\t{r}\t{sp}" for (a, f, k), (r, sp) in sorted(measured.items())]
        args.table.write_text("\n".join(lines) + "\n")
        print(f"wrote {len(measured)} kernels to {args.table}")
        return
    sys.exit(check(measured, read_table(args.table), args.table))


def read_table(path):
    """{(arch, file, kernel): (registers, spill bytes)} from the checked-in table."""
    table = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            arch, file, kernel, regs, spill = line.split("\t")
            table[(arch, file, kernel)] = (int(regs), int(spill))
    return table


def check(measured, table, path):
    """The problems of this run against the table, as an exit message, or None."""
    problems = []
    for key, (regs, spill) in sorted(measured.items()):
        name = " ".join(key)
        if key not in table:
            problems.append(f"{name}: not in {path}")
            continue
        regs_then, spill_then = table[key]
        if spill > spill_then:
            problems.append(f"{name}: spills {spill} bytes, the table says {spill_then}")
        if regs > regs_then * 1.25:
            problems.append(f"{name}: {regs} registers, more than a quarter over the table's {regs_then}")
    problems += [f"{' '.join(key)}: in {path} but not compiled" for key in sorted(table.keys() - measured.keys())]
    if not problems:
        print(f"every kernel within {path}")
        return None
    return "\n".join(problems) + (
        f"\nfix the kernel, or rerun with --write-table to record new figures in {path} on purpose"
    )


if __name__ == "__main__":
    main()
