"""Build attention cascades in Python and print them as attn dialect text.

A cascade (docs/dialect.md) is an ordered list of Einsums over named ranks.
This module writes exactly the text syntax that ``attn-opt`` and ``attnc``
parse; it does not need MLIR's Python bindings. Example (causal attention)::

    from attn.builder import Cascade, exp, log

    c = Cascade("causal", ranks=["b", "h", "m", "p", ("e", 64), ("f", 64)])
    b, h, m, p, e, f = c.rank_exprs()
    q = c.input("q", [b, h, m, e])
    k = c.input("k", [b, h, p, e])
    v = c.input("v", [b, h, p, f])
    qk = c.einsum("qk", [b, h, m, p], q[b, h, m, e] * k[b, h, p, e] * 0.125,
                  reduce="sum", over=[e], cond=p <= m, otherwise=float("-inf"),
                  sparse="causal")
    ...
    c.output("o", o)
    print(c)            # the dialect text

Expressions are built with Python operators on :class:`Expr` values (ranks,
tensor elements, constants) and the functions of this module (``exp``,
``log``, ``tanh``, ...). Comparisons (``<``, ``<=``, ...) build conditions;
``&``, ``|`` and ``~`` are ``and``, ``or`` and ``not``. Plain strings are
accepted wherever an expression is, and are used verbatim.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

__all__ = [
    "Cascade", "Expr", "Rank", "Value", "BuilderError", "const", "size",
    "exp", "exp2", "log", "log2", "tanh", "sigmoid", "sqrt", "abs_", "round_",
    "floor", "pow_", "maximum", "minimum", "select", "cast", "floordiv", "mod",
    "ELEMENT_TYPES",
]

#: Element types of the dialect (``!attn.t<[...], type>``).
ELEMENT_TYPES = ("f64", "f32", "f16", "bf16", "f8E4M3FN", "f8E5M2", "i64",
                 "i32", "i8", "i4", "i1")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {"if", "else", "sum", "max", "min", "topk", "init", "and", "or",
             "not", "inf", "nan", "floordiv", "mod", "ceildiv", "exp", "exp2",
             "log", "log2", "tanh", "sigmoid", "sqrt", "abs", "round",
             "floor", "pow", "select", "cast"}


class BuilderError(ValueError):
    """A cascade that the builder cannot write (bad name, unknown rank...)."""


# Precedence levels of the dialect's infix syntax (higher binds tighter).
_OR, _AND, _NOT, _CMP, _ADD, _MUL, _UNARY, _ATOM = range(1, 9)


def _format_float(x: float) -> str:
    """A float literal the MLIR lexer reads back exactly (``0.125``,
    ``1.0e-05``, ``-inf``)."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = repr(float(x))
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + ("e" + exponent if exponent else "")


class Expr:
    """A map expression, condition or index of the dialect, as text with its
    precedence. Build them with operators; ``str(expr)`` is the text."""

    __slots__ = ("text", "prec")

    def __init__(self, text: str, prec: int = _ATOM):
        self.text = text
        self.prec = prec

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Expr({self.text!r})"

    # Arithmetic.
    def __add__(self, o): return _binary(self, "+", o, _ADD)
    def __radd__(self, o): return _binary(o, "+", self, _ADD)
    def __sub__(self, o): return _binary(self, "-", o, _ADD)
    def __rsub__(self, o): return _binary(o, "-", self, _ADD)
    def __mul__(self, o): return _binary(self, "*", o, _MUL)
    def __rmul__(self, o): return _binary(o, "*", self, _MUL)
    def __truediv__(self, o): return _binary(self, "/", o, _MUL)
    def __rtruediv__(self, o): return _binary(o, "/", self, _MUL)
    def __floordiv__(self, o): return _binary(self, "floordiv", o, _MUL)
    def __mod__(self, o): return _binary(self, "mod", o, _MUL)
    def __neg__(self): return Expr("-" + _wrap(self, _UNARY), _UNARY)

    # Conditions. (Expr is therefore not hashable, like numpy arrays.)
    def __lt__(self, o): return _binary(self, "<", o, _CMP, chain=False)
    def __le__(self, o): return _binary(self, "<=", o, _CMP, chain=False)
    def __gt__(self, o): return _binary(self, ">", o, _CMP, chain=False)
    def __ge__(self, o): return _binary(self, ">=", o, _CMP, chain=False)
    def __eq__(self, o): return _binary(self, "==", o, _CMP, chain=False)  # type: ignore[override]
    def __ne__(self, o): return _binary(self, "<>", o, _CMP, chain=False)  # type: ignore[override]
    def __and__(self, o): return _binary(self, "and", o, _AND)
    def __rand__(self, o): return _binary(o, "and", self, _AND)
    def __or__(self, o): return _binary(self, "or", o, _OR)
    def __ror__(self, o): return _binary(o, "or", self, _OR)
    def __invert__(self): return Expr("not " + _wrap(self, _NOT), _NOT)

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self):
        raise BuilderError(
            "an attn expression has no truth value; use & | ~ instead of "
            "and/or/not, and avoid chained comparisons (a <= b <= c)")


