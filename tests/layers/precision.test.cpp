// Inference in int8 and bf16 (recurrent/precision.hpp): the kernels' products against exact
// references computed here, the accuracy of Sequence, Stack and Stream against the full-precision
// path on the same weights, and the training entry points' refusal.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using recurrent::Precision;
using test::Index;
using MatrixF = Eigen::MatrixXf;

// The S3 benchmark shape (T = 100, B = 64, I = H = 256). Unoptimised and sanitized builds run a
// smaller batch: the quantization error is set by the sizes I and H, which stay.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define RECURRENT_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define RECURRENT_TEST_SANITIZED 1
#endif
#if defined(__OPTIMIZE__) && !defined(RECURRENT_TEST_SANITIZED)
constexpr Index kBatch = 64;
#else
constexpr Index kBatch = 4;
#endif
constexpr Index kSteps = 100, kSize = 256;

MatrixF normal(Index rows, Index cols, std::mt19937& rng) {
  std::normal_distribution<float> n(0.0f, 1.0f);
  MatrixF m(rows, cols);
  for (Index j = 0; j < cols; ++j)
    for (Index i = 0; i < rows; ++i) m(i, j) = n(rng);
  return m;
}

struct Difference {
  double mean, max;
};
Difference difference(const MatrixF& a, const MatrixF& b) {
  const MatrixF d = (a - b).cwiseAbs();
  return {double(d.mean()), double(d.maxCoeff())};
}

// The int8 row quantization of the file comment of detail/reduced_matrix.hpp, written again.
struct QuantizedRow {
  double scale;
  std::vector<long> w;
};
QuantizedRow quantizeRow(const MatrixF& a, Index r) {
  const double maxAbs = double(a.row(r).cwiseAbs().maxCoeff());
  QuantizedRow q{maxAbs > 0 ? float(maxAbs) / 127.0f : 1.0, {}};
  for (Index k = 0; k < a.cols(); ++k) {
    q.w.push_back(std::lround(std::nearbyint(a(r, k) / float(q.scale))));
  }
  return q;
}
struct QuantizedColumn {
  double scale;
  long zero;
  std::vector<long> q;
};
QuantizedColumn quantizeColumn(const MatrixF& x, Index j) {
  const float lo = std::min(0.0f, x.col(j).minCoeff()), hi = std::max(0.0f, x.col(j).maxCoeff());
  const float scale = (hi - lo) / 255.0f;
  QuantizedColumn c{scale, std::lround(std::nearbyint(-lo * (1.0f / scale))), {}};
  for (Index k = 0; k < x.rows(); ++k) {
    const long q = std::lround(std::nearbyint(x(k, j) * (1.0f / scale))) + c.zero;
    c.q.push_back(std::min(255L, std::max(0L, q)));
  }
  return c;
}

// C = A·X + bias over G blocks of H rows, rows [u0, u1) of every block, in `precision`;
// elsewhere C keeps its value (NaN).
MatrixF reducedProduct(const MatrixF& a, Index G, const MatrixF& x, const Eigen::VectorXf& bias,
                       Index u0, Index u1, Precision precision) {
  const Index H = a.rows() / G;
  recurrent::detail::ReducedMatrix packed;
  packed.pack(recurrent::detail::viewOf<const float>(a.data(), a.outerStride(), H),
              recurrent::detail::Blocks{G, H}, a.cols(), precision);
  recurrent::detail::ReducedBuffer buffer;
  buffer.reserve(a.cols());
  MatrixF c = MatrixF::Constant(a.rows(), x.cols(), NAN);
  recurrent::detail::reducedGemm(
      recurrent::detail::ReducedProduct<float>(
          packed, recurrent::detail::viewOf<const float>(x.data(), x.outerStride()),
          recurrent::detail::viewOf<float>(c.data(), c.outerStride(), H), x.cols())
          .units(u0, u1)
          .overwrite()
          .plusBias(bias.data()),
      buffer);
  return c;
}

}  // namespace

