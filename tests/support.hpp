// Shared test support: cell cases, random data, losses, finite differences, fixtures.
#pragma once

#include <recurrent/recurrent.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace test {

using Index = Eigen::Index;
template <typename S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
using MatrixXd = Eigen::MatrixXd;

// ---- the cells under test, one "case" each --------------------------------------------------

template <typename S>
struct LSTM {
  using Cell = recurrent::LSTMCell<S>;
  static constexpr const char* kName = "lstm";
  static Cell make(Index I, Index H) { return Cell(I, H); }
};
template <typename S>
struct PeepholeLSTM {
  using Cell = recurrent::PeepholeLSTMCell<S>;
  static constexpr const char* kName = "lstm_peephole";
  static Cell make(Index I, Index H) { return Cell(I, H); }
};
/// LSTMs with a projection: proj_size = H / 2.
template <typename S>
struct ProjLSTM {
  using Cell = recurrent::LSTMCell<S>;
  static constexpr const char* kName = "lstm_proj";
  static Cell make(Index I, Index H) { return Cell(I, H, H / 2); }
};
template <typename S>
struct PeepholeProjLSTM {
  using Cell = recurrent::PeepholeLSTMCell<S>;
  static constexpr const char* kName = "lstm_peephole_proj";
  static Cell make(Index I, Index H) { return Cell(I, H, H / 2); }
};
template <typename S>
struct GRU {
  using Cell = recurrent::GRUCell<S>;
  static constexpr const char* kName = "gru";
  static Cell make(Index I, Index H) { return Cell(I, H); }
};
template <typename S>
struct GRUResetBefore {
  using Cell = recurrent::ResetBeforeGRUCell<S>;
  static constexpr const char* kName = "gru_reset_before";
  static Cell make(Index I, Index H) { return Cell(I, H); }
};
template <typename S>
struct RNNTanh {
  using Cell = recurrent::RNNCell<S>;
  static constexpr const char* kName = "rnn_tanh";
  static Cell make(Index I, Index H) { return Cell(I, H, recurrent::Nonlinearity::Tanh); }
};
template <typename S>
struct RNNRelu {
  using Cell = recurrent::RNNCell<S>;
  static constexpr const char* kName = "rnn_relu";
  static Cell make(Index I, Index H) { return Cell(I, H, recurrent::Nonlinearity::Relu); }
};

template <typename Cell>
constexpr bool hasCellState() {
  return Cell::kHasCellState;
}

/// True for an LSTM cell with peephole weights.
template <typename Cell, typename = void>
struct HasPeepholes : std::false_type {};
template <typename Cell>
struct HasPeepholes<Cell, std::enable_if_t<Cell::kPeephole>> : std::true_type {};

// ---- random data ------------------------------------------------------------------------------

/// Uniform in [lo, hi) from a seeded generator (portable: not std::uniform_real_distribution).
template <typename S>
Mat<S> uniform(Index rows, Index cols, std::mt19937& rng, double lo = -1.0, double hi = 1.0) {
  Mat<S> m(rows, cols);
  for (Index k = 0; k < m.size(); ++k) {
    m.data()[k] = static_cast<S>(lo + (hi - lo) * recurrent::detail::uniform01(rng));
  }
  return m;
}

/// Every parameter of `cell` from U(-scale, scale).
template <typename Cell>
void randomize(Cell& cell, std::mt19937& rng, double scale = 0.8) {
  using S = typename Cell::Scalar;
  cell.parameters().forEach([&](const char*, auto& t) {
    for (Index k = 0; k < t.size(); ++k) {
      t.data()[k] = static_cast<S>(scale * (2.0 * recurrent::detail::uniform01(rng) - 1.0));
    }
  });
}

template <typename Cell>
typename Cell::State randomState(const Cell& cell, Index B, std::mt19937& rng) {
  using S = typename Cell::Scalar;
  typename Cell::State s = cell.zeroState(B);
  s.h = uniform<S>(s.h.rows(), B, rng, -0.5, 0.5);
  if constexpr (Cell::kHasCellState) s.c = uniform<S>(s.c.rows(), B, rng, -0.5, 0.5);
  return s;
}

/// Columns of sequence b (steps 0..n−1) of a time-major batch of B.
template <typename M>
M sequenceOf(const M& x, Index b, Index B, Index n) {
  M out(x.rows(), n);
  for (Index t = 0; t < n; ++t) out.col(t) = x.col(t * B + b);
  return out;
}

/// Column b of every matrix of a state.
template <typename Cell>
typename Cell::State stateColumn(const typename Cell::State& s, Index b) {
  typename Cell::State out = s;
  out.h = s.h.col(b);
  if constexpr (Cell::kHasCellState) out.c = s.c.col(b);
  return out;
}

// ---- a linear loss on outputs and final state -------------------------------------------------

/// L = Σ wy ⊙ y + Σ wh ⊙ h_final [+ Σ wc ⊙ c_final]: its gradients are wy, wh, wc themselves.
template <typename Cell>
struct LinearLoss {
  using S = typename Cell::Scalar;
  Mat<S> wy;
  typename Cell::State wFinal;

