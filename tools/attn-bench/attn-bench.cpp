//===- attn-bench.cpp - time attention implementations against the peak ----===//
//
// attn-bench measures the FP32 FMA peak of this machine, then times every
// selected implementation on every configuration (b*h, n, d, causal, threads),
// each in a fork()ed child so that its peak RSS is its own, and checks its
// output against a float64 reference on a sample of rows. Output: a table, or
// one JSON object per configuration and implementation (--json).
//
//===----------------------------------------------------------------------===//

#include "bench.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <thread>

using namespace attn_bench;

//===----------------------------------------------------------------------===//
// Registry
//===----------------------------------------------------------------------===//

std::vector<std::string> Registry::names(bool includeTestDoubles) const {
  std::vector<std::string> out;
  for (auto &i : impls)
    if ((includeTestDoubles || !i->isTestDouble()) &&
        std::find(out.begin(), out.end(), i->name()) == out.end())
      out.push_back(i->name());
  return out;
}

bool Registry::known(const std::string &name) const {
  for (auto &i : impls)
    if (name == i->name())
      return true;
  return false;
}

Impl *Registry::find(const std::string &name, const Shape &s, int threads,
                     std::string *why) const {
  *why = "unknown impl";
  for (auto &i : impls)
    if (name == i->name() && i->supports(s, threads, why))
      return i.get();
  return nullptr;
}

//===----------------------------------------------------------------------===//
// Options
//===----------------------------------------------------------------------===//

namespace {

struct Options {
  std::vector<int64_t> bh = {8}, n = {1024}, d = {128};
  int64_t batch = 1;
  std::vector<int> causal = {0, 1};
  std::vector<int> threads;
  int reps = 5, warmup = 1;
  std::vector<std::string> impls; // empty: all
  std::vector<int64_t> docLens;   // --doc-mask
  bool linear = false;            // --linear
  bool paged = false;             // --paged
  bool int8Fly = false;           // --int8-fly
  int64_t checkRows = -2;         // -2 auto, -1 all, 0 none
  bool json = false, fork = true, selfTest = false;
  uint64_t seed = 1;
  std::string blasCore = "native";
};

const char *kHelp = R"(attn-bench: time attention implementations against the measured FP32 peak

usage: attn-bench [options]

  --bh LIST        batch*heads (default 8); LIST is comma separated
  --b N            batch: tensors are [b, bh/b, n, d] (default 1)
  --n LIST         sequence length, queries = keys (default 1024)
  --d LIST         head dimension (default 128)
  --causal 0|1|both  top-left causal mask p <= m (default both)
  --threads LIST   threads (default: all hardware threads)
  --reps N         timed repetitions, the median is reported (default 5)
  --warmup N       untimed runs first (default 1)
  --impl LIST|all  implementations (default all; test doubles only by name)
  --check-rows N   rows recomputed in float64 for max_abs_err: -1 all, 0 none
                   (default: all when b*h*n <= 8192, else 256)
  --seed N         seed of the uniform [-1, 1) inputs (default 1)
  --blas-core native|env|NAME  OpenBLAS kernel set. native (default): the one
                   OpenBLAS detects itself (an OPENBLAS_CORETYPE in the
                   environment is dropped); env: as the environment says; NAME:
                   OPENBLAS_CORETYPE=NAME (e.g. Haswell, SkylakeX, Cooperlake).
                   OpenBLAS reads it when it loads: attn-bench re-runs itself
  --doc-mask LIST  instead: the document-mask kernel (d = 128) against the
                   dense one for packed documents of each length in LIST,
                   with the kept fraction of 64 x 64 tiles and the ratio to
                   the ideal (dense time x kept fraction); uses the first
                   --bh, --n and --threads
  --linear         instead: linear attention (examples/linear*.mlir, d = 128)
                   against our softmax kernel for each --n, with --causal,
                   the first --bh and --threads: times, their ratio and the
                   linear kernel's time per token (flat: O(N d^2))
  --paged          instead: a paged KV cache (examples/paged-kv.mlir, pages
                   of 16 and 64, shuffled block table, d = 128) against
                   contiguous K/V with the same mask, decode and prefill,
                   |p| = the first --n, the first --threads
  --int8-fly       instead: INT8 quantized on the fly (mha d = 128 annotated
                   per block, K smoothed: the prologue and the kernel attnc
                   splits it into) against our f32 kernel for each --n, the
                   first --bh and --threads: both times, their sum, the
                   speedup and the prologue's share
  --json           one JSON object per configuration and impl per line
  --no-fork        run in this process (peak_rss_mib is then process-wide)
  --self-test      check the anchor and the ABI adapter (with its test double)
                   against the float64 reference on small shapes, then exit
  --help           this text

Useful FLOPs: 4*BH*N^2*d, causal 4*BH*d*N(N+1)/2 (kept (m,p) pairs only).
pct_peak is against the FMA peak measured at the same thread count in this run.
Each impl runs in a fork()ed child: peak_rss_mib is that child's ru_maxrss
(inputs q,k,v,o,lse included); extra_rss_mib subtracts the RSS before the
first call.
)";