TEST_CASE("the int8 product is the exact integer product, scaled", "[precision][int8]") {
  std::mt19937 rng(11);
  // H = 21: a panel straddles each block's end; H = 32: whole panels (packed column by column
  // with AVX-512); H = 16: an odd count of panels (3). K is no multiple of 4; K = 100 is a whole
  // chunk of the AMX tiles (64 depth rows) and 9 groups past it, K = 200 three chunks and 2
  // groups: where AMX runs, batches of 2 columns or more take them.
  for (const auto& [H, K] : {std::pair<Index, Index>{21, 37}, std::pair<Index, Index>{32, 37},
                             std::pair<Index, Index>{21, 100}, std::pair<Index, Index>{16, 200}}) {
    const Index G = 3;
    const MatrixF a = normal(G * H, K, rng);
    const Eigen::VectorXf bias = normal(G * H, 1, rng);
    for (const Index n : {Index(1), Index(5), Index(29), Index(200)}) {
      MatrixF x = normal(K, n, rng);
      x.col(0).array() += 2.0f;  // a column whose minimum is above zero: zero point 0
      for (const auto& units : {std::pair<Index, Index>{0, H}, std::pair<Index, Index>{5, 17}}) {
        const MatrixF c = reducedProduct(a, G, x, bias, units.first, units.second, Precision::Int8);
        INFO("H = " << H << ", K = " << K << ", n = " << n << ", units " << units.first << ".."
                    << units.second);
        for (Index j = 0; j < n; ++j) {
          const QuantizedColumn col = quantizeColumn(x, j);
          for (Index row = 0; row < G * H; ++row) {
            const Index u = row % H;
            if (u < units.first || u >= units.second) {
              REQUIRE(std::isnan(c(row, j)));
              continue;
            }
            const QuantizedRow w = quantizeRow(a, row);
            long sum = 0, rowSum = 0;
            for (Index k = 0; k < K; ++k) {
              sum += w.w[std::size_t(k)] * col.q[std::size_t(k)];
              rowSum += w.w[std::size_t(k)];
            }
            const double exact =
                double(bias[row]) + w.scale * col.scale * double(sum - col.zero * rowSum);
            REQUIRE(std::abs(double(c(row, j)) - exact) <= 2e-6 * (1.0 + std::abs(exact)));
          }
        }
      }
    }
  }
}

TEST_CASE("the bf16 product sums the products of the rounded operands", "[precision][bf16]") {
  std::mt19937 rng(12);
  // A partial panel; whole panels; an odd count of panels (G = 3 of H = 16). K = 33 is one
  // chunk of the AMX tiles (32 depth rows) and one pair past it, K = 81 two chunks and 9 pairs.
  struct Shape {
    Index G, H, K;
  };
  for (const Shape& shape :
       {Shape{4, 18, 33}, Shape{4, 16, 33}, Shape{4, 18, 81}, Shape{3, 16, 81}}) {
    const Index G = shape.G, H = shape.H, K = shape.K;
    const MatrixF a = normal(G * H, K, rng);
    const Eigen::VectorXf bias = normal(G * H, 1, rng);
    const auto round = [](float v) {
      return recurrent::detail::fromBF16(recurrent::detail::toBF16(v));
    };
    // Rounding to nearest, ties to even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7.
    CHECK(round(1.0f + 1.0f / 256) == 1.0f);
    CHECK(round(1.0f + 3.0f / 256) == 1.0f + 4.0f / 256);
    CHECK(round(1.0f + 1.0f / 256 + 1.0f / 65536) == 1.0f + 2.0f / 256);
    for (const Index n : {Index(1), Index(7), Index(30), Index(200)}) {
      const MatrixF x = normal(K, n, rng);
      // Every unit, and units [5, 13): panels cut on both sides, the other rows left alone.
      const Index u0 = n % 2 == 0 ? 0 : 5, u1 = n % 2 == 0 ? H : 13;
      const MatrixF c = reducedProduct(a, G, x, bias, u0, u1, Precision::BF16);
      INFO("G = " << G << ", H = " << H << ", K = " << K << ", n = " << n);
      for (Index j = 0; j < n; ++j) {
        for (Index row = 0; row < G * H; ++row) {
          if (row % H < u0 || row % H >= u1) {
            REQUIRE(std::isnan(c(row, j)));
            continue;
          }
          double exact = bias[row], size = std::abs(bias[row]);
          for (Index k = 0; k < K; ++k) {
            const double p = double(round(a(row, k))) * double(round(x(k, j)));
            exact += p;
            size += std::abs(p);
          }
          // Float sums of exact products: K roundings at most.
          REQUIRE(std::abs(double(c(row, j)) - exact) <= double(K) * 6e-8 * size);
        }
      }
    }
  }
}

