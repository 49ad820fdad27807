// RUN: attn-opt %s -split-input-file -verify-diagnostics

// Parser errors of the attn dialect: one malformed input per chunk. Every
// error is located and says what was expected.

/// Garbage in place of an expression.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected an expression: an operand element, a rank, a number or a function call}}
  %o = attn.einsum [m] = , sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A symbol reference in place of an expression.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected an expression: an operand element, a rank, a number or a function call}}
  %o = attn.einsum [m] = @x[m, p] sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An empty expression.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected an expression: an operand element, a rank, a number or a function call}}
  %o = attn.einsum [m] = : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// Empty parentheses.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected an expression: an operand element, a rank, a number or a function call}}
  %o = attn.einsum [m] = %x[m, p] * () : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// Two expressions without an operator between them.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected ':' and the element type, or an operator, a reduction (sum/max/min), topk, if, else, init or attributes}}
  %o = attn.einsum [m] = %x[m, p] %x[m, p] sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An unbalanced parenthesis.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected ')'}}
  %o = attn.einsum [m] = exp((%x[m, p]) sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An unbalanced bracket.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected ']'}}
  %o = attn.einsum [m] = %x[m, p sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A closing bracket too many.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected ':' and the element type, or an operator, a reduction (sum/max/min), topk, if, else, init or attributes}}
  %o = attn.einsum [m] = %x[m, p]] sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An unbalanced rank-size bar.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected '|'}}
  %o = attn.einsum [m] = %x[m, p] * |p sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An unknown function: a name followed by ( is a call, not a rank.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{unknown function 'foo' (expected one of exp, exp2, log, log2, tanh, sigmoid, sqrt, abs, round, floor, pow, max, min, select, not, lt, le, gt, ge, eq, ne, cast)}}
  %o = attn.einsum [m] = foo(%x[m, p]) sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A function with too many arguments.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'exp' takes 1 argument, got 2}}
  %o = attn.einsum [m] = exp(%x[m, p], 2.0) sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A function with too few arguments.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'select' takes 3 arguments, got 2}}
  %o = attn.einsum [m] = select(p <= m, %x[m, p]) sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A function name without arguments.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected '('}}
  %o = attn.einsum [m] = exp + %x[m, p] sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A single '=' in place of '=='.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected '==' (a single '=' is not an operator)}}
  %o = attn.einsum [m] = %x[m, p] sum(p) if (p = m) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A reserved name used as a rank.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'init' is reserved and cannot name a rank}}
  %o = attn.einsum [m] = %x[m, init] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// 'floordiv 0'.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'floordiv' by zero}}
  %o = attn.einsum [m] = %x[m, p floordiv 0] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// 'floordiv 0' on a value that is not affine.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'floordiv' by zero}}
  %o = attn.einsum [m] = %x[m, p] floordiv 0 sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// 'mod' by a negative constant.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'mod' by a non-positive constant (-4)}}
  %o = attn.einsum [m] = %x[m, p mod -4] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// 'ceildiv' by a rank size, which is not a constant.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'ceildiv' needs an affine left operand and a positive integer divisor}}
  %o = attn.einsum [m] = %x[m, p ceildiv |p|] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// 'ceildiv' of a value that is not affine.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'ceildiv' needs an affine left operand and a positive integer divisor}}
  %o = attn.einsum [m] = %x[m, p] ceildiv 2 sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An integer constant out of range.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{integer constant out of range}}
  %o = attn.einsum [m] = %x[m, p + 140737488355328] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A huge integer constant.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{integer constant out of range}}
  %o = attn.einsum [m] = %x[m, p] * 123456789012345678901234567890 sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// Parentheses nested 300 deep.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expression nests more than 256 levels deep}}
  %o = attn.einsum [m] = ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((%x[m, p])))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))) sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A sum of 300 terms: a tree 300 levels deep.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expression nests more than 256 levels deep}}
  %o = attn.einsum [m] = %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] + %x[m, p] sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An affine index 300 levels deep.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expression nests more than 256 levels deep}}
  %o = attn.einsum [m] = %x[m mod 2 mod 3 mod 4 mod 5 mod 6 mod 7 mod 8 mod 9 mod 10 mod 11 mod 12 mod 13 mod 14 mod 15 mod 16 mod 17 mod 18 mod 19 mod 20 mod 21 mod 22 mod 23 mod 24 mod 25 mod 26 mod 27 mod 28 mod 29 mod 30 mod 31 mod 32 mod 33 mod 34 mod 35 mod 36 mod 37 mod 38 mod 39 mod 40 mod 41 mod 42 mod 43 mod 44 mod 45 mod 46 mod 47 mod 48 mod 49 mod 50 mod 51 mod 52 mod 53 mod 54 mod 55 mod 56 mod 57 mod 58 mod 59 mod 60 mod 61 mod 62 mod 63 mod 64 mod 65 mod 66 mod 67 mod 68 mod 69 mod 70 mod 71 mod 72 mod 73 mod 74 mod 75 mod 76 mod 77 mod 78 mod 79 mod 80 mod 81 mod 82 mod 83 mod 84 mod 85 mod 86 mod 87 mod 88 mod 89 mod 90 mod 91 mod 92 mod 93 mod 94 mod 95 mod 96 mod 97 mod 98 mod 99 mod 100 mod 101 mod 102 mod 103 mod 104 mod 105 mod 106 mod 107 mod 108 mod 109 mod 110 mod 111 mod 112 mod 113 mod 114 mod 115 mod 116 mod 117 mod 118 mod 119 mod 120 mod 121 mod 122 mod 123 mod 124 mod 125 mod 126 mod 127 mod 128 mod 129 mod 130 mod 131 mod 132 mod 133 mod 134 mod 135 mod 136 mod 137 mod 138 mod 139 mod 140 mod 141 mod 142 mod 143 mod 144 mod 145 mod 146 mod 147 mod 148 mod 149 mod 150 mod 151 mod 152 mod 153 mod 154 mod 155 mod 156 mod 157 mod 158 mod 159 mod 160 mod 161 mod 162 mod 163 mod 164 mod 165 mod 166 mod 167 mod 168 mod 169 mod 170 mod 171 mod 172 mod 173 mod 174 mod 175 mod 176 mod 177 mod 178 mod 179 mod 180 mod 181 mod 182 mod 183 mod 184 mod 185 mod 186 mod 187 mod 188 mod 189 mod 190 mod 191 mod 192 mod 193 mod 194 mod 195 mod 196 mod 197 mod 198 mod 199 mod 200 mod 201 mod 202 mod 203 mod 204 mod 205 mod 206 mod 207 mod 208 mod 209 mod 210 mod 211 mod 212 mod 213 mod 214 mod 215 mod 216 mod 217 mod 218 mod 219 mod 220 mod 221 mod 222 mod 223 mod 224 mod 225 mod 226 mod 227 mod 228 mod 229 mod 230 mod 231 mod 232 mod 233 mod 234 mod 235 mod 236 mod 237 mod 238 mod 239 mod 240 mod 241 mod 242 mod 243 mod 244 mod 245 mod 246 mod 247 mod 248 mod 249 mod 250 mod 251 mod 252 mod 253 mod 254 mod 255 mod 256 mod 257 mod 258 mod 259 mod 260 mod 261 mod 262 mod 263 mod 264 mod 265 mod 266 mod 267 mod 268 mod 269 mod 270 mod 271 mod 272 mod 273 mod 274 mod 275 mod 276 mod 277 mod 278 mod 279 mod 280 mod 281 mod 282 mod 283 mod 284 mod 285 mod 286 mod 287 mod 288 mod 289 mod 290 mod 291 mod 292 mod 293 mod 294 mod 295 mod 296 mod 297 mod 298 mod 299 mod 300 mod 301, p] sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An output index that is not affine.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{output indices are ranks (or 'r + 1' for an iterative rank)}}
  %o = attn.einsum [%x[m, p]] = 1.0 : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An output index 'r + 2'.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{output indices are ranks (or 'r + 1' for an iterative rank)}}
  %o = attn.einsum [m + 2] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A non-constant initial value.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{init takes a constant}}
  %o = attn.einsum [m] = %x[m, p] sum(p) init(%x[m, p]) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A non-constant 'else' value.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{else takes a constant}}
  %o = attn.einsum [m] = %x[m, p] sum(p) if (p <= m) else m : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A condition without parentheses.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected '('}}
  %o = attn.einsum [m] = %x[m, p] sum(p) if p <= m : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// topk with a rank in place of k.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected integer value}}
  %o = attn.einsum [m] = %x[m, p] sum(p) topk(p, m) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An undefined SSA value.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{use of undefined value '%y' (operands of attn.einsum are cascade arguments or earlier Einsums)}}
  %o = attn.einsum [m] = %y[m, p] sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An unknown element type in a cast.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{unknown element type 'f12' (expected f64, f32, f16, bf16, f8E4M3FN, f8E5M2, i64, i32, i8, i4 or i1)}}
  %o = attn.einsum [m] = cast(%x[m, p] : f12) sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A cast to an unsupported type.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{cannot cast to 'i16' (expected f64, f32, f16, bf16, f8E4M3FN, f8E5M2, i64, i32, i8, i4 or i1)}}
  %o = attn.einsum [m] = cast(%x[m, p] : i16) sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An unknown element type for the result.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{unknown element type 'float' (expected f64, f32, f16, bf16, f8E4M3FN, f8E5M2, i64, i32, i8, i4 or i1)}}
  %o = attn.einsum [m] = %x[m, p] sum(p) : float
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A bracket in place of an expression (not read as an array attribute).
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected an expression: an operand element, a rank, a number or a function call}}
  %o = attn.einsum [m] = exp([%x[m, p]) sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A number in place of a rank in the reduce list.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{expected a rank name}}
  %o = attn.einsum [m] = %x[m, p] sum(0) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A stray token in the rank list.
