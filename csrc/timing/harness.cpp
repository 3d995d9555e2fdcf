#include "harness.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <time.h>

namespace hwnas {
namespace timing {

namespace {

using Clock = std::chrono::steady_clock;

// CPU time consumed by the calling thread. On a machine shared with other jobs the
// wall clock also counts the time this thread waits for a core; this clock does not.
struct ThreadCpuClock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<ThreadCpuClock, duration>;
  static constexpr bool is_steady = true;
  static time_point now() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return time_point(duration(static_cast<rep>(ts.tv_sec) * 1000000000LL + ts.tv_nsec));
  }
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Linear interpolation between order statistics (numpy's default "linear" method),
// so the Python tests can compare against numpy.percentile exactly.
double quantile_sorted(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return std::numeric_limits<double>::quiet_NaN();
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

// Restores the intra-op thread count on scope exit, also on exceptions.
class ThreadCountGuard {
 public:
  explicit ThreadCountGuard(int64_t wanted) : previous_(at::get_num_threads()) {
    if (wanted > 0 && wanted != previous_) {
      at::set_num_threads(static_cast<int>(wanted));
      changed_ = true;
    }
  }
  ~ThreadCountGuard() {
    if (changed_) at::set_num_threads(previous_);
  }
  ThreadCountGuard(const ThreadCountGuard&) = delete;
  ThreadCountGuard& operator=(const ThreadCountGuard&) = delete;

 private:
  int previous_;
  bool changed_ = false;
};

// Evicts the body's data from the caches: writing (not only reading) a buffer larger
// than the last-level cache also pushes out dirty lines the body left behind.
class CacheFlusher {
 public:
  explicit CacheFlusher(int64_t bytes) : buffer_(bytes > 0 ? static_cast<size_t>(bytes) : 0) {}
  void flush() {
    if (buffer_.empty()) return;
    ++round_;
    // One write per 64-byte line is enough to own every line.
    for (size_t i = 0; i < buffer_.size(); i += 64) buffer_[i] = static_cast<char>(round_ + i);
    // Read one byte back through a volatile so the writes cannot be elided.
    sink_ = buffer_[buffer_.size() / 2];
  }

 private:
  std::vector<char> buffer_;
  unsigned round_ = 0;
  volatile char sink_ = 0;
};

void check_config(const TimingConfig& c) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("TimingConfig: " + what); };
  if (c.warmup_iters < 0) fail("warmup_iters must be >= 0, got " + std::to_string(c.warmup_iters));
  // Non-finite durations would never end the warm-up (or overflow the calibration).
  if (!(c.warmup_s >= 0 && std::isfinite(c.warmup_s)))
    fail("warmup_s must be finite and >= 0, got " + std::to_string(c.warmup_s));
  if (c.min_samples < 1) fail("min_samples must be >= 1, got " + std::to_string(c.min_samples));
  if (c.max_samples < c.min_samples)
    fail("max_samples (" + std::to_string(c.max_samples) + ") must be >= min_samples (" +
         std::to_string(c.min_samples) + ")");
  if (c.iters_per_sample < 0) fail("iters_per_sample must be >= 0, got " + std::to_string(c.iters_per_sample));
  if (!(c.min_sample_s >= 0 && std::isfinite(c.min_sample_s)))
    fail("min_sample_s must be finite and >= 0, got " + std::to_string(c.min_sample_s));
  if (!(c.target_rel_ci > 0)) fail("target_rel_ci must be > 0, got " + std::to_string(c.target_rel_ci));
  if (!(c.confidence > 0 && c.confidence < 1)) fail("confidence must be in (0, 1), got " + std::to_string(c.confidence));
  if (!(c.budget_s > 0)) fail("budget_s must be > 0, got " + std::to_string(c.budget_s));
  if (c.num_threads < 0) fail("num_threads must be >= 0, got " + std::to_string(c.num_threads));
  // More threads than cores only time oversubscription, and a huge count makes the pool's
  // thread creation fail inside at::set_num_threads (a crash, not an exception).
  const auto cores = static_cast<int64_t>(std::thread::hardware_concurrency());
  if (cores > 0 && c.num_threads > cores)
    fail("num_threads (" + std::to_string(c.num_threads) + ") exceeds the " + std::to_string(cores) +
         " hardware threads of this machine");
  if (c.flush_bytes < 0) fail("flush_bytes must be >= 0, got " + std::to_string(c.flush_bytes));
  if (c.clock != "steady" && c.clock != "thread_cpu")
    fail("clock must be 'steady' or 'thread_cpu', got '" + c.clock + "'");
}

// Duration of `iters` calls of `body` on clock C, in nanoseconds.
template <typename C>
double time_calls(const Body& body, int64_t iters) {
  const auto t0 = C::now();
  for (int64_t i = 0; i < iters; ++i) body();
  const auto t1 = C::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count();
}

// Calls `poll` when at least kPollIntervalS of wall time has passed since the last call.
class Poller {
 public:
  explicit Poller(const Poll& poll) : poll_(poll), last_(Clock::now()) {}
  void maybe_poll() {
    if (!poll_) return;
    const auto now = Clock::now();
    if (std::chrono::duration<double>(now - last_).count() < kPollIntervalS) return;
    poll_();
    last_ = Clock::now();
  }