namespace {

// The output of `infer` in `precision` and in full precision, on the same weights.
template <typename Layer>
Difference reducedAgainstFull(Layer& layer, const MatrixF& x, const std::vector<int>& lengths,
                              Precision precision) {
  using Matrix = typename Layer::Matrix;
  const Matrix input = x.cast<typename Layer::Scalar>();
  layer.setPrecision(Precision::Full);
  const MatrixF full = layer.infer(input, lengths).template cast<float>();
  layer.setPrecision(precision);
  const MatrixF reduced = layer.infer(input, lengths).template cast<float>();
  return difference(reduced, full);
}

// Calls check(cell, threads) for the plain cells at sizes off the panels: LSTM, GRU in both
// variants, RNN.
template <typename Check>
void forPlainCells(Check&& check, int threads) {
  check(recurrent::LSTMCell<float>(13, 40), threads);
  check(recurrent::GRUCell<float>(7, 35), threads);
  check(
      recurrent::GRUCell<float, Eigen::Dynamic, Eigen::Dynamic, recurrent::GRUVariant::ResetBefore>(
          20, 48),
      threads);
  check(recurrent::RNNCell<float>(6, 70), threads);
}

template <typename Cell>
void checkSequenceAccuracy(const char* name) {
  std::mt19937 rng(21);
  Cell cell(kSize, kSize);
  recurrent::initialize(cell, rng);  // PyTorch's U(±1/√H)
  const MatrixF x = normal(kSize, kSteps * kBatch, rng);
  const std::vector<int> lengths(static_cast<std::size_t>(kBatch), static_cast<int>(kSteps));
  recurrent::Sequence<Cell> seq(cell);
  const Difference int8 = reducedAgainstFull(seq, x, lengths, Precision::Int8);
  const Difference bf16 = reducedAgainstFull(seq, x, lengths, Precision::BF16);
  INFO(name << ": int8 mean " << int8.mean << " max " << int8.max << "; bf16 max " << bf16.max);
  CHECK(int8.mean <= 5e-3);
  CHECK(int8.max <= 5e-2);
  CHECK(bf16.max <= 1e-2);
  // Not the full-precision result: the reduced products do run.
  CHECK(int8.max > 1e-5);
  CHECK(bf16.max > 1e-6);
}

}  // namespace

TEST_CASE("int8 and bf16 inference of an S3-sized layer is within the tolerances",
          "[precision][sequence]") {
  checkSequenceAccuracy<recurrent::LSTMCell<float>>("LSTM");
  checkSequenceAccuracy<recurrent::GRUCell<float>>("GRU");
}

TEST_CASE("int8 and bf16 run every cell, sizes off the panels, and threads",
          "[precision][sequence]") {
  std::mt19937 rng(22);
  const auto check = [&](auto cell, int threads) {
    using Cell = decltype(cell);
    recurrent::initialize(cell, rng);
    const Index T = 9, B = 5;
    const MatrixF x = normal(cell.inputSize(), T * B, rng);
    const std::vector<int> lengths{9, 3, 9, 1, 6};  // padded: the gathered path
    recurrent::Sequence<Cell> seq(cell);
    seq.setThreads(threads, recurrent::ThreadLimit::Exactly);
    const Difference int8 = reducedAgainstFull(seq, x, lengths, Precision::Int8);
    const Difference bf16 = reducedAgainstFull(seq, x, lengths, Precision::BF16);
    INFO("H = " << cell.hiddenSize() << ", threads " << threads << ": int8 " << int8.max
                << ", bf16 " << bf16.max);
    CHECK(int8.max <= 5e-2);
    CHECK(bf16.max <= 1e-2);
    CHECK(int8.max > 0);
    // Padding stays zero.
    CHECK(seq.output().col(1 * B + 3).isZero());
  };
  for (const int threads : {1, 2}) {
    forPlainCells(check, threads);
    check(recurrent::LSTMCell<double>(10, 24), threads);
  }
  check(recurrent::LSTMCell<float>(12, 40, 17), 1);  // a projection: W_hr stays in float
  // Sizes fixed at compile time.
  check(recurrent::LSTMCell<float, 13, 40>(), 1);
  check(recurrent::GRUCell<float, 7, 35>(), 2);
  check(recurrent::RNNCell<float, 6, 70>(), 1);
}

