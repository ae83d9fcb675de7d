#!/usr/bin/env python3
"""The shape check (docs/design.md, "The map"): no import loop between the files of a
product crate, and no product function longer than LIMIT lines.

Imports: every `crate::…`, `super::…` and `self::…` path in a file (in `use` items, with their
brace groups expanded, and inline in code) is resolved to the file that defines the module it
names; those edges form a graph per crate, whose strongly connected components must all be
single files. A module's `mod x;` declaration is not an edge (it is where the child lives,
not something the parent uses); test modules (`#[cfg(test)]`) are skipped.

Functions: a `fn` item in `src/` of a product crate, outside test modules, may span at most
LIMIT lines, unless the line above it says `// shape: one flat match` — for a route table
that is one match whose arms are one line each (the check counts that such a function's
lines are mostly arms).

Usage: scripts/shape.py [--graph]   (exit 1 and a report when a rule is broken)
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 150
PRODUCT = "crates"


def strip_comments_and_strings(src):
    """One pass over the text: comments dropped, string and char literals emptied."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif re.match(r'(b?r#*")', src[i:i + 8]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', src[i:])
            end = src.find('"' + m.group(1), i + m.end())
            out.append('""')
            i = n if end < 0 else end + 1 + len(m.group(1))
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""')
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^'\\])'", src[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_modules(src):
    """Remove `#[cfg(test)] mod x { … }` blocks (brace-matched)."""
    out = []
    i = 0
    pat = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{")
    while True:
        m = pat.search(src, i)
        if not m:
            out.append(src[i:])
            break
        out.append(src[i : m.start()])
        depth = 1
        j = m.end()
        while j < len(src) and depth:
            if src[j] == "{":
                depth += 1
            elif src[j] == "}":
                depth -= 1
            j += 1
        i = j
    return "".join(out)


def module_files(crate_src):
    """module path tuple → file, for every file module under src/."""
    files = {}
    for dirpath, _, names in os.walk(crate_src):
        for n in names:
            if not n.endswith(".rs"):
                continue
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, crate_src)[:-3].split(os.sep)
            if rel == ["lib"] or (rel == ["main"] and not os.path.exists(os.path.join(crate_src, "lib.rs"))):
                mod = ()
            elif rel == ["main"]:
                continue  # the binary beside a library: its own crate, using the library by name
            elif rel[-1] == "mod":
                mod = tuple(rel[:-1])
            else:
                mod = tuple(rel)
            if rel[0] == "bin":
                continue
            files[mod] = p
    return files


def expand_use(tree):
    """`a::{b, c::{d, e}}` → ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    depth = 0
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                prefix = tree[:i]
                inner = tree[i + 1 : tree.rindex("}")]
                parts, cur, d = [], "", 0
                for c in inner:
                    if c == "{":
                        d += 1
                    elif c == "}":
                        d -= 1
                    if c == "," and d == 0:
                        parts.append(cur)
                        cur = ""
                    else:
                        cur += c
                parts.append(cur)
                res = []
                for p in parts:
                    if p.strip():
                        for e in expand_use(p):
                            res.append(prefix + e)
                return res
            depth += 1
    return [re.sub(r"\s+as\s+\w+$", "", tree)]


def resolve(path, here, files):
    """The file module a `crate::/super::/self::` path lands in."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = here
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    elif here + (segs[0],) in files:
        base = here
    else:
        return None
    mod = base
    best = base if base in files else None
    for s in segs:
        mod = mod + (s,)
        if mod in files:
            best = mod
        else:
            break
    return best


def crate_edges(crate_src):
    files = module_files(crate_src)
    edges = {m: set() for m in files}
    for mod, path in files.items():
        src = drop_test_modules(strip_comments_and_strings(open(path).read()))
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", src):
            paths += expand_use(m.group(1))
        body = re.sub(r"\buse\s+[^;]+;", "", src)
        paths += re.findall(r"(?<![\w:])(\w+(?:::\w+)+)", body)
        for p in paths:
            p = p.strip().lstrip(":")
            t = resolve(p, mod, files)
            if t is not None and t != mod:
                edges[mod].add(t)
    return files, edges


def sccs(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


FN = re.compile(r"^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def long_functions(path):
    lines = open(path).read().split("\n")
    res = []
    in_test = False
    test_indent = None
    for i, line in enumerate(lines):
        if re.match(r"\s*#\[cfg\(test\)\]", line):
            in_test = True
            test_indent = len(line) - len(line.lstrip())
            continue
        if in_test:
            if line.strip() == "}" and len(line) - len(line.lstrip()) == test_indent:
                in_test = False
            continue
        m = FN.match(line)
        if not m:
            continue
        indent = m.group(1)
        end = None
        for j in range(i, len(lines)):
            if lines[j] == indent + "}" or (j == i and line.rstrip().endswith("}")):
                end = j
                break
            if j > i and lines[j].rstrip().endswith(";") and j == i:
                break
        if end is None:
            continue
        n = end - i + 1
        if n <= LIMIT:
            continue
        allowed = i > 0 and "shape: one flat match" in lines[i - 1]
        if allowed:
            body = lines[i + 1 : end]
            arms = sum(1 for l in body if "=>" in l)
            if arms * 2 < len(body):
                allowed = False
        if not allowed:
            res.append((path, i + 1, m.group(7), n))
    return res


def main():
    show = "--graph" in sys.argv
    bad = False
    crates_dir = os.path.join(ROOT, PRODUCT)
    for crate in sorted(os.listdir(crates_dir)):
        src = os.path.join(crates_dir, crate, "src")
        if not os.path.isdir(src):
            continue
        files, edges = crate_edges(src)
        name = lambda m: "/".join(m) or "(root)"
        if show:
            print(f"{crate}:")
            for m in sorted(edges):
                if edges[m]:
                    print(f"  {name(m)} -> {', '.join(sorted(name(t) for t in edges[m]))}")
        for comp in sccs(edges):
            if len(comp) > 1:
                bad = True
                print(f"import loop in crates/{crate}: " + " <-> ".join(sorted(name(m) for m in comp)))
        for path in files.values():
            for p, line, fn, n in long_functions(path):
                bad = True
                print(f"{os.path.relpath(p, ROOT)}:{line}: fn {fn} is {n} lines (limit {LIMIT})")
    if bad:
        sys.exit(1)
    print("shape: no import loops, no function over", LIMIT, "lines")


if __name__ == "__main__":
    main()
