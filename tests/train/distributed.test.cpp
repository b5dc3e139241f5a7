// Data-parallel training (train/distributed.hpp), run by ctest under mpirun with 2 and 3
// processes. Each process also computes the whole batch alone, the single-process reference the
// averaged gradients and the trained parameters must match.
#include <recurrent/recurrent.hpp>
#include <recurrent/train/distributed.hpp>

#if __has_include(<catch2/catch_session.hpp>)
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER  // this file's main() starts MPI around Catch's session
#endif
#include "catch.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using Eigen::Index;
template <typename S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;

int worldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int worldSize() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

using recurrent::Transport;
/// Both transports: every test of the average runs each.
constexpr Transport kTransports[] = {Transport::Automatic, Transport::Messages};

/// Whether a DataParallel on MPI_COMM_WORLD with `transport` shares memory: with Automatic, where
/// there are several processes and all run on this machine.
bool sharesMemory(Transport transport) {
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int nodeSize = 0;
  MPI_Comm_size(node, &nodeSize);
  MPI_Comm_free(&node);
  return transport == Transport::Automatic && worldSize() > 1 && nodeSize == worldSize();
}

/// The same batch on every process: B sequences of unequal lengths in an unsorted order.
template <typename S>
struct Batch {
  Index I = 3, R = 2, T = 9;
  std::vector<int> lengths{5, 9, 2, 7, 9, 1, 4};
  Mat<S> x, target;
  Batch() {
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> u(-1, 1);
    const Index B = static_cast<Index>(lengths.size());
    x = Mat<S>::NullaryExpr(I, T * B, [&] { return static_cast<S>(u(rng)); });
    target = Mat<S>::NullaryExpr(R, T * B, [&] { return static_cast<S>(u(rng)); });
  }
  Index batch() const { return static_cast<Index>(lengths.size()); }
  /// Every sequence: the whole batch as one process's share.
  std::vector<int> all() const {
    std::vector<int> indices(lengths.size());
    std::iota(indices.begin(), indices.end(), 0);
    return indices;
  }
};

template <typename Layer>
struct IsSequence : std::false_type {};
template <typename Cell>
struct IsSequence<recurrent::Sequence<Cell>> : std::true_type {};

/// What a model's recurrent part is made of: a cell run by a Sequence (which refers to the cell),
/// or a Stack (which owns its cells).
template <typename Layer>
struct Recurrent;
template <typename Cell>
struct Recurrent<recurrent::Sequence<Cell>> {
  Cell cell;
  recurrent::Sequence<Cell> layer{cell};
  explicit Recurrent(Cell c) : cell(std::move(c)) {}
  Cell& initializable() { return cell; }
  typename Cell::Parameters zeroGradients() const { return cell.zeroGradients(); }
  auto parameters() { return std::ref(cell.parameters()); }
};
template <typename Cell>
struct Recurrent<recurrent::Stack<Cell>> {
  recurrent::Stack<Cell> layer;
  template <typename... A>
  explicit Recurrent(A&&... args) : layer(std::forward<A>(args)...) {}
  recurrent::Stack<Cell>& initializable() { return layer; }
  typename recurrent::Stack<Cell>::Gradients zeroGradients() const { return layer.zeroGradients(); }
  auto parameters() { return layer.parameters(); }
};

/// A recurrent layer, a Linear on top and an MSE loss, with the ParameterList of both; `seed`
/// sets the initialisation. Made in place (it refers to itself), never moved.
template <typename Layer, typename S>
struct Model : Recurrent<Layer> {
  using Recurrent<Layer>::layer;
  recurrent::Linear<S> fc;
  decltype(std::declval<const Recurrent<Layer>&>().zeroGradients()) layerGrads;
  typename recurrent::Linear<S>::Parameters fcGrads;
  recurrent::ParameterList<S> params;

