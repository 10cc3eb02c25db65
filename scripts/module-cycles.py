#!/usr/bin/env python3
"""Lists the import cycles between the files of a Rust crate (default controller/src): edges from `crate::`,
`super::` and `use child::` paths, cycles as strongly connected components of more than one file."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'controller/src'
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)[:-3]
            parts = rel.split(os.sep)
            if parts[-1] in ('mod', 'lib', 'main'):
                parts = parts[:-1]
            files['::'.join(parts)] = p
mods = set(files)
def resolve(path):
    # longest prefix that is a module file
    parts = path.split('::')
    for i in range(len(parts), 0, -1):
        m = '::'.join(parts[:i])
        if m in mods:
            return m
    return None
graph = {m: set() for m in mods}
def strip_comments(t):
    return '\n'.join(l for l in t.split('\n') if not l.strip().startswith('//'))
for m, p in files.items():
    text = strip_comments(open(p).read())
    # drop #[cfg(test)] mod tests { ... } at end (rough): cut at "#[cfg(test)]\nmod tests"
    i = text.find('#[cfg(test)]\nmod tests')
    if i >= 0: text = text[:i]
    # expand use groups: crate::a::{b, c::d}
    paths = []
    for mm in re.finditer(r'crate::([A-Za-z_][\w:]*)(::\{([^}]*)\})?', text):
        base = mm.group(1).rstrip(':')
        if mm.group(3):
            for item in mm.group(3).split(','):
                item = item.strip().split(' as ')[0].strip()
                if item and item != 'self':
                    paths.append(base + '::' + item.split('::{')[0])
                else:
                    paths.append(base)
        else:
            paths.append(base)
    selfparts = m.split('::') if m else []
    is_dir = p.endswith('mod.rs') or p.endswith('lib.rs')
    for mm in re.finditer(r'\b((?:super::)+)([A-Za-z_][\w:]*)(::\{([^}]*)\})?', text):
        n = mm.group(1).count('super::')
        basep = selfparts if is_dir else selfparts[:-1]
        basep = basep[:len(basep) - (n - 1)] if n > 1 else basep
        base = '::'.join(basep + [mm.group(2).rstrip(':')])
        if mm.group(4):
            for item in mm.group(4).split(','):
                item = item.strip().split(' as ')[0].strip()
                paths.append(base + ('::' + item if item and item != 'self' else ''))
        else:
            paths.append(base)
    # `use child::...` / `pub use child::...` of a child module (re-exports count as uses)
    for mm in re.finditer(r'^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+(?:self::)?([a-z_][\w]*)::', text, re.M):
        child = '::'.join(selfparts + [mm.group(1)]) if is_dir else None
        if child and child in mods:
            paths.append(child)
    for q in paths:
        r = resolve(q)
        if r is not None and r != m and r != '':
            # ignore edges to own parent/child module hierarchy? keep them: real deps
            graph[m].add(r)
# Tarjan
idx = {}; low = {}; st = []; on = set(); sccs = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in graph[v]:
        if w not in idx:
            sc(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in sorted(graph):
    if v not in idx: sc(v)
big = [sorted(s) for s in sccs if len(s) > 1]
for s in sorted(big, key=len, reverse=True):
    print(f"cycle of {len(s)} files:")
    for v in s:
        print("   ", v, "->", ", ".join(sorted(w for w in graph[v] if w in s)))
if not big:
    print("no import cycles")