 private:
  const Poll& poll_;
  Clock::time_point last_;
};

bool is_converged(double rel_ci, double target) { return std::isfinite(rel_ci) && rel_ci <= target; }

}  // namespace

std::pair<int64_t, int64_t> median_ci_indices(int64_t n, double confidence) {
  // The symmetric interval [x_(k), x_(n-1-k)] (0-based) misses the true median only
  // when at most k of the n samples fall below it, or at most k above it: probability
  // 2 * P(B <= k) with B ~ Binomial(n, 1/2). Take the largest k with miss <= 1 - conf
  // (the narrowest interval with at least the requested coverage).
  if (n < 1) return {-1, -1};
  const double alpha = 1.0 - confidence;
  const double log_half_n = static_cast<double>(n) * std::log(0.5);
  double cdf = 0.0;
  int64_t best = -1;
  for (int64_t k = 0; k <= (n - 1) / 2; ++k) {
    const double log_pmf = std::lgamma(static_cast<double>(n) + 1) - std::lgamma(static_cast<double>(k) + 1) -
                           std::lgamma(static_cast<double>(n - k) + 1) + log_half_n;
    cdf += std::exp(log_pmf);
    if (2.0 * cdf <= alpha) {
      best = k;
    } else {
      break;
    }
  }
  if (best < 0) return {-1, -1};
  return {best, n - 1 - best};
}

void compute_statistics(TimingResult& r, double confidence) {
  const auto n = static_cast<int64_t>(r.samples_ns.size());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (n == 0) {
    r.median_ns = r.p10_ns = r.p25_ns = r.p75_ns = r.p90_ns = nan;
    r.mean_ns = r.std_ns = r.min_ns = r.max_ns = r.iqr_ns = r.cv = nan;
    r.ci_lo_ns = r.ci_hi_ns = nan;
    r.rel_ci = std::numeric_limits<double>::infinity();
    return;
  }
  std::vector<double> sorted(r.samples_ns);
  std::sort(sorted.begin(), sorted.end());
  r.median_ns = quantile_sorted(sorted, 0.5);
  r.p10_ns = quantile_sorted(sorted, 0.10);
  r.p25_ns = quantile_sorted(sorted, 0.25);
  r.p75_ns = quantile_sorted(sorted, 0.75);
  r.p90_ns = quantile_sorted(sorted, 0.90);
  r.iqr_ns = r.p75_ns - r.p25_ns;
  r.min_ns = sorted.front();
  r.max_ns = sorted.back();
  r.mean_ns = std::accumulate(sorted.begin(), sorted.end(), 0.0) / static_cast<double>(n);
  double sq = 0.0;
  for (double v : sorted) sq += (v - r.mean_ns) * (v - r.mean_ns);
  // Sample standard deviation (ddof=1); a single sample has none.
  r.std_ns = n > 1 ? std::sqrt(sq / static_cast<double>(n - 1)) : 0.0;
  r.cv = r.mean_ns != 0 ? r.std_ns / r.mean_ns : nan;
  const auto idx = median_ci_indices(n, confidence);
  if (idx.first < 0) {
    r.ci_lo_ns = r.min_ns;
    r.ci_hi_ns = r.max_ns;
    r.rel_ci = std::numeric_limits<double>::infinity();
  } else {
    r.ci_lo_ns = sorted[static_cast<size_t>(idx.first)];
    r.ci_hi_ns = sorted[static_cast<size_t>(idx.second)];
    r.rel_ci = r.median_ns > 0 ? (r.ci_hi_ns - r.ci_lo_ns) / r.median_ns : std::numeric_limits<double>::infinity();
  }
}

TimingResult run_timing(const Body& body, const TimingConfig& config, const Poll& poll) {
  check_config(config);
  ThreadCountGuard threads(config.num_threads);
  CacheFlusher flusher(config.flush_bytes);
  Poller poller(poll);
  TimingResult result;
  result.threads_used = at::get_num_threads();

  // Warm-up: first calls pay for allocation, lazy initialisation, JIT profiling runs.
  const auto warm_start = Clock::now();
  int64_t warm = 0;
  while (warm < config.warmup_iters || seconds_since(warm_start) < config.warmup_s) {
    body();
    ++warm;
    poller.maybe_poll();
  }
  result.warmup_iters_done = warm;

  // Calls per sample: enough that one sample lasts min_sample_s, so clock resolution
  // and the two clock reads are negligible. With a cache flush, one call per sample is
  // the only meaningful choice (later calls would find warm caches).
  int64_t iters = config.iters_per_sample;
  if (iters == 0) {
    if (config.flush_bytes > 0) {
      iters = 1;
    } else {
      iters = 1;
      for (;;) {
        const auto t0 = Clock::now();
        for (int64_t i = 0; i < iters; ++i) body();
        const double took = seconds_since(t0);
        poller.maybe_poll();
        if (took >= config.min_sample_s || iters >= (int64_t{1} << 24)) {
          if (took > 0 && took < config.min_sample_s) iters = (int64_t{1} << 24);
          break;
        }
        // Grow geometrically, but aim directly at the target when the estimate is sound.
        const double per_call = took / static_cast<double>(iters);
        int64_t next = per_call > 0 ? static_cast<int64_t>(std::ceil(config.min_sample_s / per_call * 1.1)) : iters * 10;
        iters = std::max(iters * 2, std::min(next, iters * 100));
      }
    }
  }
  result.iters_per_sample = iters;

  const bool cpu_clock = config.clock == "thread_cpu";
  const auto start = Clock::now();
  result.samples_ns.reserve(static_cast<size_t>(std::min<int64_t>(config.max_samples, 4096)));
  int64_t next_check = config.min_samples;
  for (;;) {
    flusher.flush();
    const double took_ns = cpu_clock ? time_calls<ThreadCpuClock>(body, iters) : time_calls<Clock>(body, iters);
    result.samples_ns.push_back(took_ns / static_cast<double>(iters));
    const auto n = static_cast<int64_t>(result.samples_ns.size());
    const bool over_budget = seconds_since(start) >= config.budget_s;
    // Convergence first: a run that converged on its last allowed sample, or on the
    // sample that spent its budget, says so.
    if (n >= next_check || n >= config.max_samples || over_budget) {
      // Sorting every sample would make the loop quadratic; check at a geometric-ish pace.
      next_check = n + std::max<int64_t>(1, n / 16);
      compute_statistics(result, config.confidence);
      if (is_converged(result.rel_ci, config.target_rel_ci)) {
        result.stop_reason = "converged";
        break;
      }
    }
    if (n >= config.max_samples) {
      result.stop_reason = "max_samples";
      break;
    }
    if (over_budget && n >= std::min<int64_t>(config.min_samples, 3)) {
      result.stop_reason = "budget";
      break;
    }
    poller.maybe_poll();
  }
  result.elapsed_s = seconds_since(start);
  compute_statistics(result, config.confidence);
  result.converged = is_converged(result.rel_ci, config.target_rel_ci);
  return result;
}

TimingResult measure_empty_body(const TimingConfig& config, const Poll& poll) {
  // An opaque no-op: the empty asm with a memory clobber stops the compiler from
  // proving the call does nothing, so what remains is the harness's own cost.
  Body empty = []() { asm volatile("" ::: "memory"); };
  return run_timing(empty, config, poll);
}

double clock_pair_cost_ns(int64_t repeats) {
  if (repeats < 1) throw std::invalid_argument("clock_pair_cost_ns: repeats must be >= 1, got " + std::to_string(repeats));
  std::vector<double> costs;
  costs.reserve(static_cast<size_t>(repeats));
  constexpr int kInner = 1000;
  for (int64_t r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < kInner; ++i) {
      auto a = Clock::now();
      auto b = Clock::now();
      asm volatile("" : : "r"(a.time_since_epoch().count()), "r"(b.time_since_epoch().count()) : "memory");
    }
    costs.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / kInner);
  }
  std::sort(costs.begin(), costs.end());
  return costs[costs.size() / 2];
}

}  // namespace timing
}  // namespace hwnas