  template <typename... A>
  Model(unsigned seed, Index hidden, A&&... layerArgs)
      : Recurrent<Layer>(std::forward<A>(layerArgs)...),
        fc(hidden, 2),
        layerGrads(this->zeroGradients()),
        fcGrads(fc.zeroGradients()) {
    std::mt19937 rng(seed);
    recurrent::initialize(this->initializable(), rng);
    recurrent::initialize(fc, rng);
    auto layerParams = this->parameters();
    if constexpr (IsSequence<Layer>::value) {
      params.add(layerParams.get(), layerGrads, "rnn.");
    } else {
      params.add(layerParams, layerGrads, "rnn.");
    }
    params.add(fc.parameters(), fcGrads, "fc.");
  }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  /// Forward and backward over the sequences `share` of `batch`, from zero gradients; returns
  /// the loss's count of terms (its weight in the average). `started(weight)` runs before
  /// backward and `linearDone()` once the Linear's gradients are complete.
  template <typename Started = void (*)(double), typename LinearDone = void (*)()>
  double gradients(
      const Batch<S>& batch, const std::vector<int>& share, Started started = [](double) {},
      LinearDone linearDone = [] {}) {
    params.zeroGradients();
    if (share.empty()) return 0;
    const Mat<S> x = recurrent::selectSequences(batch.x, batch.batch(), share);
    const Mat<S> target = recurrent::selectSequences(batch.target, batch.batch(), share);
    const std::vector<int> lengths = recurrent::selectLengths(batch.lengths, share);
    const double weight = std::accumulate(lengths.begin(), lengths.end(), 0.0);
    layer.forward(x, lengths);
    Mat<S> y, dy, dh;
    fc.forward(layer.output(), y);
    recurrent::mseLoss(y, target, lengths, dy);
    started(weight);
    fc.backward(layer.output(), dy, fcGrads, dh);
    linearDone();
    layer.backward(dh, layerGrads);
    return weight;
  }
};

/// Every tensor of a list, flattened in the list's order: gradients or values.
template <typename S>
std::vector<S> flatten(const recurrent::ParameterList<S>& params, bool gradients) {
  std::vector<S> out;
  for (const auto& e : params) {
    const auto& t = gradients ? e.gradient : e.value;
    out.insert(out.end(), t.data(), t.data() + t.size());
  }
  return out;
}

/// Whether `v` has the same bits on every process (rank 0's, broadcast, compared byte for byte).
template <typename S>
bool sameOnEveryRank(std::vector<S> v) {
  std::vector<S> root = v;
  MPI_Bcast(root.data(), static_cast<int>(root.size() * sizeof(S)), MPI_BYTE, 0, MPI_COMM_WORLD);
  int differs = std::memcmp(root.data(), v.data(), v.size() * sizeof(S)) != 0 ? 1 : 0, any = 0;
  MPI_Allreduce(&differs, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
  return any == 0;
}

/// Sets every gradient of `params` to U(−1, 1) draws of this process's and this `round`'s own:
/// different on each process and in each round, the same whatever the transport and buckets.
template <typename S>
void randomGradients(const recurrent::ParameterList<S>& params, int round) {
  std::mt19937 rng(static_cast<unsigned>(10 * worldRank() + round) + 1);
  std::uniform_real_distribution<double> u(-1, 1);
  for (const auto& e : params) {
    e.gradient.array() = Eigen::Array<S, Eigen::Dynamic, 1>::NullaryExpr(
        e.gradient.size(), [&] { return static_cast<S>(u(rng)); });
  }
}

/// max |a − b| / (1 + max |b|) over every entry.
template <typename S>
double relativeError(const std::vector<S>& a, const std::vector<S>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    diff = std::max(diff, std::abs(double(a[k]) - double(b[k])));
    scale = std::max(scale, std::abs(double(b[k])));
  }
  return diff / (1 + scale);
}

template <typename S>
constexpr double tolerance() {
  return std::is_same_v<S, float> ? 1e-6 : 1e-12;
}

template <typename S>
using LSTMSeq = recurrent::Sequence<recurrent::LSTMCell<S>>;
template <typename S>
using GRUSeq = recurrent::Sequence<recurrent::GRUCell<S>>;
template <typename S>
using LSTMStack = recurrent::Stack<recurrent::LSTMCell<S>>;

