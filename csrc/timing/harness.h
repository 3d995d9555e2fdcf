// Native micro-benchmark harness: runs a body in a C++ loop with warm-up and a
// monotonic clock until the median is known precisely enough or a time budget is
// spent. Knows nothing about Python; bindings.cpp adapts callables to `Body`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hwnas {
namespace timing {

// How long and how precisely to time. Field meanings are documented on the Python
// side (hwnas.latency.harness.TimingConfig), which is the public face of this struct.
struct TimingConfig {
  int64_t warmup_iters = 10;        // calls before timing starts (at least this many)
  double warmup_s = 0.0;            // ... and at least this long (finite)
  int64_t min_samples = 10;         // convergence is not checked before this many samples;
                                    // the budget can stop the loop at min(min_samples, 3)
  int64_t max_samples = 10000;      // never take more than this many samples
  int64_t iters_per_sample = 0;     // calls per sample; 0 = calibrate to min_sample_s
  double min_sample_s = 1e-4;       // target duration of one sample when calibrating (finite)
  double target_rel_ci = 0.01;      // stop when (ci_hi - ci_lo) / median <= this
  double confidence = 0.95;         // confidence level of the median's interval
  double budget_s = 2.0;            // stop after this much wall time in the timed phase
  int64_t num_threads = 0;          // at::set_num_threads for the run; 0 = leave as is
  int64_t flush_bytes = 0;          // write this many bytes between samples; 0 = no flush
  // Clock of the samples: "steady" (std::chrono::steady_clock, wall time) or
  // "thread_cpu" (CLOCK_THREAD_CPUTIME_ID: CPU time of the calling thread, blind to
  // time spent descheduled; only meaningful when all the work runs on this thread).
  std::string clock = "steady";
};

// Per-call durations (one entry per sample, nanoseconds) and their statistics.
struct TimingResult {
  std::vector<double> samples_ns;
  int64_t iters_per_sample = 1;
  int64_t warmup_iters_done = 0;
  double median_ns = 0, p10_ns = 0, p25_ns = 0, p75_ns = 0, p90_ns = 0;
  double mean_ns = 0, std_ns = 0, min_ns = 0, max_ns = 0;
  double iqr_ns = 0, cv = 0;
  double ci_lo_ns = 0, ci_hi_ns = 0, rel_ci = 0;  // rel_ci = inf when n is too small
  bool converged = false;     // rel_ci finite and <= target_rel_ci when the loop stopped
  std::string stop_reason;    // "converged", "budget" or "max_samples"
  double elapsed_s = 0;       // wall time of the timed phase
  int64_t threads_used = 0;   // at::get_num_threads() during the run
};

using Body = std::function<void()>;

// Called between body calls (never inside a timed sample), at most every
// kPollIntervalS of wall time: a chance to abort the run by throwing (the bindings
// use it to deliver Ctrl-C while the GIL is released or no Python code runs).
using Poll = std::function<void()>;
constexpr double kPollIntervalS = 0.1;

// Runs `body` per `config`. Thread count is set for the run and restored afterwards,
// also when `body` or `poll` throws.
TimingResult run_timing(const Body& body, const TimingConfig& config, const Poll& poll = Poll());

// Fills the order statistics and the median's confidence interval of `result`
// from `result.samples_ns` (exposed for testing against an independent reference).
void compute_statistics(TimingResult& result, double confidence);

// Distribution-free confidence interval of the median from order statistics:
// returns the 0-based indices (lo, hi) into the sorted sample such that
// P(x_(lo) <= median <= x_(hi)) >= confidence under Binomial(n, 1/2).
// Returns (-1, -1) when n is too small for the requested confidence.
std::pair<int64_t, int64_t> median_ci_indices(int64_t n, double confidence);

// Per-iteration overhead of the harness itself: times an empty body through the
// same code path (std::function call + clock reads amortised over iters).
TimingResult measure_empty_body(const TimingConfig& config, const Poll& poll = Poll());

// Cost of one pair of steady_clock::now() reads, in nanoseconds (median of `repeats`).
double clock_pair_cost_ns(int64_t repeats);

}  // namespace timing
}  // namespace hwnas
