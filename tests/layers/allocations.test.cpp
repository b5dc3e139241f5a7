// Zero heap allocations in repeated forward, infer and backward calls of one shape, after the
// first. Both operator new and malloc are hooked: Eigen's aligned allocator calls std::malloc.
// This test replaces the C allocator, so it is built without sanitizers (see CMakeLists.txt).
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <new>

// ---- counting allocator ------------------------------------------------------------------------

// glibc's own allocator entry points, which the replacements below forward to.
// NOLINTBEGIN(bugprone-reserved-identifier)
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}
// NOLINTEND(bugprone-reserved-identifier)

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
std::atomic<long long> g_bytes{0};  // bytes requested while counting
void count(std::size_t bytes) {
  if (g_counting.load(std::memory_order_relaxed)) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    g_bytes.fetch_add(static_cast<long long>(bytes), std::memory_order_relaxed);
  }
}
}  // namespace

extern "C" {
void* malloc(std::size_t n) {
  count(n);
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t size) {
  count(n * size);
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t n) {
  count(n);
  return __libc_realloc(p, n);
}
void* memalign(std::size_t alignment, std::size_t n) {
  count(n);
  return __libc_memalign(alignment, n);
}
void* aligned_alloc(std::size_t alignment, std::size_t n) {
  count(n);
  return __libc_memalign(alignment, n);
}
int posix_memalign(void** p, std::size_t alignment, std::size_t n) {
  count(n);
  *p = __libc_memalign(alignment, n);
  return *p == nullptr ? 12 /* ENOMEM */ : 0;
}
void free(void* p) { __libc_free(p); }
}