/// Builds the model of each case: a cell of hidden size 5 in a Sequence, or a 2-layer
/// bidirectional Stack of hidden size 4 (output 8).
template <typename Layer>
struct Make;
template <typename S>
struct Make<LSTMSeq<S>> {
  static Model<LSTMSeq<S>, S> model(unsigned seed) {
    return Model<LSTMSeq<S>, S>(seed, 5, recurrent::LSTMCell<S>(3, 5));
  }
};
template <typename S>
struct Make<GRUSeq<S>> {
  static Model<GRUSeq<S>, S> model(unsigned seed) {
    return Model<GRUSeq<S>, S>(seed, 5, recurrent::GRUCell<S>(3, 5));
  }
};
template <typename S>
struct Make<LSTMStack<S>> {
  static Model<LSTMStack<S>, S> model(unsigned seed) {
    return Model<LSTMStack<S>, S>(seed, 8, Index(3), Index(4),
                                  recurrent::StackOptions().numLayers(2).bidirectional());
  }
};

}  // namespace

TEST_CASE("shareOfBatch splits by total length, the same on every process") {
  const std::vector<int> lengths{10, 9, 8, 1, 1, 1};
  // Longest first to the least loaded: 10 → 0, 9 → 1, 8 → 1, then the 1s → 0.
  CHECK(recurrent::shareOfBatch(lengths, 0, 2) == std::vector<int>{0, 3, 4, 5});
  CHECK(recurrent::shareOfBatch(lengths, 1, 2) == std::vector<int>{1, 2});
  for (int size = 1; size <= 5; ++size) {
    const std::vector<int> many{3, 17, 5, 5, 9, 1, 12, 7, 7, 2, 30};
    std::vector<int> seen;
    long long most = 0, least = 1LL << 40;
    for (int r = 0; r < size; ++r) {
      const std::vector<int> mine = recurrent::shareOfBatch(many, r, size);
      CHECK(std::is_sorted(mine.begin(), mine.end()));
      long long total = 0;
      for (int b : mine) total += many[std::size_t(b)];
      most = std::max(most, total);
      least = std::min(least, total);
      seen.insert(seen.end(), mine.begin(), mine.end());
    }
    std::sort(seen.begin(), seen.end());
    std::vector<int> all(many.size());
    std::iota(all.begin(), all.end(), 0);
    CHECK(seen == all);         // every sequence once
    CHECK(most - least <= 30);  // within the longest sequence
  }
  CHECK(recurrent::shareOfBatch({4, 2}, 2, 3).empty());
  CHECK_THROWS_WITH(recurrent::shareOfBatch(lengths, 2, 2),
                    "recurrent: shareOfBatch: rank must be in 0..size-1 with size >= 1, got rank "
                    "2 of 2");
  CHECK_THROWS_WITH(recurrent::shareOfBatch({3, 0}, 0, 2),
                    "recurrent: shareOfBatch: every length must be at least 1, got 0 at 1");
}

TEMPLATE_TEST_CASE("the averaged gradient of a split batch is the whole batch's", "",
                   LSTMSeq<float>, LSTMSeq<double>, GRUSeq<float>, GRUSeq<double>, LSTMStack<float>,
                   LSTMStack<double>) {
  using Layer = TestType;
  using S = typename Layer::Scalar;
  const Batch<S> batch;

  auto reference = Make<Layer>::model(11);
  reference.gradients(batch, batch.all());
  const std::vector<S> whole = flatten(reference.params, true);

  auto model = Make<Layer>::model(11);
  const std::vector<int> mine = recurrent::shareOfBatch(batch.lengths, worldRank(), worldSize());
  std::vector<std::vector<S>> results;
  for (std::size_t bucketBytes : {std::size_t(1), std::size_t(512), std::size_t(1) << 22}) {
    recurrent::DataParallel<S> dp(model.params, MPI_COMM_WORLD, bucketBytes);
    if (bucketBytes == 1) CHECK(dp.numBuckets() == model.params.size());
    const double weight = model.gradients(batch, mine);
    dp.averageGradients(weight);
    results.push_back(flatten(model.params, true));
    CHECK(relativeError(results.back(), whole) <= tolerance<S>());
    CHECK(sameOnEveryRank(results.back()));
  }
  // The bucketing does not change a bit.
  CHECK(results[0] == results[1]);
  CHECK(results[0] == results[2]);

  if constexpr (std::is_same_v<Layer, LSTMStack<S>>) {
    // Started layer by layer during backward, through shared memory and as messages: the same
    // bits.
    for (auto transport : {recurrent::Transport::Automatic, recurrent::Transport::Messages}) {
      recurrent::DataParallel<S> dp(model.params, MPI_COMM_WORLD, 512, transport);
      dp.connect(model.layer);
      model.gradients(
          batch, mine, [&](double weight) { dp.begin(weight); },
          [&] {
            dp.ready("fc.");
            CHECK(dp.bucketsSent() == 0);  // bucket 0 also holds tensors of the last layer
          });
      CHECK(dp.bucketsSent() == dp.numBuckets());  // the layers reported themselves, all sent
      dp.finish();
      recurrent::DataParallel<S>::disconnect(model.layer);
      CHECK(flatten(model.params, true) == results[0]);
    }
  }
}