// The layer-normalised cells in int8 and bf16. Layer normalisation divides each product by its
// spread over the units, which magnifies the products' rounding wherever that spread is small: the
// mean error stays at the plain cells' level, the worst one does not (measured over these cases:
// int8 mean ≤ 0.0064, max up to 0.40; bf16 mean ≤ 0.0025, max up to 0.057). The bounds below
// are on the mean, and on bf16's worst case; README's "Inference in int8 and bf16" says so.
TEST_CASE("int8 and bf16 run the layer-normalised cells", "[precision][sequence]") {
  std::mt19937 rng(27);
  const auto check = [&](auto cell, int threads) {
    using Cell = decltype(cell);
    recurrent::initialize(cell, rng);
    const Index T = 30, B = 4;
    const MatrixF x = normal(cell.inputSize(), T * B, rng);
    const std::vector<int> lengths{30, 12, 30, 7};
    recurrent::Sequence<Cell> seq(cell);
    seq.setThreads(threads, recurrent::ThreadLimit::Exactly);
    const Difference int8 = reducedAgainstFull(seq, x, lengths, Precision::Int8);
    const Difference bf16 = reducedAgainstFull(seq, x, lengths, Precision::BF16);
    INFO("H = " << cell.hiddenSize() << ", threads " << threads << ": int8 mean " << int8.mean
                << " max " << int8.max << ", bf16 mean " << bf16.mean << " max " << bf16.max);
    CHECK(int8.mean <= 1e-2);
    CHECK(bf16.mean <= 5e-3);
    CHECK(bf16.max <= 1e-1);
    CHECK(int8.max > 0);
    CHECK(seq.output().col(20 * B + 3).isZero());
  };
  for (const int threads : {1, 2}) {
    for (unsigned k = 0; k < 2; ++k) {
      check(recurrent::LayerNormLSTMCell<float>(11, 36), threads);
      check(recurrent::LayerNormGRUCell<float>(9, 30), threads);
      check(recurrent::LayerNormLSTMCell<float>(64, 128), threads);
    }
  }
}

namespace {

template <typename Cell>
void checkStackAccuracy(const char* name) {
  std::mt19937 rng(23);
  recurrent::Stack<Cell> stack(kSize, kSize,
                               recurrent::StackOptions().numLayers(2).bidirectional());
  recurrent::initialize(stack, rng);
  // Half of the batch (the Stack runs four Sequences).
  const Index B = std::max<Index>(1, kBatch / 2);
  const MatrixF x = normal(kSize, kSteps * B, rng);
  const std::vector<int> lengths(static_cast<std::size_t>(B), static_cast<int>(kSteps));
  const Difference int8 = reducedAgainstFull(stack, x, lengths, Precision::Int8);
  const Difference bf16 = reducedAgainstFull(stack, x, lengths, Precision::BF16);
  INFO(name << ": int8 mean " << int8.mean << " max " << int8.max << "; bf16 max " << bf16.max);
  CHECK(int8.mean <= 5e-3);
  CHECK(int8.max <= 5e-2);
  CHECK(bf16.max <= 1e-2);
  CHECK(int8.max > 1e-5);
  CHECK(bf16.max > 1e-6);
  CHECK(stack.precision() == Precision::BF16);
}

}  // namespace

TEST_CASE("int8 and bf16 inference of a 2-layer bidirectional Stack is within the tolerances",
          "[precision][stack]") {
  checkStackAccuracy<recurrent::LSTMCell<float>>("LSTM");
  checkStackAccuracy<recurrent::GRUCell<float>>("GRU");
}

TEST_CASE("Stream steps equal Sequence::infer at the same precision", "[precision][stream]") {
  std::mt19937 rng(24);
  const auto check = [&](auto cell, Index B, Precision precision) {
    using Cell = decltype(cell);
    recurrent::initialize(cell, rng);
    const Index T = 12;
    const MatrixF x = normal(cell.inputSize(), T * B, rng);
    recurrent::Sequence<Cell> seq(cell);
    seq.setPrecision(precision);
    const MatrixF y = seq.infer(x, std::vector<int>(std::size_t(B), int(T)));
    recurrent::Stream<Cell> stream(cell, B);
    stream.setPrecision(precision);
    CHECK(stream.precision() == precision);
    double worst = 0;
    for (Index t = 0; t < T; ++t) {
      const MatrixF h = stream.step(x.middleCols(t * B, B));
      worst = std::max(worst, double((h - y.middleCols(t * B, B)).cwiseAbs().maxCoeff()));
    }
    INFO(recurrent::precisionName(precision) << " B = " << B << " H = " << cell.hiddenSize());
    // int8: the same codes, exact int32 sums and the same float operations on them, whichever
    // kernel; bf16: a batch of one sums its depth in four sets (or, on AMX tiles, in the tile
    // unit's order), Sequence's input projection in one chain (or the tiles').
    if (precision == Precision::Int8) {
      CHECK(worst == 0);
    } else {
      CHECK(worst <= 1e-6);
    }
  };
  for (const Precision p : {Precision::Int8, Precision::BF16}) {
    // B = 1 runs the reduced fused step (detail/reduced_step.hpp), B > 1 the batched kernel.
    check(recurrent::LSTMCell<float>(64, 64), 1, p);
    check(recurrent::LSTMCell<float>(17, 40), 3, p);
    check(recurrent::LSTMCell<float>(17, 40), 1, p);  // partial panels
    check(recurrent::GRUCell<float>(9, 24), 1, p);
    check(recurrent::LSTMCell<float>(33, 200), 1, p);  // beyond L1; bf16 on AMX: the tiles
    check(recurrent::GRUCell<float>(7, 37), 1, p);
    check(recurrent::GRUCell<float>(128, 128), 1, p);
    check(recurrent::RNNCell<float>(5, 33), 1, p);
    // Compile-time sizes: one sequence (the reduced fused step) and a batch.
    check(recurrent::LSTMCell<float, 16, 32>(), 1, p);
    check(recurrent::LSTMCell<float, 16, 32>(), 3, p);
    check(recurrent::GRUCell<float, 9, 24>(), 1, p);
    check(recurrent::GRUCell<float, 9, 24>(), 2, p);
    check(recurrent::RNNCell<float, 5, 33>(), 1, p);
  }
}

