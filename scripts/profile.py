#!/usr/bin/env python3
"""Per-function instruction profile of a firmware run in QEMU.

Reads a QEMU log made with `-d in_asm,exec,nochain` (every translated block's
instructions once, then one `Trace` line per executed block) and the ELF's symbols
(llvm-objdump -t), and prints the instructions executed per function, most first.
A development aid for kernel work (scripts/profile.sh runs it); not part of any test.

    profile.py ELF LOG [--blocks N]   # N: also the N hottest blocks with their code
    profile.py ELF LOG --annotate NAME  # every executed instruction of the functions whose
                                        # name contains NAME, with its count, in address order
"""
import bisect, collections, re, subprocess, sys

elf, log = sys.argv[1], sys.argv[2]
top_blocks = int(sys.argv[sys.argv.index('--blocks') + 1]) if '--blocks' in sys.argv else 0
syms = []
for line in subprocess.run(['llvm-objdump', '-t', '--demangle', elf], capture_output=True,
                           text=True).stdout.splitlines():
    if '\t' not in line or ' F ' not in line or '.text' not in line:
        continue
    left, right = line.split('\t', 1)
    size_hex, name = right.split(' ', 1)
    addr, size = int(left.split()[0], 16), int(size_hex, 16)
    name = re.sub(r'::h[0-9a-f]{16}$', '', name.replace('.hidden ', '').strip())
    syms.append((addr & ~1, size, name))
syms.sort()
starts = [s[0] for s in syms]

def func(pc):
    i = bisect.bisect_right(starts, pc) - 1
    if i >= 0 and pc < syms[i][0] + max(syms[i][1], 1):
        return syms[i][2]
    return '?%08x' % pc

size = {}       # block start -> instructions
code = {}
runs = collections.Counter()
cur = None
with open(log, errors='replace') as f:
    for line in f:
        if line.startswith('IN:'):
            cur = None
            continue
        m = re.match(r'^0x([0-9a-f]{8}):\s+\S+\s+(.*)$', line)
        if m:
            pc = int(m.group(1), 16)
            if cur is None:
                cur = pc
                size[cur] = 0
                code[cur] = []
            size[cur] += 1
            code[cur].append((pc, m.group(2).strip()))
            continue
        if line.startswith('Trace'):
            cur = None
            m = re.search(r'\[[0-9a-f]+/([0-9a-f]+)/', line)
            if m:
                runs[int(m.group(1), 16)] += 1
per = collections.Counter()
for pc, n in runs.items():
    per[func(pc)] += n * size.get(pc, 0)
total = sum(per.values())
print(f'{total} instructions')
for name, n in per.most_common(40):
    print(f'{n:>12} {100 * n / total:5.1f}%  {name}')
if top_blocks:
    hot = sorted(runs, key=lambda pc: -runs[pc] * size.get(pc, 0))[:top_blocks]
    for pc in hot:
        print(f'\n{pc:08x} x{runs[pc]} ({size.get(pc, 0)} instr) {func(pc)}')
        for a, c in code.get(pc, []):
            print(f'    {a:08x} {c}')

if '--annotate' in sys.argv:
    want = sys.argv[sys.argv.index('--annotate') + 1]
    count, text = collections.Counter(), {}
    for pc, n in runs.items():
        for a, c in code.get(pc, []):
            count[a] += n
            text[a] = c
    for a in sorted(count):
        if want in func(a):
            print(f'{count[a]:>10} {a:08x} {text[a]}')