TEMPLATE_TEST_CASE("five Adam steps on split batches: every process equal, and equal to one", "",
                   LSTMSeq<float>, GRUSeq<double>, LSTMStack<float>) {
  using Layer = TestType;
  using S = typename Layer::Scalar;
  const Batch<S> batch;

  auto reference = Make<Layer>::model(5);
  recurrent::Adam<S> referenceAdam(reference.params, recurrent::AdamOptions(0.01));
  for (int step = 0; step < 5; ++step) {
    reference.gradients(batch, batch.all());
    referenceAdam.step();
  }

  std::vector<std::vector<S>> results;
  for (Transport transport : kTransports) {
    // Each process starts from its own initialisation; the broadcast makes them rank 0's, which
    // is the reference's.
    auto model = Make<Layer>::model(worldRank() == 0 ? 5 : 100 + unsigned(worldRank()));
    recurrent::DataParallel<S> dp(model.params, MPI_COMM_WORLD,
                                  recurrent::DataParallel<S>::kDefaultBucketBytes, transport);
    CHECK(dp.sharesMemory() == sharesMemory(transport));
    dp.broadcastParameters();
    CHECK(sameOnEveryRank(flatten(model.params, false)));
    recurrent::Adam<S> adam(model.params, recurrent::AdamOptions(0.01));
    const std::vector<int> mine = recurrent::shareOfBatch(batch.lengths, dp.rank(), dp.size());
    for (int step = 0; step < 5; ++step) {
      dp.averageGradients(model.gradients(batch, mine));
      adam.step();
    }
    results.push_back(flatten(model.params, false));
    CHECK(sameOnEveryRank(results.back()));
    CHECK(relativeError(results.back(), flatten(reference.params, false)) <= 1e-5);
  }
  CHECK(results[0] == results[1]);
}