TEST_CASE("a Stream of one goes back to float, and refuses to step after a failed precision",
          "[precision][stream][errors]") {
  std::mt19937 rng(25);
  recurrent::LSTMCell<float> cell(6, 20);
  recurrent::initialize(cell, rng);
  const MatrixF x = normal(6, 8, rng);
  recurrent::Sequence<recurrent::LSTMCell<float>> seq(cell);
  const MatrixF y = seq.infer(x, {8});
  recurrent::Stream<recurrent::LSTMCell<float>> stream(cell);
  stream.setPrecision(Precision::Int8);
  for (Index t = 0; t < 8; ++t) stream.step(x.col(t));
  stream.setPrecision(Precision::Full);  // the float fused step again, from a zero state
  stream.reset();
  double worst = 0;
  for (Index t = 0; t < 8; ++t) {
    worst = std::max(worst, double((stream.step(x.col(t)) - y.col(t)).cwiseAbs().maxCoeff()));
  }
  CHECK(worst <= 1e-5);
  // A parameter of the wrong shape: setPrecision throws, and the Stream then refuses to step on
  // the weights packed for the old precision, even once the parameter is mended.
  const MatrixF saved = cell.parameters().weight_hh;
  cell.parameters().weight_hh.resize(80, 3);
  CHECK_THROWS_AS(stream.setPrecision(Precision::Int8), std::invalid_argument);
  cell.parameters().weight_hh = saved;
  CHECK_THROWS_WITH(stream.step(x.col(0)), Catch::Matchers::Contains("call refresh()"));
  stream.refresh();
  CHECK(stream.precision() == Precision::Int8);
  stream.reset();
  seq.setPrecision(Precision::Int8);
  const MatrixF y8 = seq.infer(x, {8});
  CHECK((stream.step(x.col(0)) - y8.col(0)).cwiseAbs().maxCoeff() == 0);
}

TEST_CASE("the reduced weights follow the cell's parameters", "[precision]") {
  std::mt19937 rng(25);
  recurrent::LSTMCell<float> cell(8, 32);
  recurrent::initialize(cell, rng);
  const MatrixF x = normal(8, 4 * 2, rng);
  const std::vector<int> lengths{4, 4};
  recurrent::Sequence<recurrent::LSTMCell<float>> seq(cell);
  seq.setPrecision(Precision::Int8);
  recurrent::Stream<recurrent::LSTMCell<float>> stream(cell);
  stream.setPrecision(Precision::Int8);
  const MatrixF before = seq.infer(x, lengths);
  cell.parameters().weight_hh *= 0.5f;
  const MatrixF after = seq.infer(x, lengths);  // infer packs the weights at every call
  CHECK((after - before).cwiseAbs().maxCoeff() > 1e-3);
  stream.refresh();
  const MatrixF h = stream.step(x.col(0));
  CHECK((h - after.col(0)).cwiseAbs().maxCoeff() <= 1e-6);
}

TEST_CASE("after a regularised training call, reduced inference reads the cell's own weights",
          "[precision][regularization]") {
  std::mt19937 rng(26);
  recurrent::LSTMCell<float> cell(8, 32);
  recurrent::initialize(cell, rng);
  const MatrixF x = normal(8, 6 * 3, rng);
  const std::vector<int> lengths{6, 2, 5};
  const auto zoneout = recurrent::Regularization().zoneout(0.2, 0.1);
  recurrent::Sequence<recurrent::LSTMCell<float>> trained(cell);
  trained.setRegularization(recurrent::Regularization(zoneout).weightDrop(0.5));
  trained.seed(3);
  trained.forward(x, lengths);  // packs M ⊙ W_hh, the dropped weights
  recurrent::Sequence<recurrent::LSTMCell<float>> fresh(cell);
  fresh.setRegularization(zoneout);
  for (const Precision precision : {Precision::Int8, Precision::BF16}) {
    trained.setPrecision(precision);
    fresh.setPrecision(precision);
    const MatrixF a = trained.infer(x, lengths);
    const MatrixF b = fresh.infer(x, lengths);
    CHECK((a - b).cwiseAbs().maxCoeff() == 0.0F);  // no weight drop, zoneout's expectation
  }
  recurrent::Sequence<recurrent::LSTMCell<float>> plain(cell);
  plain.setPrecision(Precision::Int8);
  CHECK((plain.infer(x, lengths) - fresh.infer(x, lengths)).cwiseAbs().maxCoeff() > 1e-3);
}