bool parseIntList(const std::string &text, std::vector<int64_t> &out) {
  out.clear();
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char *end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end || v <= 0)
      return false;
    out.push_back(v);
  }
  return !out.empty();
}

bool parseOptions(int argc, char **argv, Options &o, std::string &err) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], val;
    if (a.rfind("--", 0) != 0) {
      err = "unexpected argument '" + a + "'";
      return false;
    }
    size_t eq = a.find('=');
    bool hasVal = eq != std::string::npos;
    if (hasVal) {
      val = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    auto flag = [&](const char *name) { return a == name; };
    if (flag("--help")) {
      std::fputs(kHelp, stdout);
      std::exit(0);
    }
    if (flag("--json")) { o.json = true; continue; }
    if (flag("--linear")) { o.linear = true; continue; }
    if (flag("--paged")) { o.paged = true; continue; }
    if (flag("--int8-fly")) { o.int8Fly = true; continue; }
    if (flag("--no-fork")) { o.fork = false; continue; }
    if (flag("--self-test")) { o.selfTest = true; continue; }
    if (!hasVal) {
      if (i + 1 >= argc) {
        err = a + " needs a value";
        return false;
      }
      val = argv[++i];
    }
    std::vector<int64_t> list;
    auto intList = [&](std::vector<int64_t> &dst) {
      if (!parseIntList(val, dst)) {
        err = "bad value '" + val + "' for " + a;
        return false;
      }
      return true;
    };
    auto oneInt = [&](int64_t &dst, bool allowNeg) {
      char *end = nullptr;
      long long v = std::strtoll(val.c_str(), &end, 10);
      if (val.empty() || *end || (!allowNeg && v < 0)) {
        err = "bad value '" + val + "' for " + a;
        return false;
      }
      dst = v;
      return true;
    };
    int64_t tmp = 0;
    if (flag("--bh")) { if (!intList(o.bh)) return false; }
    else if (flag("--doc-mask")) { if (!intList(o.docLens)) return false; }
    else if (flag("--n")) { if (!intList(o.n)) return false; }
    else if (flag("--d")) { if (!intList(o.d)) return false; }
    else if (flag("--b")) { if (!oneInt(o.batch, false) || o.batch < 1) { err = "bad --b"; return false; } }
    else if (flag("--threads")) {
      if (!intList(list)) return false;
      o.threads.assign(list.begin(), list.end());
    } else if (flag("--reps")) {
      if (!oneInt(tmp, false) || tmp < 1) { err = "bad --reps"; return false; }
      o.reps = int(tmp);
    } else if (flag("--warmup")) {
      if (!oneInt(tmp, false)) return false;
      o.warmup = int(tmp);
    } else if (flag("--check-rows")) {
      if (!oneInt(o.checkRows, true) || o.checkRows < -1) { err = "bad --check-rows"; return false; }
    } else if (flag("--seed")) {
      if (!oneInt(tmp, false)) return false;
      o.seed = uint64_t(tmp);
    } else if (flag("--causal")) {
      if (val == "0") o.causal = {0};
      else if (val == "1") o.causal = {1};
      else if (val == "both") o.causal = {0, 1};
      else { err = "--causal takes 0, 1 or both"; return false; }
    } else if (flag("--blas-core")) {
      if (val.empty()) { err = "bad --blas-core"; return false; }
      o.blasCore = val;
    } else if (flag("--impl")) {
      o.impls.clear();
      if (val != "all") {
        std::stringstream ss(val);
        std::string item;
        while (std::getline(ss, item, ','))
          if (!item.empty())
            o.impls.push_back(item);
      }
    } else {
      err = "unknown option " + a + " (see --help)";
      return false;
    }
  }
  if (o.threads.empty())
    o.threads = {int(std::max(1u, std::thread::hardware_concurrency()))};
  for (int64_t bh : o.bh)
    if (bh % o.batch) {
      err = "--bh " + std::to_string(bh) + " is not a multiple of --b";
      return false;
    }
  return true;
}

