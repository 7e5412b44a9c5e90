#!/usr/bin/env python3
"""Mechanical rewrite of a CUDA .cu file into C++ for the CPU emulator.
Line numbers are kept (a #line directive names the original file):
  k<<<grid, block[, smem[, stream]]>>>(args);  ->  ::emu::Launch(grid, block, ...).at(__FILE__, __LINE__).go("k", k, args);
  extern __shared__ T name[];                  ->  T *name = reinterpret_cast<T *>(::emu::shared_dynamic());
  __shared__ T a[n][m], b[k];                  ->  per-block references from ::emu::shared_static
  __launch_bounds__(X) ... {                   ->  ... { ::emu::check_launch_bounds(X, ...);
usage: transform.py in.cu out.cpp"""
import re
import sys


def match_back_angle(s, i):
    """s[i] == '>': index of the matching '<'"""
    depth = 0
    while i >= 0:
        if s[i] == '>':
            depth += 1
        elif s[i] == '<':
            depth -= 1
            if depth == 0:
                return i
        i -= 1
    raise SystemExit("unbalanced template arguments before a launch")


def match_paren(s, i):
    """s[i] == '(': index of the matching ')'"""
    depth = 0
    while i < len(s):
        if s[i] == '(':
            depth += 1
        elif s[i] == ')':
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise SystemExit("unbalanced parentheses in a launch")


def rewrite_launches(s):
    out = []
    pos = 0
    n = 0
    while True:
        i = s.find('<<<', pos)
        if i < 0:
            break
        # the kernel expression before <<<
        j = i - 1
        while j >= 0 and s[j].isspace():
            j -= 1
        end_k = j + 1
        if s[j] == '>':
            j = match_back_angle(s, j) - 1
        while j >= 0 and (s[j].isalnum() or s[j] in '_:'):
            j -= 1
        start_k = j + 1
        kernel = s[start_k:end_k]
        name = re.sub(r'\s+', '', kernel)
        k = s.find('>>>', i)
        config = s[i + 3:k]
        p = k + 3
        while s[p].isspace():
            p += 1
        if s[p] != '(':
            raise SystemExit("launch without arguments at offset %d" % p)
        q = match_paren(s, p)
        args = s[p + 1:q]
        call = '::emu::Launch(%s).at(__FILE__, __LINE__).go("%s", %s%s%s)' % (
            config, name, kernel, ', ' if args.strip() else '', args)
        out.append(s[pos:start_k])
        out.append(call)
        pos = q + 1
        n += 1
    out.append(s[pos:])
    return ''.join(out), n


def rewrite_dynamic_shared(s):
    pat = re.compile(r'extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([\w:<>\s\*]+?)\s+(\w+)\s*\[\s*\]\s*;')
    return pat.subn(lambda m: '%s *%s = reinterpret_cast<%s *>(::emu::shared_dynamic());' %
                    (m.group(1).strip(), m.group(2), m.group(1).strip()), s)


def rewrite_static_shared(s, fname):
    pat = re.compile(r'__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([^;]*);')

    def repl(m):
        line = s.count('\n', 0, m.start()) + 1
        body = m.group(1)
        decls = re.findall(r'(\w+)\s*((?:\[[^\]]*\]\s*)*)(?:,|$)', body)
        first = re.search(r'(\w+)\s*((?:\[[^\]]*\]\s*)*)(?:,|$)', body)
        typ = body[:first.start()].strip()
        parts = []
        for name, dims in decls:
            if not name:
                continue
            dims = re.sub(r'\s+', '', dims)
            key = '"%s:%d:%s"' % (fname, line, name)
            if dims:
                parts.append('%s (&%s)%s = *reinterpret_cast<%s(*)%s>(::emu::shared_static(%s, sizeof(%s%s), '
                             'alignof(%s)));' % (typ, name, dims, typ, dims, key, typ, dims, typ))
            else:
                parts.append('%s &%s = *reinterpret_cast<%s *>(::emu::shared_static(%s, sizeof(%s), alignof(%s)));'
                             % (typ, name, typ, key, typ, typ))
        return ' '.join(parts)

    return pat.subn(repl, s)


def rewrite_launch_bounds(s):
    n = 0
    while True:
        m = re.search(r'__launch_bounds__\s*\(', s)
        if not m:
            break
        p = m.end() - 1
        q = match_paren(s, p)
        args = s[p + 1:q]
        bound = args.split(',')[0].strip()
        brace = s.find('{', q)
        s = s[:m.start()] + s[q + 1:brace + 1] + ' ::emu::check_launch_bounds(%s, __FILE__, __LINE__);' % bound + \
            s[brace + 1:]
        n += 1
    return s, n


def main():
    src, dst = sys.argv[1], sys.argv[2]
    s = open(src).read()
    s, nl = rewrite_launches(s)
    s, nd = rewrite_dynamic_shared(s)
    s, ns = rewrite_static_shared(s, src)
    s, nb = rewrite_launch_bounds(s)
    if '<<<' in s or '__shared__' in s:
        raise SystemExit("%s: untransformed CUDA syntax left" % src)
    open(dst, 'w').write('#line 1 "%s"\n' % src + s)
    print("%s: %d launches, %d dynamic shared, %d static shared, %d launch bounds" % (src, nl, nd, ns, nb))


main()