TEST_CASE("training refuses a reduced precision", "[precision][errors]") {
  std::mt19937 rng(26);
  recurrent::GRUCell<float> cell(3, 5);
  recurrent::initialize(cell, rng);
  const MatrixF x = normal(3, 4, rng);
  const std::vector<int> lengths{2, 2};
  recurrent::Sequence<recurrent::GRUCell<float>> seq(cell);
  auto grads = cell.zeroGradients();
  seq.forward(x, lengths);
  seq.setPrecision(Precision::BF16);
  CHECK_THROWS_WITH(seq.forward(x, lengths),
                    Catch::Contains("Sequence::forward: trains in full precision only") &&
                        Catch::Contains("bf16"));
  CHECK_THROWS_WITH(seq.backward(MatrixF::Zero(5, 4), grads),
                    Catch::Contains("Sequence::backward: trains in full precision only"));
  CHECK(seq.hasTape());  // the refusals changed nothing
  CHECK(grads.weight_hh.isZero());

  recurrent::Stack<recurrent::GRUCell<float>> stack(3, 5, recurrent::StackOptions().numLayers(2));
  recurrent::initialize(stack, rng);
  stack.forward(x, lengths);
  stack.setPrecision(Precision::Int8);
  auto stackGrads = stack.zeroGradients();
  CHECK_THROWS_WITH(
      stack.forward(x, lengths),
      Catch::Contains("Stack::forward: trains in full precision only") && Catch::Contains("int8"));
  CHECK_THROWS_WITH(stack.backward(MatrixF::Zero(5, 4), stackGrads),
                    Catch::Contains("Stack::backward: trains in full precision only"));
  CHECK(stack.hasTape());
  stack.setPrecision(Precision::Full);
  CHECK_NOTHROW(stack.backward(MatrixF::Zero(5, 4), stackGrads));
}

TEST_CASE("packedWeightBytes: int8 a quarter of float, bf16 half", "[precision]") {
  using Seq = recurrent::Sequence<recurrent::LSTMCell<float>>;
  for (const Index size : {Index(128), Index(256), Index(512)}) {
    const recurrent::LSTMCell<float> cell(size, size);
    const double full = double(Seq::packedWeightBytes(cell, Precision::Full));
    const double int8 = double(Seq::packedWeightBytes(cell, Precision::Int8));
    const double bf16 = double(Seq::packedWeightBytes(cell, Precision::BF16));
    INFO("I = H = " << size << ": int8 " << int8 / full << ", bf16 " << bf16 / full);
    CHECK(full == 4.0 * double(size) * double(2 * size) * 4.0);
    CHECK(int8 / full <= 0.27);
    CHECK(bf16 / full <= 0.52);
  }
  // Padding counts: H = 20 is two panels of 16 rows per gate, I = 3 one group of 4.
  const recurrent::GRUCell<float> small(3, 20);
  CHECK(recurrent::Sequence<recurrent::GRUCell<float>>::packedWeightBytes(small, Precision::Int8) ==
        3 * 32 * (4 + 8) + 3 * 32 * (20 + 8));
}

// setPrecision(p, Precision::Full): W_hh·h in p, W_ih·x in float.
namespace {

// x with every entry a bfloat16 (its upper 16 bits): rounding it to bf16 changes nothing.
MatrixF bf16Exact(MatrixF x) {
  for (Index k = 0; k < x.size(); ++k) {
    std::uint32_t bits = 0;
    std::memcpy(&bits, x.data() + k, sizeof bits);
    bits &= 0xFFFF0000u;
    std::memcpy(x.data() + k, &bits, sizeof bits);
  }
  return x;
}

}  // namespace