ExprLike = Union[Expr, str, int, float]


def const(x: Union[int, float]) -> Expr:
    """A constant. Integers stay integers (index arithmetic); floats are
    written so that they read back exactly."""
    if isinstance(x, bool):
        raise BuilderError("booleans are not constants of the dialect")
    if isinstance(x, int):
        return Expr(str(x), _ATOM if x >= 0 else _UNARY)
    text = _format_float(float(x))
    return Expr(text, _UNARY if text.startswith("-") else _ATOM)


def _expr(x: ExprLike) -> Expr:
    if isinstance(x, Expr):
        return x
    if isinstance(x, str):
        # Verbatim text: parenthesised when combined, unless it is a name.
        return Expr(x, _ATOM if _IDENT.match(x) else _OR - 1)
    if isinstance(x, (int, float)):
        return const(x)
    raise BuilderError(f"cannot use {type(x).__name__} {x!r} in an expression")


def _wrap(x: ExprLike, level: int) -> str:
    e = _expr(x)
    return e.text if e.prec >= level else f"({e.text})"


def _binary(a: ExprLike, op: str, b: ExprLike, level: int,
            chain: bool = True) -> Expr:
    # Left-associative: the left operand may sit at the same level, the
    # right one must bind tighter. Comparisons do not chain at all.
    left = _wrap(a, level if chain else level + 1)
    right = _wrap(b, level + 1)
    return Expr(f"{left} {op} {right}", level)


def _call(name: str, *args: ExprLike) -> Expr:
    return Expr(f"{name}(" + ", ".join(_expr(a).text for a in args) + ")")


def exp(x: ExprLike) -> Expr: return _call("exp", x)
def exp2(x: ExprLike) -> Expr: return _call("exp2", x)
def log(x: ExprLike) -> Expr: return _call("log", x)
def log2(x: ExprLike) -> Expr: return _call("log2", x)
def tanh(x: ExprLike) -> Expr: return _call("tanh", x)
def sigmoid(x: ExprLike) -> Expr: return _call("sigmoid", x)
def sqrt(x: ExprLike) -> Expr: return _call("sqrt", x)
def abs_(x: ExprLike) -> Expr: return _call("abs", x)
def round_(x: ExprLike) -> Expr: return _call("round", x)
def floor(x: ExprLike) -> Expr: return _call("floor", x)
def pow_(x: ExprLike, y: ExprLike) -> Expr: return _call("pow", x, y)
def maximum(x: ExprLike, y: ExprLike) -> Expr: return _call("max", x, y)
def minimum(x: ExprLike, y: ExprLike) -> Expr: return _call("min", x, y)


def select(c: ExprLike, a: ExprLike, b: ExprLike) -> Expr:
    """``select(c, a, b)``: a where the condition c holds, else b."""
    return _call("select", c, a, b)


def cast(x: ExprLike, dtype: str) -> Expr:
    """``cast(x : dtype)``: round x to an element type."""
    _check_dtype(dtype)
    return Expr(f"cast({_expr(x).text} : {dtype})")


def floordiv(x: ExprLike, y: ExprLike) -> Expr:
    return _binary(x, "floordiv", y, _MUL)


