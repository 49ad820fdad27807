#!/usr/bin/env python3
"""Robustness check of attn-opt on malformed input (a small mutation fuzzer).

Usage: mutate.py EXAMPLES_DIR ATTN_OPT [--mutants N] [--seed S]

Takes the *.mlir files of EXAMPLES_DIR, applies deterministic (seeded)
mutations to them (N mutants in all, 300 by default, spread over the files) (delete a token, duplicate a token, swap two tokens, truncate;
one to three of them per mutant) and runs ATTN_OPT on each mutant. Each run
must end with exit code 0 or 1, never by a signal or a crash; a run that fails
must say why ("error:" on stderr); a run that succeeds must print IR that
ATTN_OPT reads back. Prints a summary and exits 0 when all runs pass, else
prints the failing mutants and exits 1. Standard library only.
"""

import argparse
import concurrent.futures
import os
import random
import re
import subprocess
import sys

# Tokens of the attn syntax: SSA names, types, attributes, symbols, numbers,
# identifiers, two-character operators, and any other single character.
TOKEN = re.compile(
    r"%[\w.$-]+|![\w.]+|#[\w.]+|@[\w.$-]+"
    r"|\d+\.\d*(?:[eE][+-]?\d+)?|\d+"
    r"|[A-Za-z_][\w.$]*"
    r"|->|<=|>=|==|<>"
    r"|\S")
TIMEOUT_S = 60


def strip_comments(text):
    """Drops the comment lines, so that mutations hit code."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.lstrip().startswith("//"))


def mutate_once(text, rng):
    """Applies one random mutation; returns (new text, description)."""
    spans = [m.span() for m in TOKEN.finditer(text)]
    if len(spans) < 2:
        return text, "none"
    kind = rng.choice(["delete", "duplicate", "swap", "truncate"])
    if kind == "delete":
        s, e = spans[rng.randrange(len(spans))]
        return text[:s] + text[e:], "delete %r at %d" % (text[s:e], s)
    if kind == "duplicate":
        s, e = spans[rng.randrange(len(spans))]
        return (text[:e] + " " + text[s:e] + text[e:],
                "duplicate %r at %d" % (text[s:e], s))
    if kind == "swap":
        i, j = sorted(rng.sample(range(len(spans)), 2))
        (si, ei), (sj, ej) = spans[i], spans[j]
        return (text[:si] + text[sj:ej] + text[ei:sj] + text[si:ei] + text[ej:],
                "swap %r at %d with %r at %d" % (text[si:ei], si, text[sj:ej], sj))
    pos = rng.randrange(len(text))
    return text[:pos], "truncate at %d" % pos


def make_mutants(path, count, seed):
    with open(path) as f:
        text = strip_comments(f.read())
    name = os.path.basename(path)
    mutants = []
    for i in range(count):
        rng = random.Random("%s:%s:%d" % (seed, name, i))
        mutant, steps = text, []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            mutant, step = mutate_once(mutant, rng)
            steps.append(step)
        mutants.append(("%s #%d (%s)" % (name, i, "; ".join(steps)), mutant))
    return mutants


def run(tool, text):
    try:
        p = subprocess.run([tool, "-"], input=text, capture_output=True,
                           text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, "", "timed out after %d s (a hang?)" % TIMEOUT_S
    return p.returncode, p.stdout, p.stderr


def check(tool, name, text):
    """Returns (accepted, None) if attn-opt behaves on `text`, else
    (False, a description of the problem)."""
    rc, out, err = run(tool, text)
    return rc == 0, problem(tool, rc, out, err)


def problem(tool, rc, out, err):
    if rc is None:
        return err
    if rc not in (0, 1):
        how = "killed by signal %d" % -rc if rc < 0 else "exit code %d" % rc
        return "%s\n%s" % (how, err[-2000:])
    if rc == 1 and "error:" not in err:
        return "failed without a diagnostic\n%s" % err[-2000:]
    if rc == 0:
        # What was accepted must print back to something accepted.
        rc2, _, err2 = run(tool, out)
        if rc2 != 0:
            return "printed IR does not read back (exit %s)\n%s\n%s" % (
                rc2, out[-2000:], err2[-2000:])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("examples")
    ap.add_argument("attn_opt")
    ap.add_argument("--mutants", type=int, default=300)
    ap.add_argument("--seed", default="attn")
    args = ap.parse_args()

    files = sorted(os.path.join(args.examples, f)
                   for f in os.listdir(args.examples) if f.endswith(".mlir"))
    if not files:
        print("no .mlir files in %s" % args.examples)
        return 1
    mutants = []
    for i, path in enumerate(files):
        count = args.mutants // len(files) + (i < args.mutants % len(files))
        mutants += make_mutants(path, count, args.seed)

    failures, accepted = [], 0
    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda m: (m, check(args.attn_opt, *m)), mutants)
        for (name, text), (ok, why) in results:
            if why:
                failures.append((name, text, why))
            accepted += ok

    for name, text, why in failures:
        print("FAIL: %s: %s" % (name, why))
        print("---- mutant ----\n%s\n----------------" % text)
    print("%d mutants of %d files: %d accepted, %d rejected with a "
          "diagnostic, %d failures"
          % (len(mutants), len(files), accepted,
             len(mutants) - accepted - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