TEST_CASE("DataParallel refuses what it cannot average") {
  using S = float;
  auto model = Make<LSTMSeq<S>>::model(1);
  SECTION("parameter lists that differ between processes, on every process") {
    recurrent::Linear<S> extra(worldRank() == 0 ? 3 : 4, 1);
    auto extraGrads = extra.zeroGradients();
    model.params.add(extra.parameters(), extraGrads, "extra.");
    if (worldSize() > 1) {
      CHECK_THROWS_WITH(recurrent::DataParallel<S>(model.params),
                        Contains("the processes' parameter lists differ") &&
                            Contains("this is rank " + std::to_string(worldRank())));
    }
  }
  SECTION("bucket sizes that differ between processes") {
    if (worldSize() > 1) {
      CHECK_THROWS_WITH(
          recurrent::DataParallel<S>(model.params, MPI_COMM_WORLD, worldRank() == 0 ? 64 : 128),
          Contains("the processes' parameter lists differ"));
    }
  }
  SECTION("transports that differ between processes") {
    if (worldSize() > 1) {
      const Transport transport = worldRank() == 0 ? Transport::Messages : Transport::Automatic;
      CHECK_THROWS_WITH(
          recurrent::DataParallel<S>(model.params, MPI_COMM_WORLD,
                                     recurrent::DataParallel<S>::kDefaultBucketBytes, transport),
          Contains("the transport must be the same"));
    }
  }
  SECTION("one process's list refused, on every process") {
    recurrent::ParameterList<S> empty;
    const auto& list = worldRank() == 0 ? empty : model.params;
    if (worldSize() > 1) {
      CHECK_THROWS_WITH(recurrent::DataParallel<S>(list),
                        worldRank() == 0 ? "recurrent: DataParallel: the parameter list is empty"
                                         : "recurrent: DataParallel: another process refused its "
                                           "parameter list");
    }
  }
  SECTION("calls out of order, and bad arguments") {
    recurrent::DataParallel<S> dp(model.params);
    CHECK_THROWS_WITH(dp.finish(),
                      "recurrent: DataParallel::finish: no average is in flight "
                      "(call begin() first)");
    CHECK_THROWS_WITH(dp.ready(0, 1),
                      "recurrent: DataParallel::ready: no average is in flight "
                      "(call begin() first)");
    CHECK_THROWS_WITH(dp.broadcastParameters(worldSize()),
                      "recurrent: DataParallel::broadcastParameters: root must be in 0.." +
                          std::to_string(worldSize() - 1) + ", got " + std::to_string(worldSize()));
    CHECK_THROWS_WITH(dp.bucketEntries(dp.numBuckets()),
                      Contains("DataParallel::bucketEntries: k must be in 0.."));
    dp.begin(1);
    CHECK_THROWS_WITH(dp.begin(1),
                      "recurrent: DataParallel::begin: an average is in flight "
                      "(begin() without finish())");
    CHECK_THROWS_WITH(dp.ready(2, 1),
                      "recurrent: DataParallel::ready: entries [first, last) must be within "
                      "[0, 6), got [2, 1)");
    CHECK_THROWS_WITH(dp.ready("nothing."),
                      "recurrent: DataParallel::ready: no entry of the list starts with "
                      "'nothing.'");
    dp.ready("fc.");
    CHECK_THROWS_WITH(dp.ready(4, 6),
                      "recurrent: DataParallel::ready: fc.weight was reported twice in one "
                      "average (one backward per begin() and finish())");
    dp.finish();
  }
  SECTION("a weight that is not finite and >= 0 on one process: every process refuses") {
    for (Transport transport : kTransports) {
      recurrent::DataParallel<S> dp(model.params, MPI_COMM_WORLD,
                                    recurrent::DataParallel<S>::kDefaultBucketBytes, transport);
      for (const auto& e : model.params) e.gradient.array().setConstant(S(0.25));
      const std::vector<S> before = flatten(model.params, true);
      const int last = worldSize() - 1;
      CHECK_THROWS_WITH(dp.averageGradients(worldRank() == last ? -1 : 1),
                        "recurrent: DataParallel::finish: every weight must be finite and >= 0, "
                        "got " +
                            std::string(worldRank() == last ? "-1.000000" : "another") +
                            " on rank " + std::to_string(last));
      CHECK(flatten(model.params, true) == before);
      CHECK_FALSE(dp.inProgress());
      dp.averageGradients(1);                        // usable again
      CHECK(flatten(model.params, true) == before);  // every process's 0.25
    }
  }
  SECTION("weights that sum to zero leave the gradients as they were") {
    for (Transport transport : kTransports) {
      recurrent::DataParallel<S> dp(model.params, MPI_COMM_WORLD,
                                    recurrent::DataParallel<S>::kDefaultBucketBytes, transport);
      for (const auto& e : model.params) e.gradient.array().setConstant(S(0.25));
      const std::vector<S> before = flatten(model.params, true);
      CHECK_THROWS_WITH(dp.averageGradients(0),
                        "recurrent: DataParallel::finish: the processes' weights sum to 0; at "
                        "least one must be positive");
      CHECK(flatten(model.params, true) == before);
      CHECK_FALSE(dp.inProgress());
    }
  }
  SECTION("a tensor reshaped after the buckets were made, even to as many scalars") {
    recurrent::DataParallel<S> dp(model.params);
    model.fc.parameters().weight.resize(5, 2);
    model.fcGrads.weight.resize(5, 2);
    CHECK_THROWS_WITH(dp.averageGradients(1),
                      "recurrent: DataParallel::begin: fc.weight must be 2 x 5 as when the "
                      "buckets were made, got 5 x 2");
    CHECK_FALSE(dp.inProgress());
  }
}