def mod(x: ExprLike, y: ExprLike) -> Expr:
    return _binary(x, "mod", y, _MUL)


def size(rank: Union["Rank", str]) -> Expr:
    """``|r|``: the size of a rank, as a value."""
    return Expr(f"|{rank if isinstance(rank, str) else rank.name}|")


class Rank(Expr):
    """A rank of a cascade; as an expression, its index value."""

    __slots__ = ("name", "static_size")

    def __init__(self, name: str, static_size: Optional[int] = None):
        super().__init__(name, _ATOM)
        self.name = name
        self.static_size = static_size

    @property
    def size(self) -> Expr:
        """``|r|`` as an expression."""
        return size(self.name)

    def __repr__(self) -> str:
        s = "" if self.static_size is None else f" = {self.static_size}"
        return f"Rank({self.name}{s})"


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _IDENT.match(name):
        raise BuilderError(f"{kind} name {name!r} is not an identifier "
                           "([A-Za-z_][A-Za-z0-9_]*)")
    if name in _RESERVED:
        raise BuilderError(f"{kind} name {name!r} is a reserved word")


def _check_dtype(dtype: str) -> None:
    if dtype not in ELEMENT_TYPES:
        raise BuilderError(f"unknown element type {dtype!r} (expected one of "
                           + ", ".join(ELEMENT_TYPES) + ")")


def _rank_name(r: Union[Rank, str]) -> str:
    return r.name if isinstance(r, Rank) else str(r)


@dataclass
class Value:
    """A tensor of the cascade: an argument or the result of an Einsum.
    Index it with ranks or index expressions to read one element:
    ``q[b, h, m, e]``, ``k[b, h // 4, p, e]``."""

    cascade: "Cascade" = field(repr=False)
    name: str
    ranks: Tuple[str, ...]
    dtype: str
    attrs: Dict[str, str] = field(default_factory=dict)

    def __getitem__(self, index) -> Expr:
        if not isinstance(index, tuple):
            index = (index,)
        if len(index) != len(self.ranks):
            raise BuilderError(
                f"%{self.name} has {len(self.ranks)} dimensions "
                f"[{', '.join(self.ranks)}], indexed with {len(index)}")
        parts = [_expr(i).text for i in index]
        return Expr(f"%{self.name}[" + ", ".join(parts) + "]")

    @property
    def type(self) -> str:
        """The tensor type, ``!attn.t<[b, h, m], f32>``."""
        return f"!attn.t<[{', '.join(self.ranks)}], {self.dtype}>"


@dataclass
class _Einsum:
    value: Value
    index: List[str]
    expr: str
    reduce: Optional[str]
    over: List[str]
    cond: Optional[str]
    otherwise: Optional[str]
    init: Optional[str]
    attrs: Dict[str, str]

    def text(self) -> str:
        s = f"%{self.value.name} = attn.einsum [{', '.join(self.index)}] = {self.expr}"
        if self.reduce:
            s += f" {self.reduce}({', '.join(self.over)})"
        if self.cond is not None:
            s += f" if ({self.cond})"
        if self.otherwise is not None:
            s += f" else {self.otherwise}"
        if self.init is not None:
            s += f" init({self.init})"
        if self.attrs:
            s += " {" + ", ".join(f"{k} = {v}" for k, v in self.attrs.items()) + "}"
        return s + f" : {self.value.dtype}"