  double operator()(const Mat<S>& y, const typename Cell::State& final) const {
    double loss = (wy.array() * y.array()).template cast<double>().sum();
    loss += (wFinal.h.array() * final.h.array()).template cast<double>().sum();
    if constexpr (Cell::kHasCellState) {
      loss += (wFinal.c.array() * final.c.array()).template cast<double>().sum();
    }
    return loss;
  }
};

template <typename Cell>
LinearLoss<Cell> randomLoss(const Cell& cell, Index T, Index B, std::mt19937& rng) {
  using S = typename Cell::Scalar;
  return LinearLoss<Cell>{uniform<S>(cell.outputSize(), T * B, rng), randomState(cell, B, rng)};
}

// ---- finite differences -------------------------------------------------------------------------

/// Relative error of an analytic gradient against a numerical one, scaled by the tensor:
/// max_k |a_k − n_k| / max_k |n_k|.
inline double relativeError(const MatrixXd& analytic, const MatrixXd& numeric) {
  const double scale = numeric.cwiseAbs().maxCoeff();
  const double diff = (analytic - numeric).cwiseAbs().maxCoeff();
  return scale > 0 ? diff / scale : diff;
}

/// Central differences of `loss` with respect to every entry of `tensor` (perturbed in place).
template <typename Tensor>
MatrixXd numericGradient(Tensor& tensor, const std::function<double()>& loss, double eps = 1e-5) {
  MatrixXd g(tensor.rows(), tensor.cols());
  for (Index k = 0; k < tensor.size(); ++k) {
    const auto saved = tensor.data()[k];
    tensor.data()[k] = saved + eps;
    const double plus = loss();
    tensor.data()[k] = saved - eps;
    const double minus = loss();
    tensor.data()[k] = saved;
    g.data()[k] = (plus - minus) / (2.0 * eps);
  }
  return g;
}

// ---- PyTorch fixtures (tests/generate_fixtures.py) ----------------------------------------------

class Fixture {
 public:
  explicit Fixture(const std::string& name) {
    const std::string path = std::string(RECURRENT_TEST_DATA_DIR) + "/" + name + ".txt";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open fixture " + path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream header(line);
      std::string tensorName;
      header >> tensorName;
      std::vector<Index> dims;
      for (Index d; header >> d;) dims.push_back(d);
      std::string values;
      std::getline(in, values);
      std::istringstream v(values);
      Index count = 1;
      for (Index d : dims) count *= d;
      std::vector<double> data(static_cast<std::size_t>(count));
      for (double& x : data) v >> x;
      if (!v) throw std::runtime_error("fixture " + path + ": short tensor " + tensorName);
      m_tensors[tensorName] = Tensor{dims, data};
    }
  }

  /// The tensor as PyTorch's row-major 2-D view: rows = Π dims[:-1], cols = dims[-1]
  /// (a 1-D tensor becomes a column).
  MatrixXd torch2d(const std::string& name) const {
    const Tensor& t = get(name);
    if (t.dims.size() == 1) {
      return Eigen::Map<const MatrixXd>(t.data.data(), t.dims[0], 1);
    }
    const Index cols = t.dims.back();
    const Index rows = static_cast<Index>(t.data.size()) / cols;
    return Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
        t.data.data(), rows, cols);
  }

  /// A (T, B, X) or (1, B, X) tensor in this library's layout: X × (T·B), one column per step
  /// and sequence.
  MatrixXd columns(const std::string& name) const { return torch2d(name).transpose(); }

  bool has(const std::string& name) const { return m_tensors.count(name) != 0; }

  std::vector<int> lengths() const {
    std::vector<int> out;
    for (double v : get("lengths").data) out.push_back(static_cast<int>(v));
    return out;
  }

 private:
  struct Tensor {
    std::vector<Index> dims;
    std::vector<double> data;
  };
  const Tensor& get(const std::string& name) const {
    auto it = m_tensors.find(name);
    if (it == m_tensors.end()) throw std::runtime_error("fixture has no tensor " + name);
    return it->second;
  }
  std::map<std::string, Tensor> m_tensors;
};

/// The tolerance of a comparison with a PyTorch fixture: 1e-5 in float, 1e-10 in double.
template <typename S>
double torchTolerance() {
  return std::is_same<S, float>::value ? 1e-5 : 1e-10;
}

/// Max over entries of |ours − ref| / max(1, |ref|) (the shapes must agree).
template <typename Ours>
double errorAgainst(const Ours& ours, const Mat<double>& ref) {
  if (ours.rows() != ref.rows() || ours.cols() != ref.cols()) {
    throw std::runtime_error("errorAgainst: shapes differ");
  }
  const Mat<double> o = ours.template cast<double>();
  return ((o - ref).array().abs() / ref.array().abs().max(1.0)).maxCoeff();
}

}  // namespace test