TEST_CASE("a process with no share of the batch takes part with weight 0") {
  using S = double;
  const Batch<S> batch;
  // Two sequences: with three processes, one has none.
  const std::vector<int> two{0, 1};
  Batch<S> small;
  small.lengths = {batch.lengths[0], batch.lengths[1]};
  small.x = recurrent::selectSequences(batch.x, batch.batch(), two);
  small.target = recurrent::selectSequences(batch.target, batch.batch(), two);
  auto reference = Make<GRUSeq<S>>::model(3);
  reference.gradients(small, two);
  for (Transport transport : kTransports) {
    auto model = Make<GRUSeq<S>>::model(3);
    // A bucket a tensor: fc.bias, 2 scalars, leaves one of three processes an empty slice.
    recurrent::DataParallel<S> dp(model.params, MPI_COMM_WORLD, 1, transport);
    const std::vector<int> mine = recurrent::shareOfBatch(small.lengths, dp.rank(), dp.size());
    // A gradient left with a NaN by the process with nothing to do does not reach the others.
    const double weight = model.gradients(small, mine);
    if (mine.empty()) model.params[0].gradient.array()(0) = std::numeric_limits<S>::quiet_NaN();
    dp.averageGradients(weight);
    CHECK(relativeError(flatten(model.params, true), flatten(reference.params, true)) <= 1e-12);
  }
}

TEST_CASE("a process late to sum its slices: the others wait for its sums") {
  // Every process sends its buckets at once; then one of them, a different one each round,
  // sleeps before finish() sums its slices. The others must read its sums only once written.
  using S = float;
  recurrent::GRUCell<S> cell(8, 8);
  auto grads = cell.zeroGradients();
  recurrent::ParameterList<S> params;
  params.add(cell.parameters(), grads, "rnn.");
  std::vector<std::vector<S>> results;
  for (Transport transport : kTransports) {
    recurrent::DataParallel<S> dp(params, MPI_COMM_WORLD, 256, transport);
    for (int round = 0; round < 3; ++round) {
      randomGradients(params, round);
      dp.begin(1);
      dp.ready(0, params.size());
      if (worldRank() == round % worldSize()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      dp.finish();
      results.push_back(flatten(params, true));
      CHECK(sameOnEveryRank(results.back()));
    }
  }
  REQUIRE(results.size() == 6);
  for (std::size_t k = 0; k < 3; ++k) CHECK(results[k] == results[k + 3]);
}

TEST_CASE("neither bucket sizes nor the transport change a bit of a larger model's average") {
  using S = float;
  recurrent::LSTMCell<S> cell(64, 64);  // 4·64·128 + 512 scalars, 130 KB
  auto grads = cell.zeroGradients();
  recurrent::ParameterList<S> params;
  params.add(cell.parameters(), grads, "rnn.");
  std::vector<std::vector<S>> results;
  for (Transport transport : {Transport::Messages, Transport::Automatic}) {
    for (std::size_t bucketBytes : {std::size_t(1), std::size_t(1) << 14, std::size_t(1) << 22}) {
      recurrent::DataParallel<S> dp(params, MPI_COMM_WORLD, bucketBytes, transport);
      CHECK(dp.sharesMemory() == sharesMemory(transport));
      // Two averages in a row, so that the second's writes follow the first's reads.
      for (int round = 0; round < 2; ++round) {
        randomGradients(params, round);
        dp.averageGradients(1.0 + worldRank() + round);
        results.push_back(flatten(params, true));
        CHECK(sameOnEveryRank(results.back()));
      }
    }
  }
  REQUIRE(results.size() == 12);
  for (std::size_t k = 2; k < results.size(); ++k) {
    INFO("transport " << k / 6 << ", bucket size " << k / 2 % 3 << ", round " << k % 2);
    CHECK(results[k] == results[k % 2]);
  }
  CHECK(results[0] != results[1]);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  // Every process runs every test; only rank 0 reports passes, every rank reports failures.
  const int failed = Catch::Session().run(argc, argv);
  int anyFailed = 0;
  MPI_Allreduce(&failed, &anyFailed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return anyFailed != 0 ? 1 : 0;
}