//===----------------------------------------------------------------------===//
// Data, timing, one measurement
//===----------------------------------------------------------------------===//

using Clock = std::chrono::steady_clock;

struct AlignedBuf {
  float *p = nullptr;
  explicit AlignedBuf(size_t count) {
    p = static_cast<float *>(std::aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64));
  }
  ~AlignedBuf() { std::free(p); }
  AlignedBuf(const AlignedBuf &) = delete;
  AlignedBuf &operator=(const AlignedBuf &) = delete;
};

void fillUniform(float *x, size_t count, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  for (size_t i = 0; i < count; ++i) {
    // splitmix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    x[i] = float(double(z >> 40) * (2.0 / double(1ull << 24)) - 1.0);
  }
}

double currentRssMiB() {
  std::ifstream f("/proc/self/statm");
  long long pages = 0, rss = 0;
  f >> pages >> rss;
  return double(rss) * double(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

double peakRssMiB() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0; // KiB on Linux
}

/// Plain data, sent from the child through a pipe.
struct Measurement {
  int ok = 0;
  double msMedian = 0, msMin = 0;
  double peakRss = 0, baseRss = 0;
  double errO = -1, errLse = -1;
  int64_t rowsChecked = 0;
  int finite = 1;
  char error[256] = {0};
};

Measurement measure(Impl &impl, const Shape &s, int threads, const Options &o,
                    int64_t checkRows) {
  Measurement m;
  const size_t elems = size_t(s.bh()) * size_t(s.n) * size_t(s.d);
  const size_t rowsTotal = size_t(s.bh()) * size_t(s.n);
  AlignedBuf q(elems), k(elems), v(elems), out(elems), lse(rowsTotal);
  if (!q.p || !k.p || !v.p || !out.p || !lse.p) {
    std::snprintf(m.error, sizeof m.error, "out of memory for the inputs");
    return m;
  }
  fillUniform(q.p, elems, o.seed * 3 + 0);
  fillUniform(k.p, elems, o.seed * 3 + 1);
  fillUniform(v.p, elems, o.seed * 3 + 2);
  std::fill(out.p, out.p + elems, std::numeric_limits<float>::quiet_NaN());
  std::fill(lse.p, lse.p + rowsTotal, std::numeric_limits<float>::quiet_NaN());
  m.baseRss = currentRssMiB();

  std::string err;
  std::vector<double> ms;
  for (int r = 0; r < o.warmup + o.reps; ++r) {
    auto t0 = Clock::now();
    bool good = impl.run(q.p, k.p, v.p, out.p, lse.p, s, threads, &err);
    double dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!good) {
      std::snprintf(m.error, sizeof m.error, "%s", err.c_str());
      m.peakRss = peakRssMiB();
      return m;
    }
    if (r >= o.warmup)
      ms.push_back(dt);
  }
  std::sort(ms.begin(), ms.end());
  size_t h = ms.size() / 2;
  m.msMedian = ms.size() % 2 ? ms[h] : 0.5 * (ms[h - 1] + ms[h]);
  m.msMin = ms.front();
  m.peakRss = peakRssMiB();
  impl.finish(out.p, lse.p, s);
  if (checkRows != 0) {
    ErrorResult e = checkAgainstReference(q.p, k.p, v.p, out.p,
                                          impl.writesLse() ? lse.p : nullptr, s,
                                          checkRows);
    m.errO = e.maxAbsErrO;
    m.errLse = impl.writesLse() ? e.maxAbsErrLse : -1;
    m.rowsChecked = e.rowsChecked;
    m.finite = e.finite;
  }
  m.ok = 1;
  return m;
}

