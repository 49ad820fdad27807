//===- Poly.cpp - exact rationals and polynomials in rank sizes ------------===//
//
// This file implements Rational, Poly and Bound: the exact arithmetic in
// which the analyses express FLOPs, bytes and buffer sizes.
//
//===----------------------------------------------------------------------===//

#include "attn/Analysis.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>

using namespace mlir;
using namespace mlir::attn;
using llvm::DynamicAPInt;

//===----------------------------------------------------------------------===//
// Rational
//===----------------------------------------------------------------------===//

Rational::Rational(DynamicAPInt n, DynamicAPInt d) : num(n), den(d) {
  assert(den != 0 && "zero denominator");
  if (den < 0) {
    num = -num;
    den = -den;
  }
  DynamicAPInt g = llvm::gcd(llvm::abs(num), den);
  if (g > 1) {
    num /= g;
    den /= g;
  }
  if (num == 0)
    den = DynamicAPInt(1);
}

Rational mlir::attn::operator+(const Rational &a, const Rational &b) {
  return Rational(a.num * b.den + b.num * a.den, a.den * b.den);
}

Rational mlir::attn::operator-(const Rational &a, const Rational &b) {
  return Rational(a.num * b.den - b.num * a.den, a.den * b.den);
}

Rational mlir::attn::operator*(const Rational &a, const Rational &b) {
  return Rational(a.num * b.num, a.den * b.den);
}

Rational mlir::attn::operator/(const Rational &a, const Rational &b) {
  assert(!b.isZero() && "division by zero");
  return Rational(a.num * b.den, a.den * b.num);
}

static std::string toString(const DynamicAPInt &v) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << v;
  return s;
}

double Rational::toDouble() const {
  return std::strtod(toString(num).c_str(), nullptr) /
         std::strtod(toString(den).c_str(), nullptr);
}

void Rational::print(llvm::raw_ostream &os) const {
  if (den == 1) {
    os << num;
    return;
  }
  // A denominator 2^a * 5^b has a finite decimal expansion with max(a, b)
  // digits: scale the numerator by 10^digits.
  DynamicAPInt rest = den;
  unsigned twos = 0, fives = 0;
  while (rest % 2 == 0) {
    rest /= 2;
    ++twos;
  }
  while (rest % 5 == 0) {
    rest /= 5;
    ++fives;
  }
  if (rest != 1) {
    os << num << '/' << den;
    return;
  }
  unsigned digits = std::max(twos, fives);
  DynamicAPInt scale(1);
  for (unsigned i = 0; i < digits; ++i)
    scale *= 10;
  DynamicAPInt scaled = llvm::abs(num) * scale / den;
  std::string text = toString(scaled);
  if (text.size() <= digits)
    text.insert(0, digits + 1 - text.size(), '0');
  text.insert(text.size() - digits, ".");
  if (num < 0)
    os << '-';
  os << text;
}

std::string Rational::str() const {
  std::string s;
  llvm::raw_string_ostream os(s);
  print(os);
  return s;
}

//===----------------------------------------------------------------------===//
// Poly
//===----------------------------------------------------------------------===//

Poly::Poly(const Rational &c) {
  if (!c.isZero())
    terms.emplace(Monomial(), c);
}

Poly Poly::symbol(StringRef name, int order) {
  Poly p;
  p.terms.emplace(Monomial{PolySymbol{order, name.str()}}, Rational(1));
  return p;
}

std::optional<Rational> Poly::getConstant() const {
  if (terms.empty())
    return Rational(0);
  if (terms.size() == 1 && terms.begin()->first.empty())
    return terms.begin()->second;
  return std::nullopt;
}

std::vector<PolySymbol> Poly::getSymbols() const {
  std::vector<PolySymbol> out;
  for (auto &[m, c] : terms)
    for (const PolySymbol &s : m)
      if (!llvm::is_contained(out, s))
        out.push_back(s);
  llvm::sort(out);
  return out;
}

Rational
Poly::evaluate(function_ref<Rational(const PolySymbol &)> value) const {
  Rational sum;
  for (auto &[m, c] : terms) {
    Rational term = c;
    for (const PolySymbol &s : m)
      term = term * value(s);
    sum = sum + term;
  }
  return sum;
}

Rational Poly::evaluate(int64_t value) const {
  return evaluate([&](const PolySymbol &) { return Rational(value); });
}

void Poly::addTerm(const Monomial &m, const Rational &c) {
  if (c.isZero())
    return;
  auto [it, inserted] = terms.emplace(m, c);
  if (inserted)
    return;
  it->second = it->second + c;
  if (it->second.isZero())
    terms.erase(it);
}

Poly &Poly::operator+=(const Poly &other) {
  for (auto &[m, c] : other.terms)
    addTerm(m, c);
  return *this;
}

Poly &Poly::operator-=(const Poly &other) {
  for (auto &[m, c] : other.terms)
    addTerm(m, -c);
  return *this;
}

Poly &Poly::operator*=(const Poly &other) {
  Poly product;
  for (auto &[ma, ca] : terms) {
    for (auto &[mb, cb] : other.terms) {
      Monomial m;
      m.reserve(ma.size() + mb.size());
      std::merge(ma.begin(), ma.end(), mb.begin(), mb.end(),
                 std::back_inserter(m));
      product.addTerm(m, ca * cb);
    }
  }
  *this = std::move(product);
  return *this;
}

void Poly::print(llvm::raw_ostream &os) const {
  if (terms.empty()) {
    os << '0';
    return;
  }
  bool first = true;
  for (auto &[m, c] : terms) {
    Rational coeff = c;
    if (first) {
      if (coeff.isNegative()) {
        os << '-';
        coeff = -coeff;
      }
    } else {
      os << (coeff.isNegative() ? " - " : " + ");
      if (coeff.isNegative())
        coeff = -coeff;
    }
    first = false;
    bool needStar = false;
    if (m.empty() || !coeff.isOne()) {
      os << coeff;
      needStar = true;
    }
    for (size_t i = 0; i < m.size();) {
      size_t j = i;
      while (j < m.size() && m[j] == m[i])
        ++j;
      if (needStar)
        os << '*';
      os << m[i].name;
      if (j - i > 1)
        os << '^' << (j - i);
      needStar = true;
      i = j;
    }
  }
}

std::string Poly::str() const {
  std::string s;
  llvm::raw_string_ostream os(s);
  print(os);
  return s;
}

//===----------------------------------------------------------------------===//
// Bound
//===----------------------------------------------------------------------===//

void Bound::print(llvm::raw_ostream &os) const {
  if (!exact)
    os << "<= ";
  os << value;
}

std::string Bound::str() const {
  std::string s;
  llvm::raw_string_ostream os(s);
  print(os);
  return s;
}
