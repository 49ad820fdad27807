"""Command line: ``python -m attn {check,bench,emit} ...``.

    python -m attn check examples/causal.mlir --size m=113 --rank-size e=59,f=59
    python -m attn check --variant alibi --head-dim 128
    python -m attn bench examples/mha.mlir --size b=1,h=8,m=1024,p=1024
    python -m attn emit causal --head-dim 128 > causal128.mlir
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Dict, List, Optional

import numpy as np

from . import variants
from ._tools import ToolError
from .builder import BuilderError
from .checks import bench, check
from .compiler import TARGETS, KernelError


def _sizes(values: Optional[List[str]]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for v in values or []:
        for item in v.split(","):
            if not item:
                continue
            name, eq, n = item.partition("=")
            if not eq or not name or not n.strip().lstrip("-").isdigit():
                raise SystemExit(f"attn: expected rank=N, got {item!r}")
            out[name.strip()] = int(n)
    return out


def _variant_kwargs(fn, args) -> dict:
    params = inspect.signature(fn).parameters
    kw = {}
    for opt in ("head_dim", "value_dim", "window", "group", "cap", "scale",
                "dtype"):
        val = getattr(args, opt, None)
        if val is not None:
            if opt not in params:
                raise SystemExit(f"attn: variant {fn.__name__} has no "
                                 f"--{opt.replace('_', '-')}")
            kw[opt] = val
    if getattr(args, "no_lse", False):
        kw["lse"] = False
    return kw


def _add_variant_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head-dim", type=int, help="head dim e (and f)")
    p.add_argument("--value-dim", type=int, help="value head dim f")
    p.add_argument("--window", type=int, help="window (variant window)")
    p.add_argument("--group", type=int, help="query heads per KV head (gqa)")
    p.add_argument("--cap", type=float, help="soft cap (softcap)")
    p.add_argument("--scale", type=float, help="score scale (default 1/sqrt(e))")
    p.add_argument("--dtype", help="input element type (f32, f16, bf16)")
    p.add_argument("--no-lse", action="store_true", help="no LSE output")


def _source(args):
    if args.variant:
        if args.file:
            raise SystemExit("attn: give a FILE or --variant, not both")
        fn = variants.VARIANTS.get(args.variant)
        if fn is None:
            raise SystemExit(f"attn: unknown variant {args.variant!r} "
                             f"({', '.join(variants.VARIANTS)})")
        return fn(**_variant_kwargs(fn, args))
    if not args.file:
        raise SystemExit("attn: give a cascade FILE (.mlir) or --variant NAME")
    return args.file


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m attn",
        description="Compile attention cascades with attnc, check them "
                    "against the float64 reference, time them, or print "
                    "standard variants as dialect text.")
    sub = ap.add_subparsers(dest="command", required=True)

    for name, helptext in (("check", "compile and compare with the float64 "
                                     "reference interpreter (exit 1 on failure)"),
                           ("bench", "compile and time on random inputs")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("file", nargs="?", help="cascade file (.mlir)")
        p.add_argument("--variant", help="a standard variant instead of FILE: "
                       + ", ".join(variants.VARIANTS))
        _add_variant_options(p)
        p.add_argument("--cascade", help="cascade of FILE (default: the only one)")
        p.add_argument("--size", action="append", metavar="RANK=N[,...]",
                       help="size of a dynamic rank (repeatable)")
        p.add_argument("--rank-size", action="append", metavar="RANK=N[,...]",
                       help="set a static rank size before compiling "
                            "(as attnc --rank-size)")
        p.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                       help="an input from a .npy file (needed for integer "
                            "arguments such as prefix_len; repeatable)")
        p.add_argument("--target", default="host", choices=TARGETS)
        p.add_argument("--threads", type=int, default=0,
                       help="threads (0: one per hardware thread)")
        if name == "check":
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--atol", type=float)
            p.add_argument("--rtol", type=float)
        else:
            p.add_argument("--repeat", type=int, default=10)
            p.add_argument("--warmup", type=int, default=1)

    p = sub.add_parser("emit", help="print a standard variant as dialect text")
    p.add_argument("variant", choices=sorted(variants.VARIANTS))
    _add_variant_options(p)
    p.add_argument("-o", "--output", help="write to this file instead of stdout")

    args = ap.parse_args(argv)
    try:
        if args.command == "emit":
            fn = variants.VARIANTS[args.variant]
            text = fn(**_variant_kwargs(fn, args)).text()
            if args.output:
                with open(args.output, "w", encoding="utf-8") as f:
                    f.write(text)
            else:
                sys.stdout.write(text)
            return 0
        source = _source(args)
        inputs = {}
        for item in args.input or []:
            name, eq, path = item.partition("=")
            if not eq or not name or not path:
                raise SystemExit(f"attn: expected NAME=FILE.npy, got {item!r}")
            inputs[name] = np.load(path)
        common = dict(target=args.target, cascade=args.cascade,
                      inputs=inputs or None,
                      rank_sizes=_sizes(args.rank_size),
                      num_threads=args.threads)
        if args.command == "check":
            result = check(source, _sizes(args.size) or None, seed=args.seed,
                           atol=args.atol, rtol=args.rtol, **common)
            print(result)
            return 0 if result.ok else 1
        result = bench(source, _sizes(args.size) or None, repeat=args.repeat,
                       warmup=args.warmup, **common)
        print(result)
        return 0
    except (ToolError, KernelError, BuilderError, ValueError, TypeError,
            FileNotFoundError) as e:
        print(f"attn: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