Measurement measureInChild(Impl &impl, const Shape &s, int threads,
                           const Options &o, int64_t checkRows) {
  Measurement m;
  int fds[2];
  if (pipe(fds) != 0) {
    std::snprintf(m.error, sizeof m.error, "pipe failed");
    return m;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    std::snprintf(m.error, sizeof m.error, "fork failed");
    close(fds[0]);
    close(fds[1]);
    return m;
  }
  if (pid == 0) {
    close(fds[0]);
    Measurement r = measure(impl, s, threads, o, checkRows);
    const char *p = reinterpret_cast<const char *>(&r);
    size_t left = sizeof r;
    while (left) {
      ssize_t w = write(fds[1], p, left);
      if (w <= 0)
        break;
      p += w;
      left -= size_t(w);
    }
    close(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  char *p = reinterpret_cast<char *>(&m);
  size_t got = 0;
  while (got < sizeof m) {
    ssize_t r = read(fds[0], p + got, sizeof m - got);
    if (r <= 0)
      break;
    got += size_t(r);
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (got != sizeof m) {
    m = Measurement();
    if (WIFSIGNALED(status))
      std::snprintf(m.error, sizeof m.error, "child killed by signal %d",
                    WTERMSIG(status));
    else
      std::snprintf(m.error, sizeof m.error, "child exited (status %d) without a result",
                    WEXITSTATUS(status));
  }
  return m;
}

//===----------------------------------------------------------------------===//
// Output
//===----------------------------------------------------------------------===//

std::string jsonEscape(const std::string &s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20)
      out += ' ';
    else
      out += c;
  }
  return out;
}

std::string num(double v, int prec = 3) {
  if (!std::isfinite(v))
    return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

std::string sci(double v) {
  if (!std::isfinite(v))
    return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

/// The 1-minute load average (other processes skew every timing).
double loadAverage() {
  std::ifstream f("/proc/loadavg");
  double l = -1;
  f >> l;
  return l;
}

std::string cpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      size_t c = line.find(':');
      if (c != std::string::npos)
        return line.substr(c + 2);
    }
  return "unknown CPU";
}

//===----------------------------------------------------------------------===//
// Self-test (in process): the anchor and the ABI adapter on small shapes.
//===----------------------------------------------------------------------===//

int selfTest(Registry &reg) {
  int failures = 0;
  auto report = [&](bool ok, const std::string &what) {
    std::printf("%s  %s\n", ok ? "PASS" : "FAIL", what.c_str());
    failures += !ok;
  };
  struct Case { int64_t b, h, n, d; };
  const Case cases[] = {{1, 1, 1, 16}, {1, 2, 7, 16}, {2, 2, 33, 64},
                        {1, 3, 100, 128}, {1, 1, 129, 32}};
  Options o;
  o.reps = 1;
  o.warmup = 0;
  const double tol = 2e-5;
  for (const char *name : {"openblas-unfused", "naive-abi"}) {
    if (!reg.known(name)) {
      std::printf("SKIP  %s (not built)\n", name);
      continue;
    }
    for (const Case &c : cases)
      for (int causal = 0; causal < 2; ++causal)
        for (int threads : {1, 2}) {
          Shape s{c.b, c.h, c.n, c.d, bool(causal), float(1.0 / std::sqrt(double(c.d)))};
          std::string why;
          Impl *impl = reg.find(name, s, threads, &why);
          char what[160];
          std::snprintf(what, sizeof what, "%s b=%lld h=%lld n=%lld d=%lld causal=%d T=%d",
                        name, (long long)c.b, (long long)c.h, (long long)c.n,
                        (long long)c.d, causal, threads);
          if (!impl) {
            report(false, std::string(what) + ": unsupported: " + why);
            continue;
          }
          Measurement m = measure(*impl, s, threads, o, -1);
          char res[128];
          std::snprintf(res, sizeof res, ": err o %.2e lse %.2e", m.errO, m.errLse);
          report(m.ok && m.finite && m.errO < tol && m.errLse >= 0 && m.errLse < tol,
                 std::string(what) + (m.ok ? res : std::string(": ") + m.error));
        }
  }

  // The adapter with an optional output left out: lse passed as NULL.
  {
    AbiKernelSpec spec;
    spec.name = "naive-abi-no-lse";
    spec.fn = attn_bench_testdouble_naive_mha;
    spec.order = {ArgRole::Q, ArgRole::K, ArgRole::V, ArgRole::O, ArgRole::Absent};
    spec.causal = 0;
    spec.testDouble = true;
    auto impl = makeAbiKernelImpl(spec);
    Shape s{1, 2, 17, 16, false, 0.25f};
    Measurement m = measure(*impl, s, 2, o, -1);
    report(m.ok && m.errO < tol && m.errLse < 0 && !impl->writesLse(),
           "adapter: lse slot passed as NULL (optional output)");
  }
  // The adapter reports a failing status with the kernel's message.
  {
    AbiKernelSpec spec;
    spec.name = "naive-abi-bad-order";
    spec.fn = attn_bench_testdouble_naive_mha;
    spec.order = {ArgRole::Q, ArgRole::K, ArgRole::V, ArgRole::O, ArgRole::O};
    spec.causal = 0;
    spec.testDouble = true;
    spec.lastError = attn_bench_testdouble_last_error;
    auto impl = makeAbiKernelImpl(spec);
    Shape s{1, 1, 8, 16, false, 0.25f};
    std::vector<float> buf(8 * 16, 0.5f), out(8 * 16), l(8);
    std::string err;
    bool ok = impl->run(buf.data(), buf.data(), buf.data(), out.data(), l.data(),
                        s, 1, &err);
    report(!ok && err.find("status 4") != std::string::npos &&
               err.find("lse") != std::string::npos,
           "adapter: wrong argument order -> '" + err + "'");
  }
  // supports(): a static head dim and the mask select the kernel.
  {
    AbiKernelSpec spec;
    spec.name = "x";
    spec.fn = attn_bench_testdouble_naive_mha;
    spec.causal = 0;
    spec.staticD = 64;
    auto impl = makeAbiKernelImpl(spec);
    std::string why;
    Shape s{1, 1, 8, 128, false, 0.f};
    bool d128 = impl->supports(s, 1, &why);
    s.d = 64;
    bool d64 = impl->supports(s, 1, &why);
    s.causal = true;
    bool causal = impl->supports(s, 1, &why);
    report(!d128 && d64 && !causal, "adapter: supports() honours static d and mask");
  }
  std::printf("%s (%d failure%s)\n", failures ? "FAILED" : "all passed", failures,
              failures == 1 ? "" : "s");
  return failures ? 1 : 0;
}

} // namespace