TEST_CASE("a float input product: W_ih·x in float, W_hh·h reduced", "[precision][sequence]") {
  std::mt19937 rng(28);
  // layerNorm: the layer-normalised cells, whose worst case magnifies the rounding (see above):
  // their mean error is bounded instead.
  const auto check = [&](auto cell, int threads, bool layerNorm = false) {
    using Cell = decltype(cell);
    recurrent::initialize(cell, rng);
    const Index T = 9, B = 5, I = cell.inputSize();
    const std::vector<int> lengths{9, 3, 9, 1, 6};
    const MatrixF x = normal(I, T * B, rng);
    recurrent::Sequence<Cell> seq(cell);
    seq.setThreads(threads, recurrent::ThreadLimit::Exactly);
    const MatrixF full = seq.infer(x, lengths);
    for (const Precision p : {Precision::Int8, Precision::BF16}) {
      INFO(recurrent::precisionName(p) << ", H = " << cell.hiddenSize() << ", threads " << threads);
      seq.setPrecision(p, Precision::Full);
      CHECK(seq.precision() == p);
      CHECK(seq.inputPrecision() == Precision::Full);
      const MatrixF mixed = seq.infer(x, lengths);
      // Reduced where h enters: not the float result, but within the tolerances.
      CHECK((mixed - full).cwiseAbs().maxCoeff() > 1e-6);
      if (layerNorm) {
        CHECK((mixed - full).cwiseAbs().mean() <= 1e-2);
      } else {
        CHECK((mixed - full).cwiseAbs().maxCoeff() <= (p == Precision::Int8 ? 5e-2 : 1e-2));
      }
      CHECK(seq.output().col(1 * B + 3).isZero());
      // Without W_hh only the input product is left, and it is float's.
      Cell open = cell;
      open.parameters().weight_hh.setZero();
      recurrent::Sequence<Cell> openSeq(open);
      openSeq.setThreads(threads, recurrent::ThreadLimit::Exactly);
      const MatrixF openFull = openSeq.infer(x, lengths);
      openSeq.setPrecision(p);
      const MatrixF openReduced = openSeq.infer(x, lengths);
      openSeq.setPrecision(p, Precision::Full);
      const MatrixF openMixed = openSeq.infer(x, lengths);
      CHECK((openMixed - openFull).cwiseAbs().maxCoeff() <= 1e-6);
      CHECK((openReduced - openFull).cwiseAbs().maxCoeff() > 1e-5);
    }
    // With x and W_ih already in bf16, the float input product is bf16's, up to the order of
    // its sums.
    const MatrixF xb = bf16Exact(x);
    cell.parameters().weight_ih = bf16Exact(cell.parameters().weight_ih);
    seq.setPrecision(Precision::BF16);
    const MatrixF reduced = seq.infer(xb, lengths);
    seq.setPrecision(Precision::BF16, Precision::Full);
    CHECK((seq.infer(xb, lengths) - reduced).cwiseAbs().maxCoeff() <= 1e-5);
  };
  for (const int threads : {1, 2}) {
    forPlainCells(check, threads);
    check(recurrent::LayerNormLSTMCell<float>(11, 36), threads, true);
    check(recurrent::LayerNormGRUCell<float>(9, 30), threads, true);
  }
  check(recurrent::LSTMCell<float, 13, 40>(), 1);
  check(recurrent::LSTMCell<float>(12, 40, 17), 1);  // a projection
}