class Cascade:
    """An attention cascade under construction.

    ``ranks`` lists the ranks in order: a name (dynamic size, taken from the
    tensors at run time) or ``(name, size)`` (static). ``relations`` are size
    relations ``(lhs, factor, rhs)`` meaning ``|lhs| = factor * |rhs|``
    (GQA: ``("h", 4, "g")``). ``comment`` becomes ``//`` lines above the
    cascade.
    """

    def __init__(self, name: str,
                 ranks: Sequence[Union[str, Tuple[str, int]]],
                 relations: Sequence[Tuple[str, int, str]] = (),
                 comment: str = ""):
        _check_name("cascade", name)
        self.name = name
        self.comment = comment
        self._ranks: Dict[str, Rank] = {}
        for r in ranks:
            rname, rsize = (r, None) if isinstance(r, str) else r
            _check_name("rank", rname)
            if rname in self._ranks:
                raise BuilderError(f"rank {rname!r} appears twice")
            if rsize is not None and (not isinstance(rsize, int) or rsize < 1):
                raise BuilderError(f"rank {rname!r}: static size must be a "
                                   f"positive int, got {rsize!r}")
            self._ranks[rname] = Rank(rname, rsize)
        self.relations: List[Tuple[str, int, str]] = []
        for lhs, factor, rhs in relations:
            self._need_ranks([lhs, rhs], "relation")
            if not isinstance(factor, int) or factor < 1:
                raise BuilderError(f"relation |{lhs}| = {factor} * |{rhs}|: "
                                   "the factor must be a positive int")
            self.relations.append((_rank_name(lhs), factor, _rank_name(rhs)))
        self._inputs: List[Value] = []
        self._einsums: List[_Einsum] = []
        self._outputs: List[Tuple[str, Value]] = []
        self._names: set = set()

    # -- ranks ---------------------------------------------------------------
    def rank(self, name: str) -> Rank:
        """The rank called ``name`` (an expression: its index value)."""
        try:
            return self._ranks[name]
        except KeyError:
            raise BuilderError(f"cascade @{self.name} has no rank {name!r} "
                               f"(ranks: {', '.join(self._ranks)})") from None

    def rank_exprs(self) -> Tuple[Rank, ...]:
        """All ranks, in order: ``b, h, m, p, e, f = c.rank_exprs()``."""
        return tuple(self._ranks.values())

    @property
    def ranks(self) -> Dict[str, Optional[int]]:
        """Rank name -> static size (None: dynamic)."""
        return {n: r.static_size for n, r in self._ranks.items()}

    def _need_ranks(self, ranks: Iterable[Union[Rank, str]], what: str) -> List[str]:
        names = [_rank_name(r) for r in ranks]
        for n in names:
            if n not in self._ranks:
                raise BuilderError(f"{what}: unknown rank {n!r} in cascade "
                                   f"@{self.name} (ranks: {', '.join(self._ranks)})")
        return names

    def _new_name(self, kind: str, name: str) -> None:
        _check_name(kind, name)
        if name in self._names or name in self._ranks:
            raise BuilderError(f"name {name!r} is already used in cascade "
                               f"@{self.name}")
        self._names.add(name)

    # -- tensors -------------------------------------------------------------
    def input(self, name: str, ranks: Sequence[Union[Rank, str]],
              dtype: str = "f32", *, sparse: Optional[str] = None,
              attrs: Optional[Dict[str, str]] = None) -> Value:
        """Declares an argument ``%name: !attn.t<[ranks], dtype>``;
        ``sparse`` names the runtime metadata an integer argument carries
        (``"seq_lens"``, ``"cu_seqlens"``, ...)."""
        if self._einsums:
            raise BuilderError("declare every input before the first einsum")
        _check_dtype(dtype)
        rank_names = tuple(self._need_ranks(ranks, f"input {name}"))
        annotations = dict(attrs or {})
        if sparse is not None:
            _check_name("sparse class", sparse)
            annotations["attn.sparse"] = f"#attn.sparse<{sparse}>"
        self._new_name("argument", name)
        v = Value(self, name, rank_names, dtype, annotations)
        self._inputs.append(v)
        return v

    def einsum(self, name: str, index: Sequence[Union[Rank, str]],
               expr: ExprLike, *, reduce: Optional[str] = None,
               over: Sequence[Union[Rank, str]] = (),
               cond: Optional[ExprLike] = None,
               otherwise: Optional[ExprLike] = None,
               init: Optional[ExprLike] = None,
               sparse: Optional[str] = None,
               attrs: Optional[Dict[str, str]] = None,
               dtype: str = "f32") -> Value:
        """Appends ``%name = attn.einsum [index] = expr reduce(over) if (cond)
        else otherwise : dtype`` and returns its result.

        ``reduce`` is ``"sum"``, ``"max"`` or ``"min"`` over the ranks
        ``over``; ``sparse`` names the static mask class of the condition
        (``"causal"``, ``"window"``, ...; becomes
        ``{attn.sparse = #attn.sparse<...>}``); ``attrs`` adds other
        annotations verbatim. Index entries are ranks (``m``) or, for an
        iterative Einsum, strings such as ``"p1 + 1"``.
        """
        _check_name("einsum", name)
        _check_dtype(dtype)
        if reduce not in (None, "sum", "max", "min"):
            raise BuilderError(f"einsum {name}: reduce must be sum, max or "
                               f"min, got {reduce!r}")
        over_names = self._need_ranks(over, f"einsum {name}")
        if over_names and not reduce:
            raise BuilderError(f"einsum {name}: 'over' needs 'reduce'")
        if reduce and not over_names:
            raise BuilderError(f"einsum {name}: reduce={reduce!r} needs the "
                               "ranks it reduces ('over')")
        index_text = [_expr(i).text for i in index]
        result_ranks = []
        for t in index_text:
            base = t.split()[0] if t.split() else t
            result_ranks.append(base)
        self._need_ranks(result_ranks, f"einsum {name} index")
        if otherwise is not None and cond is None:
            raise BuilderError(f"einsum {name}: 'otherwise' needs 'cond'")
        annotations = dict(attrs or {})
        if sparse is not None:
            _check_name("sparse class", sparse)
            annotations["attn.sparse"] = f"#attn.sparse<{sparse}>"
        self._new_name("einsum", name)
        v = Value(self, name, tuple(result_ranks), dtype)
        self._einsums.append(_Einsum(
            value=v, index=index_text, expr=_expr(expr).text, reduce=reduce,
            over=over_names, cond=None if cond is None else _expr(cond).text,
            otherwise=None if otherwise is None else _expr(otherwise).text,
            init=None if init is None else _expr(init).text,
            attrs=annotations))
        return v

    def output(self, name: str, value: Value) -> None:
        """Makes ``value`` a result of the cascade, called ``name`` (the
        first output is O; later ones, such as LSE, are optional outputs of
        the generated kernel)."""
        _check_name("result", name)
        if any(n == name for n, _ in self._outputs):
            raise BuilderError(f"result {name!r} appears twice")
        if not isinstance(value, Value) or value.cascade is not self:
            raise BuilderError(f"result {name!r}: not a value of this cascade")
        if value in self._inputs:
            raise BuilderError(f"result {name!r}: an input cannot be a result")
        self._outputs.append((name, value))

    # -- text ----------------------------------------------------------------
    @property
    def input_names(self) -> List[str]:
        return [v.name for v in self._inputs]

    @property
    def output_names(self) -> List[str]:
        return [n for n, _ in self._outputs]

    def text(self) -> str:
        """The cascade in the dialect's text syntax (a complete .mlir file)."""
        if not self._outputs:
            raise BuilderError(f"cascade @{self.name} has no output")
        if not self._inputs:
            raise BuilderError(f"cascade @{self.name} has no input")
        lines = [f"// {l}".rstrip() for l in self.comment.splitlines()]
        ranks = ", ".join(r.name if r.static_size is None
                          else f"{r.name} = {r.static_size}"
                          for r in self._ranks.values())
        head = f"attn.cascade @{self.name} ranks({ranks})"
        if self.relations:
            head += " where(" + ", ".join(f"{l} = {f} * {r}"
                                          for l, f, r in self.relations) + ")"
        lines.append(head)
        args = ", ".join(
            f"%{v.name}: {v.type}" + (" {" + ", ".join(
                f"{k} = {a}" for k, a in v.attrs.items()) + "}" if v.attrs else "")
            for v in self._inputs)
        res = ", ".join(f"{n}: {v.type}" for n, v in self._outputs)
        lines.append(f"    ({args})")
        lines.append(f"    -> ({res}) {{")
        for e in self._einsums:
            lines.append("  " + e.text())
        lines.append("  attn.yield " + ", ".join(f"%{v.name}" for _, v in self._outputs)
                     + " : " + ", ".join(v.type for _, v in self._outputs))
        lines.append("}")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return (f"Cascade(@{self.name}, inputs={self.input_names}, "
                f"outputs={self.output_names})")

    def save(self, path) -> str:
        """Writes the text to ``path`` and returns the path."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.text())
        return str(path)