void* operator new(std::size_t n) {
  count(n);
  if (void* p = __libc_malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { __libc_free(p); }
void operator delete[](void* p) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t) noexcept { __libc_free(p); }

namespace {

/// Allocations made by f().
template <typename F>
long allocationsIn(F&& f) {
  g_allocations = 0;
  g_counting = true;
  f();
  g_counting = false;
  return g_allocations.load();
}

template <typename Case>
void checkNoAllocation(std::vector<int> lengths, test::Index T, test::Index I, test::Index H,
                       int threads = 1) {
  using Cell = typename Case::Cell;
  using S = typename Cell::Scalar;
  std::mt19937 rng(5);
  Cell cell = Case::make(I, H);
  test::randomize(cell, rng);
  const test::Index B = static_cast<test::Index>(lengths.size());
  const test::Mat<S> x = test::uniform<S>(I, T * B, rng);
  const test::Mat<S> dy = test::uniform<S>(cell.outputSize(), T * B, rng);
  const typename Cell::State h0 = test::randomState(cell, B, rng);
  const typename Cell::State dFinal = test::randomState(cell, B, rng);
  recurrent::Sequence<Cell> seq(cell);
  seq.setThreads(threads, recurrent::ThreadLimit::Exactly);
  auto grads = cell.zeroGradients();
  auto once = [&] {
    seq.forward(x, lengths, h0);
    seq.backward(dy, dFinal, grads);
    seq.infer(x, lengths, h0);
    seq.infer(x, lengths);
    seq.forward(x, lengths);
    seq.backward(dy, grads);
    grads.setZero();
  };
  once();  // sizes the workspaces
  INFO(Case::kName << " T=" << T << " B=" << B << " I=" << I << " H=" << H
                   << " threads=" << threads);
  CHECK(allocationsIn([&] {
          for (int k = 0; k < 3; ++k) once();
        }) == 0);
  recurrent::Stream<Cell> stream(cell, B);
  stream.step(x.leftCols(B));
  CHECK(allocationsIn([&] {
          for (test::Index t = 0; t < T; ++t) stream.step(x.middleCols(t * B, B));
        }) == 0);
  // Inference in int8 and bf16: the reduced weights are packed at every call, into the same room.
  // With the input product in float as well (setPrecision's second argument).
  for (const recurrent::Precision p : {recurrent::Precision::Int8, recurrent::Precision::BF16}) {
    for (const recurrent::Precision input : {p, recurrent::Precision::Full}) {
      INFO(recurrent::precisionName(p) << ", input product " << recurrent::precisionName(input));
      seq.setPrecision(p, input);
      seq.infer(x, lengths, h0);
      CHECK(allocationsIn([&] {
              for (int k = 0; k < 3; ++k) {
                seq.infer(x, lengths, h0);
                seq.infer(x, lengths);
              }
            }) == 0);
      stream.setPrecision(p, input);
      stream.step(x.leftCols(B));
      CHECK(allocationsIn([&] {
              for (test::Index t = 0; t < T; ++t) stream.step(x.middleCols(t * B, B));
            }) == 0);
    }
  }
  seq.setPrecision(recurrent::Precision::Full);
  // The hooks do count: a fresh Sequence allocates its workspaces.
  CHECK(allocationsIn([&] {
          recurrent::Sequence<Cell> fresh(cell);
          fresh.forward(x, lengths, h0);
        }) > 0);
}

}  // namespace

TEMPLATE_TEST_CASE("repeated calls of one shape allocate nothing", "[sequence][allocations]",
                   test::LSTM<float>, test::GRU<float>, test::GRUResetBefore<float>,
                   test::RNNTanh<float>, test::LSTM<double>, test::GRU<double>,
                   test::PeepholeLSTM<float>, test::ProjLSTM<float>, test::ProjLSTM<double>) {
  SECTION("unequal lengths, small") { checkNoAllocation<TestType>({7, 3, 5}, 7, 4, 8); }
  SECTION("equal lengths") { checkNoAllocation<TestType>({20, 20, 20, 20}, 20, 32, 64); }
  SECTION("unequal lengths") { checkNoAllocation<TestType>({30, 10, 25}, 30, 16, 70); }
  SECTION("two threads") { checkNoAllocation<TestType>({30, 10, 25, 30}, 30, 16, 70, 2); }
  // infer() of one sequence of a small cell runs the fused step, packed at every call.
  SECTION("one sequence") { checkNoAllocation<TestType>({9}, 12, 7, 16); }
}

namespace {

template <typename Case>
void checkStackNoAllocation(const recurrent::StackOptions& options, std::vector<int> lengths,
                            test::Index T, test::Index I, test::Index H, int threads = 1) {
  using Cell = typename Case::Cell;
  using S = typename Cell::Scalar;
  std::mt19937 rng(6);
  recurrent::Stack<Cell> stack(I, options, [H](test::Index in) { return Case::make(in, H); });
  test::randomize(stack, rng);
  stack.setThreads(threads);
  const auto B = static_cast<test::Index>(lengths.size());
  const test::Mat<S> x = test::uniform<S>(I, T * B, rng);
  const test::Mat<S> dy = test::uniform<S>(stack.outputSize(), T * B, rng);
  std::vector<typename Cell::State> h0 = stack.zeroState(B), dFinal = stack.zeroState(B);
  for (std::size_t k = 0; k < h0.size(); ++k) {
    h0[k] = test::randomState(stack.cell(0), B, rng);
    dFinal[k] = test::randomState(stack.cell(0), B, rng);
  }
  auto grads = stack.zeroGradients();
  auto once = [&] {
    stack.forward(x, lengths, h0);
    stack.backward(dy, dFinal, grads);
    stack.infer(x, lengths, h0);
    stack.infer(x, lengths);
    stack.forward(x, lengths);
    stack.backward(dy, grads);
    stack.backward(dFinal, grads);
    stack.forward(x, lengths, stack.finalState());  // carried over
    stack.backward(dy, grads);
    grads.setZero();
  };
  once();  // sizes the workspaces
  INFO(Case::kName << " layers=" << options.numLayers() << " bidirectional="
                   << options.bidirectional() << " dropout=" << options.dropout() << " T=" << T
                   << " B=" << B << " I=" << I << " H=" << H << " threads=" << threads);
  CHECK(allocationsIn([&] {
          for (int k = 0; k < 3; ++k) once();
        }) == 0);
  for (const recurrent::Precision p : {recurrent::Precision::Int8, recurrent::Precision::BF16}) {
    for (const recurrent::Precision input : {p, recurrent::Precision::Full}) {
      INFO(recurrent::precisionName(p) << ", input product " << recurrent::precisionName(input));
      stack.setPrecision(p, input);
      stack.infer(x, lengths, h0);
      CHECK(allocationsIn([&] {
              for (int k = 0; k < 3; ++k) {
                stack.infer(x, lengths, h0);
                stack.infer(x, lengths);
              }
            }) == 0);
    }
  }
  stack.setPrecision(recurrent::Precision::Full);
  // The hooks do count: a fresh Stack allocates its workspaces.
  CHECK(allocationsIn([&] {
          recurrent::Stack<Cell> fresh(I, options,
                                       [H](test::Index in) { return Case::make(in, H); });
          fresh.forward(x, lengths);
        }) > 0);
}

}  // namespace

TEMPLATE_TEST_CASE("repeated stack calls of one shape allocate nothing", "[stack][allocations]",
                   test::LSTM<float>, test::GRU<float>, test::RNNTanh<double>) {
  using recurrent::Merge;
  using recurrent::StackOptions;
  const std::vector<int> lengths = {7, 3, 5};
  checkStackNoAllocation<TestType>(StackOptions().numLayers(3), lengths, 7, 4, 8);
  checkStackNoAllocation<TestType>(StackOptions().numLayers(2).bidirectional().dropout(0.3),
                                   lengths, 7, 4, 8);
  checkStackNoAllocation<TestType>(
      StackOptions().numLayers(2).bidirectional().merge(Merge::Sum).dropout(0.5), lengths, 7, 4, 8);
  checkStackNoAllocation<TestType>(StackOptions().numLayers(2).bidirectional(), {20, 20}, 20, 16,
                                   70, 2);
}

TEST_CASE("repeated dropout calls of one shape allocate nothing", "[dropout][allocations]") {
  recurrent::Dropout<float> dropout(0.3, 1);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Ones(16, 40);
  dropout.forward(x);
  dropout.backward(x);
  CHECK(allocationsIn([&] {
          for (int k = 0; k < 3; ++k) {
            dropout.forward(x);
            dropout.backward(x);
          }
        }) == 0);
}

namespace {
std::vector<int> full(int T, int B) { return std::vector<int>(static_cast<std::size_t>(B), T); }
}  // namespace

// The shapes of the benchmarks (benchmarks/README.md), float, 1 and 2 threads.
TEMPLATE_TEST_CASE("the benchmark shapes allocate nothing per call",
                   "[sequence][allocations][.slow]", test::LSTM<float>, test::GRU<float>) {
  for (int threads : {1, 2}) {
    checkNoAllocation<TestType>(full(100, 1), 100, 32, 32, threads);     // S1
    checkNoAllocation<TestType>(full(100, 16), 100, 128, 128, threads);  // S2
    checkNoAllocation<TestType>(full(100, 64), 100, 256, 256, threads);  // S3
    checkNoAllocation<TestType>(full(50, 32), 50, 512, 512, threads);    // S4
    checkNoAllocation<TestType>(full(1000, 8), 1000, 64, 128, threads);  // S5
    std::vector<int> spread(64);                                         // V: lengths 1..100
    for (std::size_t b = 0; b < spread.size(); ++b) spread[b] = 1 + static_cast<int>(b * 99 / 63);
    checkNoAllocation<TestType>(spread, 100, 256, 256, threads);
  }
}

namespace {

/// Bytes requested by f() (nothing is freed inside the calls measured here).
template <typename F>
long long bytesIn(F&& f) {
  g_bytes = 0;
  g_counting = true;
  f();
  g_counting = false;
  return g_bytes.load();
}

}  // namespace

TEMPLATE_TEST_CASE("inference memory does not grow with T", "[sequence][memory]", test::LSTM<float>,
                   test::GRU<float>, test::RNNTanh<double>) {
  using Cell = typename TestType::Cell;
  using S = typename Cell::Scalar;
  const test::Index I = 16, H = 48, B = 4;
  std::mt19937 rng(9);
  Cell cell = TestType::make(I, H);
  test::randomize(cell, rng);
  for (bool spread : {false, true}) {
    long long workspace[2] = {0, 0};
    int k = 0;
    for (int T : {100, 10000}) {
      const test::Mat<S> x = test::uniform<S>(I, T * B, rng);
      const std::vector<int> lengths =
          spread ? std::vector<int>{T, T / 2, 1, T - 3} : std::vector<int>(4, T);
      recurrent::Sequence<Cell> seq(cell);
      const long long bytes = bytesIn([&] { seq.infer(x, lengths); });
      // Everything but the output (H × T·B) is the workspace.
      workspace[k++] =
          bytes - static_cast<long long>(H * T * B) * static_cast<long long>(sizeof(S));
      INFO("T = " << T << ": " << bytes << " bytes requested by a first infer()");
      CHECK(seq.output().cols() == T * B);
    }
    std::cout << TestType::kName << (spread ? " (spread lengths)" : " (full lengths)")
              << ": infer() workspace besides the output: T = 100: " << workspace[0]
              << " bytes, T = 10000: " << workspace[1] << " bytes\n";
    CHECK(workspace[1] == workspace[0]);
  }
}

TEMPLATE_TEST_CASE("the training tape is tapeScalarsPerStep() per sequence and step",
                   "[sequence][memory]", test::LSTM<float>, test::GRU<float>,
                   test::GRUResetBefore<double>, test::RNNTanh<float>, test::ProjLSTM<float>) {
  using Cell = typename TestType::Cell;
  using S = typename Cell::Scalar;
  const test::Index I = 24, H = 40, B = 3;
  std::mt19937 rng(10);
  Cell cell = TestType::make(I, H);
  test::randomize(cell, rng);
  long long bytes[2] = {0, 0};
  int k = 0;
  for (int T : {100, 300}) {
    const test::Mat<S> x = test::uniform<S>(I, T * B, rng);
    recurrent::Sequence<Cell> seq(cell);
    bytes[k++] = bytesIn([&] { seq.forward(x, std::vector<int>(3, T)); });
  }
  const long long growth = bytes[1] - bytes[0];
  const long long expected =
      recurrent::Sequence<Cell>::tapeScalarsPerStep(cell) * static_cast<long long>(sizeof(S));
  std::cout << TestType::kName << ": forward() memory grows by " << growth / (200 * B)
            << " bytes per sequence-step; tapeScalarsPerStep() * sizeof(Scalar) = " << expected
            << "\n";
  // The tape, plus one packed offset (an Index) per step for the schedule.
  CHECK(growth == expected * 200 * B + 200 * static_cast<long long>(sizeof(Eigen::Index)));
}

namespace {

/// A Stream of one sequence (the fused step kernel) allocates nothing per step, and the Stream of
/// the same cell at B = 3 (the batched kernel) neither.
template <typename Cell>
void checkStreamOfOne(Cell cell) {
  using S = typename Cell::Scalar;
  std::mt19937 rng(6);
  test::randomize(cell, rng);
  const test::Mat<S> x = test::uniform<S>(cell.inputSize(), 30, rng);
  for (test::Index B : {1, 3}) {
    recurrent::Stream<Cell> stream(cell, B);
    stream.step(x.leftCols(B));
    INFO("I = " << cell.inputSize() << ", H = " << cell.hiddenSize() << ", B = " << B);
    CHECK(allocationsIn([&] {
            for (test::Index t = 0; t + B <= x.cols(); t += B) stream.step(x.middleCols(t, B));
          }) == 0);
    for (const recurrent::Precision p : {recurrent::Precision::Int8, recurrent::Precision::BF16}) {
      for (const recurrent::Precision input : {p, recurrent::Precision::Full}) {
        INFO(recurrent::precisionName(p) << ", input product " << recurrent::precisionName(input));
        stream.setPrecision(p, input);
        stream.step(x.leftCols(B));
        CHECK(allocationsIn([&] {
                for (test::Index t = 0; t + B <= x.cols(); t += B) stream.step(x.middleCols(t, B));
              }) == 0);
      }
    }
  }
  // The hooks do count: making a Stream packs the weights.
  CHECK(allocationsIn([&] { recurrent::Stream<Cell> fresh(cell); }) > 0);
}

}  // namespace

TEST_CASE("a Stream of one sequence allocates nothing per step", "[stream][allocations]") {
  checkStreamOfOne(recurrent::LSTMCell<float, 1, 8>());
  checkStreamOfOne(recurrent::LSTMCell<float, 128, 128>());
  checkStreamOfOne(recurrent::GRUCell<float, 16, 16, recurrent::GRUVariant::ResetAfter>());
  checkStreamOfOne(recurrent::GRUCell<double, 3, 8, recurrent::GRUVariant::ResetBefore>());
  checkStreamOfOne(recurrent::RNNCell<float, 2, 40>());
  // Run-time sizes: the same fused kernel with its bounds read at run time.
  checkStreamOfOne(recurrent::LSTMCell<float>(32, 64));
  checkStreamOfOne(recurrent::GRUCell<float>(1, 70));
  checkStreamOfOne(recurrent::RNNCell<double>(5, 9));
}