TEST_CASE("a float input product in Stream and Stack", "[precision][stream][stack]") {
  std::mt19937 rng(29);
  const Index T = 7, I = 5, H = 24;
  for (const Precision p : {Precision::Int8, Precision::BF16}) {
    INFO(recurrent::precisionName(p));
    // Stream, one sequence (the batched path, not the reduced fused step) and three.
    const auto checkStream = [&](auto cell, Index B) {
      using Cell = decltype(cell);
      recurrent::initialize(cell, rng);
      const MatrixF x = normal(I, T * B, rng);
      recurrent::Sequence<Cell> seq(cell);
      seq.setPrecision(p, Precision::Full);
      const MatrixF y = seq.infer(x, std::vector<int>(std::size_t(B), int(T)));
      recurrent::Stream<Cell> stream(cell, B);
      stream.setPrecision(p, Precision::Full);
      CHECK(stream.inputPrecision() == Precision::Full);
      double worst = 0;
      for (Index t = 0; t < T; ++t) {
        const MatrixF h = stream.step(x.middleCols(t * B, B));
        worst = std::max(worst, double((h - y.middleCols(t * B, B)).cwiseAbs().maxCoeff()));
      }
      INFO("B = " << B << ", H = " << cell.hiddenSize());
      CHECK(worst <= 1e-6);
    };
    for (const Index B : {Index(1), Index(3)}) {
      checkStream(recurrent::LSTMCell<float>(I, H), B);
      checkStream(recurrent::GRUCell<float>(I, H), B);
      checkStream(recurrent::RNNCell<float>(I, H), B);
    }
    // Stack: the first layer's input product in float, the second layer's in p.
    recurrent::Stack<recurrent::GRUCell<float>> stack(I, H, recurrent::StackOptions().numLayers(2));
    recurrent::initialize(stack, rng);
    const Index B = 3;
    const MatrixF x = normal(I, T * B, rng);
    const std::vector<int> lengths{7, 4, 6};
    stack.setPrecision(p, Precision::Full);
    CHECK(stack.inputPrecision() == Precision::Full);
    const MatrixF y = stack.infer(x, lengths);
    recurrent::Sequence<recurrent::GRUCell<float>> first(stack.cell(0));
    first.setPrecision(p, Precision::Full);
    recurrent::Sequence<recurrent::GRUCell<float>> second(stack.cell(1));
    second.setPrecision(p);
    const MatrixF expected = second.infer(first.infer(x, lengths), lengths);
    CHECK((y - expected).cwiseAbs().maxCoeff() <= 1e-6);
    second.setPrecision(p, Precision::Full);
    CHECK((y - second.infer(first.output(), lengths)).cwiseAbs().maxCoeff() > 1e-6);
  }
  // A bidirectional Stack in bf16: with x and the first layer's W_ih already in bf16, keeping
  // the first layer's input product in float changes only the order of its sums; the second
  // layer's input (the first layer's outputs) is still rounded to bf16.
  recurrent::Stack<recurrent::LSTMCell<float>> bi(
      I, H, recurrent::StackOptions().numLayers(2).bidirectional());
  recurrent::initialize(bi, rng);
  for (const Index d : {Index(0), Index(1)}) {
    bi.cell(0, d).parameters().weight_ih = bf16Exact(bi.cell(0, d).parameters().weight_ih);
  }
  const std::vector<int> lengths{7, 4, 6};
  const MatrixF xb = bf16Exact(normal(I, T * 3, rng));
  bi.setPrecision(Precision::BF16);
  const MatrixF reduced = bi.infer(xb, lengths);
  bi.setPrecision(Precision::BF16, Precision::Full);
  CHECK((bi.infer(xb, lengths) - reduced).cwiseAbs().maxCoeff() <= 1e-5);
  bi.setPrecision(Precision::Full);
  CHECK((bi.infer(xb, lengths) - reduced).cwiseAbs().maxCoeff() > 1e-5);
}

TEST_CASE("setPrecision refuses an input product in the other reduced precision",
          "[precision][errors]") {
  recurrent::LSTMCell<float> cell(4, 8);
  recurrent::Sequence<recurrent::LSTMCell<float>> seq(cell);
  seq.setPrecision(Precision::BF16, Precision::Full);
  CHECK_THROWS_WITH(seq.setPrecision(Precision::Int8, Precision::BF16),
                    "recurrent: Sequence::setPrecision: the input product's precision must be "
                    "full or int8 (that of the other products), got bf16");
  CHECK_THROWS_WITH(seq.setPrecision(Precision::Full, Precision::Int8),
                    "recurrent: Sequence::setPrecision: the input product's precision must be "
                    "full, as the other products' are, got int8");
  CHECK(seq.precision() == Precision::BF16);  // unchanged
  CHECK(seq.inputPrecision() == Precision::Full);
  recurrent::Stream<recurrent::LSTMCell<float>> stream(cell);
  CHECK_THROWS_WITH(stream.setPrecision(Precision::BF16, Precision::Int8),
                    Catch::Contains("Stream::setPrecision") && Catch::Contains("got int8"));
  CHECK(stream.precision() == Precision::Full);
  recurrent::Stack<recurrent::LSTMCell<float>> stack(4, 8);
  CHECK_THROWS_WITH(stack.setPrecision(Precision::Int8, Precision::BF16),
                    Catch::Contains("Stack::setPrecision") && Catch::Contains("got bf16"));
  CHECK(stack.precision() == Precision::Full);
  using Seq = recurrent::Sequence<recurrent::LSTMCell<float>>;
  CHECK_THROWS_WITH(Seq::packedWeightBytes(cell, Precision::BF16, Precision::Int8),
                    Catch::Contains("Sequence::packedWeightBytes") && Catch::Contains("got int8"));
  // The bytes: W_ih's as float's (4 gates × 128 rows × 32 × 4 bytes), W_hh's as the reduced
  // precision's (int8: 128 + 8 bytes a row, bf16: 2 × 128).
  const recurrent::LSTMCell<float> wide(32, 128);
  CHECK(Seq::packedWeightBytes(wide, Precision::Int8, Precision::Full) ==
        4 * 128 * 32 * 4 + 4 * 128 * (128 + 8));
  CHECK(Seq::packedWeightBytes(wide, Precision::BF16, Precision::Full) ==
        4 * 128 * 32 * 4 + 4 * 128 * 2 * 128);
}