// expected-error @+1 {{expected a rank name}}
attn.cascade @c ranks(m, =, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m, p] sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A result without its type.
// expected-error @+1 {{expected the type of result 'o'}}
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: ) {
  %o = attn.einsum [m] = %x[m, p] sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An unknown element type in !attn.t.
// expected-error @+1 {{unknown element type 'f99' (expected f64, f32, f16, bf16, f8E4M3FN, f8E5M2, i64, i32, i8, i4 or i1)}}
attn.cascade @c ranks(m) (%x: !attn.t<[m], f99>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = 1.0 : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An unsupported element type in !attn.t.
// expected-error @+1 {{unsupported element type 'ui8' (expected f64, f32, f16, bf16, f8E4M3FN, f8E5M2, i64, i32, i8, i4 or i1)}}
attn.cascade @c ranks(m) (%x: !attn.t<[m], ui8>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = 1.0 : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A duplicate rank in a tensor type.
// expected-error @+1 {{rank 'm' appears twice in a tensor type}}
attn.cascade @c ranks(m) (%x: !attn.t<[m, m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = 1.0 : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A number in place of a rank in a tensor type.
// expected-error @+1 {{expected a rank name}}
attn.cascade @c ranks(m) (%x: !attn.t<[m, 4], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = 1.0 : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A tensor type without its element type.
// expected-error @+1 {{expected ','}}
attn.cascade @c ranks(m) (%x: !attn.t<[m]>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = 1.0 : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An argument without ':' and its type.
// expected-error @+1 {{expected ':'}}
attn.cascade @c ranks(m) (%x !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = 1.0 : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An Einsum without ':' and its element type.
attn.cascade @c ranks(m) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m]
  // expected-error @+1 {{expected ':' and the element type, or an operator, a reduction (sum/max/min), topk, if, else, init or attributes}}
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A reserved name declared as a rank.
// expected-error @+1 {{'exp' is reserved and cannot name a rank}}
attn.cascade @c ranks(m, exp) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A reserved name declared by a partition.
// expected-error @+1 {{'max' is reserved and cannot name a rank}}
attn.cascade @c ranks(m, p) partition(p -> max, p0 = 16) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A rank size that reads as '?' (INT64_MIN).
// expected-error @+1 {{rank 'p' has non-positive size -9223372036854775808}}
attn.cascade @c ranks(m, p = -9223372036854775808) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A cascade without 'ranks'.
// expected-error @+1 {{expected 'ranks'}}
attn.cascade @c (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A relation written backwards.
// expected-error @+1 {{expected integer value}}
attn.cascade @c ranks(g, h) where(h = g * 4) (%x: !attn.t<[h], f32>) -> (o: !attn.t<[h], f32>) {
  %o = attn.einsum [h] = %x[h] : f32
  attn.yield %o : !attn.t<[h], f32>
}

// -----

/// An empty cascade body.
// expected-error @+1 {{empty block: expect at least a terminator}}
attn.cascade @c ranks(m) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
}

// -----

/// Generic form: garbage in #attn.expr.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  // expected-error @+1 {{expected an expression: an operand element, a rank, a number or a function call}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[d0] + * 2.0)>, output = affine_map<(d0)[s0] -> (d0)>, space = ["m"]}> : (!attn.t<[m], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Generic form: #attn.expr without its parentheses.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  // expected-error @+1 {{expected '('}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<in0[d0]>, output = affine_map<(d0)[s0] -> (d0)>, space = ["m"]}> : (!attn.t<[m], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Generic form: a rank name where positional d<N> is expected.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  // expected-error @+1 {{expected a positional rank 'd<N>', got 'm'}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[m])>, output = affine_map<(d0)[s0] -> (d0)>, space = ["m"]}> : (!attn.t<[m], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Generic form: a positional rank number that does not fit.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  // expected-error @+1 {{expected a positional rank 'd<N>', got 'd99999999999'}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[d99999999999])>, output = affine_map<(d0)[s0] -> (d0)>, space = ["m"]}> : (!attn.t<[m], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Generic form: an #attn.expr nested 300 deep.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  // expected-error @+1 {{expression nests more than 256 levels deep}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((in0[d0])))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))>, output = affine_map<(d0)[s0] -> (d0)>, space = ["m"]}> : (!attn.t<[m], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Empty input: nothing to parse, nothing to report (and no crash).


// -----

/// A file truncated in the middle of an argument type.
// expected-error @+1 {{unbalanced '[' character in pretty dialect name}}
attn.cascade @c ranks(m, p) (%x: !attn.t<[m

// -----

/// A file truncated in the middle of the rank list.
// expected-error @+1 {{expected ')'}}
attn.cascade @c ranks(m, p

// -----

/// A file truncated in a condition. The error is at the end of the input,
/// which -split-input-file places on the line of the next separator.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+3 {{expected an expression: an operand element, a rank, a number or a function call}}
  %o = attn.einsum [m] = %x[m, p] sum(p) if (

// -----

/// A file truncated before the closing brace of a cascade (the message is
/// MLIR's: it expects another operation).
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m, p] sum(p) : f32
  // expected-error @+1 {{expected operation name in quotes}}
  attn.yield %o : !attn.t<[m], f32>

// -----

/// A file truncated in the middle of a cascade.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  %s = attn.einsum [m] = %x[m, p] sum(p) : f32
  // expected-error @+1 {{expected an expression: an operand element, a rank, a number or a function call}}
  %o = attn.einsum [m] = exp(%x[m,