int main(int argc, char **argv) {
  Options o;
  std::string err;
  if (!parseOptions(argc, argv, o, err)) {
    std::fprintf(stderr, "attn-bench: %s\n", err.c_str());
    return 2;
  }

  // OpenBLAS reads OPENBLAS_CORETYPE when it loads: change it and start again.
  std::string blasCoreNote;
  if (!openBlasCoreName().empty()) {
    const char *envp = std::getenv("OPENBLAS_CORETYPE");
    const std::string env = envp ? envp : "";
    const char *again = std::getenv("ATTN_BENCH_REEXEC");
    bool unset = o.blasCore == "native" && envp;
    bool set = o.blasCore != "native" && o.blasCore != "env" && env != o.blasCore;
    if ((unset || set) && !again) {
      std::string was = envp ? "OPENBLAS_CORETYPE=" + env + " in the environment" : "no OPENBLAS_CORETYPE";
      if (unset)
        unsetenv("OPENBLAS_CORETYPE");
      else
        setenv("OPENBLAS_CORETYPE", o.blasCore.c_str(), 1);
      setenv("ATTN_BENCH_REEXEC", was.c_str(), 1);
      execv("/proc/self/exe", argv);
      std::perror("attn-bench: re-exec for OPENBLAS_CORETYPE failed");
      return 2;
    }
    if (again) {
      blasCoreNote = "--blas-core=" + o.blasCore + " re-ran attn-bench with " +
                     (envp ? "OPENBLAS_CORETYPE=" + env : "OPENBLAS_CORETYPE unset") +
                     "; it found " + again;
      unsetenv("ATTN_BENCH_REEXEC");
    } else if (envp) {
      blasCoreNote = "OPENBLAS_CORETYPE=" + env + " from the environment";
    }
  }

  if (!o.docLens.empty() || o.linear || o.paged || o.int8Fly) {
    double load = loadAverage();
    if (load > 0.5 * std::thread::hardware_concurrency())
      std::fprintf(stderr, "attn-bench: warning: load average %.2f: other "
                           "processes are running, timings are unreliable\n",
                   load);
    if (o.paged)
      return runPagedBench(o.n.front(), o.threads.front(), o.reps);
    if (o.int8Fly)
      return runInt8FlyBench(o.bh.front(), o.n, o.threads.front(), o.reps);
    if (o.linear)
      return runLinearBench(o.bh.front(), o.n, o.causal, o.threads.front(),
                            o.reps);
    return runDocMaskBench(o.bh.front(), o.n.front(), o.threads.front(),
                           o.reps, o.docLens);
  }

  Registry reg;
  std::string blasNote;
  registerOpenBlasAnchor(reg, &blasNote);
  registerGeneratedImpls(reg);
  registerTestDoubles(reg);

  if (o.selfTest) {
    if (!blasNote.empty())
      std::printf("note: %s\n", blasNote.c_str());
    return selfTest(reg);
  }

  // Which impls: the anchor first, so that the ratio column can be filled in.
  std::vector<std::string> names = o.impls.empty() ? reg.names(false) : o.impls;
  for (auto &nm : names)
    if (!reg.known(nm)) {
      std::string avail;
      for (auto &a : reg.names(true))
        avail += " " + a;
      std::fprintf(stderr, "attn-bench: unknown impl '%s' (available:%s)\n",
                   nm.c_str(), avail.c_str());
      return 2;
    }
  std::stable_sort(names.begin(), names.end(), [&](const std::string &a, const std::string &b) {
    auto anchor = [&](const std::string &n) {
      for (auto &i : reg.all())
        if (n == i->name())
          return i->isAnchor();
      return false;
    };
    return anchor(a) && !anchor(b);
  });

  // Measured peak: once per run, per thread count (and on 1 thread).
  std::set<int> peakThreads(o.threads.begin(), o.threads.end());
  peakThreads.insert(1);
  std::map<int, PeakResult> peak;
  for (int t : peakThreads)
    peak[t] = measureFmaPeak(t);

  const std::string cpu = cpuModel(), blas = openBlasInfo();
  const double load = loadAverage();
  const unsigned hw = std::thread::hardware_concurrency();
  if (load > 0.5 * hw)
    std::fprintf(stderr,
                 "attn-bench: warning: load average %.2f on %u hardware threads: "
                 "other processes are running, timings and the peak are unreliable\n",
                 load, hw);
  if (!o.json) {
    std::printf("cpu: %s, %u hardware threads\n", cpu.c_str(),
                std::thread::hardware_concurrency());
    if (!blas.empty())
      std::printf("anchor: %s\n", blas.c_str());
    if (!blasCoreNote.empty())
      std::printf("        (%s)\n", blasCoreNote.c_str());
    if (!blasNote.empty())
      std::printf("note: %s\n", blasNote.c_str());
    for (auto &[t, p] : peak)
      std::printf("FP32 FMA peak (%s): %d thread%s %.1f GFLOP/s\n", p.isa.c_str(), t,
                  t == 1 ? "" : "s", p.gflops);
    std::printf("median of %d reps after %d warmup; useful FLOPs (causal: kept pairs); "
                "ratio = anchor ms / impl ms; each impl in a fork()ed child%s\n",
                o.reps, o.warmup, o.fork ? "" : " (off: RSS is process-wide)");
    std::printf("\n%-24s %5s %6s %4s %6s %3s %10s %9s %6s %7s %9s %9s %8s %8s\n", "impl",
                "bh", "n", "d", "causal", "T", "ms", "GFLOP/s", "%peak", "ratio",
                "err(o)", "err(lse)", "RSS MiB", "+MiB");
  } else {
    for (auto &[t, p] : peak)
      std::printf("{\"kind\":\"peak\",\"cpu\":\"%s\",\"isa\":\"%s\",\"threads\":%d,"
                  "\"gflops\":%s,\"loadavg\":%s,\"blas\":\"%s\",\"blas_note\":\"%s\"}\n",
                  jsonEscape(cpu).c_str(), p.isa.c_str(), t, num(p.gflops, 1).c_str(),
                  num(load, 2).c_str(), jsonEscape(blas).c_str(),
                  jsonEscape(blasCoreNote).c_str());
  }
  std::fflush(stdout);

  int failures = 0;
  for (int64_t bh : o.bh)
    for (int64_t n : o.n)
      for (int64_t d : o.d)
        for (int causal : o.causal)
          for (int threads : o.threads) {
            Shape s;
            s.b = o.batch;
            s.h = bh / o.batch;
            s.n = n;
            s.d = d;
            s.causal = causal;
            s.scale = float(1.0 / std::sqrt(double(d)));
            int64_t checkRows = o.checkRows;
            if (checkRows == -2)
              checkRows = bh * n <= 8192 ? -1 : 256;
            double anchorMs = -1;
            const double flops = usefulFlops(s);
            const double pk = peak[threads].gflops;
            for (auto &name : names) {
              std::string why;
              Impl *impl = reg.find(name, s, threads, &why);
              const char *variant = causal ? "causal" : "mha";
              if (!impl) {
                if (o.json)
                  std::printf("{\"kind\":\"result\",\"variant\":\"%s\",\"impl\":\"%s\",\"bh\":%lld,"
                              "\"n\":%lld,\"d\":%lld,\"causal\":%d,\"threads\":%d,\"ok\":false,"
                              "\"skipped\":true,\"error\":\"%s\"}\n",
                              variant, name.c_str(), (long long)bh, (long long)n,
                              (long long)d, causal, threads, jsonEscape(why).c_str());
                else
                  std::printf("%-24s %5lld %6lld %4lld %6d %3d  skipped: %s\n", name.c_str(),
                              (long long)bh, (long long)n, (long long)d, causal, threads,
                              why.c_str());
                std::fflush(stdout);
                continue;
              }
              Measurement m = o.fork ? measureInChild(*impl, s, threads, o, checkRows)
                                     : measure(*impl, s, threads, o, checkRows);
              const double gflops = m.ok ? flops / (m.msMedian * 1e-3) * 1e-9 : 0;
              const double pct = pk > 0 ? 100.0 * gflops / pk : 0;
              if (m.ok && impl->isAnchor())
                anchorMs = m.msMedian;
              const double ratio = (m.ok && anchorMs > 0) ? anchorMs / m.msMedian
                                                          : std::numeric_limits<double>::quiet_NaN();
              if (!m.ok || !m.finite)
                ++failures;
              std::string label = name + (impl->isTestDouble() ? " [test double]" : "");
              if (o.json) {
                std::printf(
                    "{\"kind\":\"result\",\"variant\":\"%s\",\"impl\":\"%s\",\"test_double\":%s,"
                    "\"b\":%lld,\"h\":%lld,\"bh\":%lld,\"n\":%lld,\"d\":%lld,\"causal\":%d,"
                    "\"threads\":%d,\"reps\":%d,\"ok\":%s,\"ms_median\":%s,\"ms_min\":%s,"
                    "\"useful_gflop\":%s,\"gflops\":%s,\"peak_gflops\":%s,\"pct_peak\":%s,"
                    "\"ratio_vs_anchor\":%s,\"peak_rss_mib\":%s,\"extra_rss_mib\":%s,"
                    "\"max_abs_err\":%s,\"lse_max_abs_err\":%s,\"rows_checked\":%lld,"
                    "\"finite\":%s,\"error\":\"%s\"}\n",
                    variant, name.c_str(), impl->isTestDouble() ? "true" : "false",
                    (long long)s.b, (long long)s.h, (long long)bh, (long long)n,
                    (long long)d, causal, threads, o.reps, m.ok ? "true" : "false",
                    m.ok ? num(m.msMedian).c_str() : "null",
                    m.ok ? num(m.msMin).c_str() : "null", num(flops * 1e-9, 3).c_str(),
                    m.ok ? num(gflops, 1).c_str() : "null", num(pk, 1).c_str(),
                    m.ok ? num(pct, 1).c_str() : "null", num(ratio, 3).c_str(),
                    num(m.peakRss, 1).c_str(), num(m.peakRss - m.baseRss, 1).c_str(),
                    m.errO >= 0 ? sci(m.errO).c_str() : "null",
                    m.errLse >= 0 ? sci(m.errLse).c_str() : "null",
                    (long long)m.rowsChecked, m.finite ? "true" : "false",
                    jsonEscape(m.error).c_str());
              } else if (!m.ok) {
                std::printf("%-24s %5lld %6lld %4lld %6d %3d  FAILED: %s\n", label.c_str(),
                            (long long)bh, (long long)n, (long long)d, causal, threads,
                            m.error);
              } else {
                std::printf("%-24s %5lld %6lld %4lld %6d %3d %10.2f %9.1f %5.1f%% %7s %9s %9s "
                            "%8.1f %8.1f%s\n",
                            label.c_str(), (long long)bh, (long long)n, (long long)d, causal,
                            threads, m.msMedian, gflops, pct,
                            std::isfinite(ratio) ? (num(ratio, 2) + "x").c_str() : "-",
                            m.errO >= 0 ? sci(m.errO).c_str() : "-",
                            m.errLse >= 0 ? sci(m.errLse).c_str() : "-", m.peakRss,
                            m.peakRss - m.baseRss, m.finite ? "" : "  NON-FINITE OUTPUT");
              }
              std::fflush(stdout);
            }
          }
  // The peak again: a large change means other processes disturbed the run.
  for (auto &[t, p] : peak) {
    PeakResult again = measureFmaPeak(t);
    double change = again.gflops / p.gflops - 1;
    if (std::fabs(change) > 0.05)
      std::fprintf(stderr,
                   "attn-bench: warning: the %d-thread peak was %.1f GFLOP/s at the start "
                   "and %.1f at the end (%+.0f%%): the machine was not quiet\n",
                   t, p.gflops, again.gflops, 100 * change);
    if (o.json)
      std::printf("{\"kind\":\"peak_end\",\"threads\":%d,\"gflops\":%s}\n", t,
                  num(again.gflops, 1).c_str());
  }
  return failures ? 1 : 0;
}
