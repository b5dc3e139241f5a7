// oneDNN's RNN primitives on the shapes of bench_sequence, for benchmarks/compare.
//
//   onednn_rnn [--cells lstm,lbr_gru] [--modes infer,train,step] [--shapes T:B:I:H,...]
//              [--step-sizes I:H,...] [--threads N] [--repetitions R] [--min-time S]
//              [--max-time S] [--precision f32|int8|bf16]
//
// Prints one JSON line per measurement (impl "onednn"; cell "lstm" or "gru", the GRU being
// oneDNN's lbr_gru, PyTorch's linear-before-reset variant; "precision"), after a line
// {"config": {...}}. A cell that oneDNN does not implement in the precision asked for gets a
// row with "unsupported" (the reason) in place of the times.
//
//   infer   forward_inference over the whole sequence batch
//   train   forward_training (with workspace) + backward: a gradient of ones on every output,
//           zero on the final state; computes dL/dx, dL/dh0 (and dL/dc0) and the weight
//           gradients, as Sequence::backward does
//   step    forward_inference of one time step of one sequence (T = B = 1), the state carried
//           from call to call through two ping-pong buffers (the streaming case)
//
// Its best configuration, all set up once outside the timed loop: f32; data in the tnc / ldnc
// layouts a caller holds; weights created with format_tag::any and reordered once into the
// layouts the forward and the backward primitive each prefer; a user-managed scratchpad
// allocated once; argument maps built once, so a timed call is execute() + wait(). The thread
// count is set with omp_set_num_threads() before the primitives are created (the OpenMP
// runtime of Debian's libdnnl).
//
// int8 and bf16 (--precision): forward inference only (infer, step); see Reduced for the data
// types, the quantization and what a timed call includes. Each such row also carries
// "primitive_ms" (execute() alone) and "max_abs_diff_vs_f32", the largest difference of its
// output from the f32 primitive's on the same data, computed once outside the timing.
//
// Options and timing as in peer_timing.hpp: the median over repetitions of the mean time of a
// call, after a warm-up.
#include "peer_timing.hpp"

#include <oneapi/dnnl/dnnl.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

using dnnl::memory;
using Dims = memory::dims;
using Tag = memory::format_tag;
using Args = std::unordered_map<int, memory>;

/// A streaming call's arguments: `args` with the states swapped, so that the call after one with
/// `args` reads the state it wrote (h0 ↔ h1, and c0 ↔ c1 for an LSTM).
Args swappedStates(Args args, const memory& h0, const memory& h1, const memory& c0,
                   const memory& c1, bool lstm) {
  args[DNNL_ARG_SRC_ITER] = h1;
  args[DNNL_ARG_DST_ITER] = h0;
  if (lstm) {
    args[DNNL_ARG_SRC_ITER_C] = c1;
    args[DNNL_ARG_DST_ITER_C] = c0;
  }
  return args;
}

enum class Cell { lstm, lbrGru };
enum class Mode { infer, train, step };
using peer::Shape;

Cell cellOf(const std::string& name) {
  if (name == "lstm") return Cell::lstm;
  if (name == "gru" || name == "lbr_gru") return Cell::lbrGru;
  throw std::invalid_argument("unknown cell " + name + " (lstm, lbr_gru or gru)");
}

Mode modeOf(const std::string& name) {
  if (name == "infer") return Mode::infer;
  if (name == "train") return Mode::train;
  if (name == "step") return Mode::step;
  throw std::invalid_argument("unknown mode " + name + " (infer, train, step)");
}

const char* cellName(Cell c) { return c == Cell::lstm ? "lstm" : "gru"; }
const char* algorithmName(Cell c) { return c == Cell::lstm ? "vanilla_lstm" : "lbr_gru"; }
const char* modeName(Mode m) {
  return m == Mode::infer ? "infer" : m == Mode::train ? "train" : "step";
}

memory::desc desc(const Dims& dims, Tag tag) { return {dims, memory::data_type::f32, tag}; }

/// A memory of `md` filled from U(lo, hi), or with lo everywhere when lo == hi.
memory filled(const memory::desc& md, const dnnl::engine& engine, std::mt19937& rng, float lo,
              float hi) {
  memory m(md, engine);
  auto* p = static_cast<float*>(m.get_data_handle());
  const std::size_t n = md.get_size() / sizeof(float);
  std::uniform_real_distribution<float> u(lo, hi);
  for (std::size_t k = 0; k < n; ++k) p[k] = lo == hi ? lo : u(rng);
  return m;
}

/// `user` in the layout `wanted` (the same memory when the layouts agree), reordered once.
memory inLayout(const memory& user, const memory::desc& wanted, const dnnl::engine& engine,
                dnnl::stream& stream) {
  if (user.get_desc() == wanted) return user;
  memory in = user, out(wanted, engine);
  dnnl::reorder(in, out).execute(stream, in, out);
  stream.wait();
  return out;
}

/// The caller's f32 data of one problem: input U(-1, 1), weights and biases U(-1/√H, 1/√H)
/// (PyTorch's initialisation), the weights in ldigo, drawn in this order from one seed so that
/// every precision of a problem runs on the same numbers.
struct UserData {
  memory x, wLayer, wIter, bias;
};

UserData userData(const dnnl::engine& engine, Cell cell, const Shape& s) {
  const memory::dim G = cell == Cell::lstm ? 4 : 3;
  const memory::dim biasGates = cell == Cell::lstm ? G : G + 1;  // lbr_gru keeps b_hn apart
  std::mt19937 rng(1);
  const float bound = 1.0f / std::sqrt(static_cast<float>(s.H));
  UserData u;
  u.x = filled(desc({s.T, s.B, s.I}, Tag::tnc), engine, rng, -1, 1);
  u.wLayer = filled(desc({1, 1, s.I, G, s.H}, Tag::ldigo), engine, rng, -bound, bound);
  u.wIter = filled(desc({1, 1, s.H, G, s.H}, Tag::ldigo), engine, rng, -bound, bound);
  u.bias = filled(desc({1, 1, biasGates, s.H}, Tag::ldgo), engine, rng, -bound, bound);
  return u;
}

/// The primitives and buffers of one f32 problem, ready to run.
class Problem {
 public:
  Problem(const dnnl::engine& engine, Cell cell, Mode mode, const Shape& s, const UserData& u)
      : m_stream(engine), m_mode(mode) {
    const memory::dim G = cell == Cell::lstm ? 4 : 3;
    const bool lstm = cell == Cell::lstm;
    const memory::dim biasGates = lstm ? G : G + 1;  // lbr_gru keeps b_hn apart: G + 1 rows
    std::mt19937 rng(1);

    const memory::desc srcLayer = desc({s.T, s.B, s.I}, Tag::tnc);
    const memory::desc dstLayer = desc({s.T, s.B, s.H}, Tag::tnc);
    const memory::desc state = desc({1, 1, s.B, s.H}, Tag::ldnc);
    const memory::desc stateC = lstm ? state : memory::desc();
    const memory::desc weightsLayerAny = desc({1, 1, s.I, G, s.H}, Tag::any);
    const memory::desc weightsIterAny = desc({1, 1, s.H, G, s.H}, Tag::any);
    const memory::desc bias = desc({1, 1, biasGates, s.H}, Tag::ldgo);
    const auto direction = dnnl::rnn_direction::unidirectional_left2right;
    const auto prop = mode == Mode::train ? dnnl::prop_kind::forward_training
                                          : dnnl::prop_kind::forward_inference;

    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);

    // The forward primitive, and for training the backward one (its descriptor repeats the
    // forward's, then the gradients: diff_src_layer, diff_src_iter(_c), diff_weights_layer,
    // diff_weights_iter, diff_bias, diff_dst_layer, diff_dst_iter(_c)).
    dnnl::primitive_desc fwd, bwd;
    const dnnl::prop_kind back = dnnl::prop_kind::backward;
    if (lstm) {
      const dnnl::lstm_forward::primitive_desc f(
          dnnl::lstm_forward::desc(prop, direction, srcLayer, state, stateC, weightsLayerAny,
                                   weightsIterAny, bias, dstLayer, state, stateC),
          attr, engine);
      fwd = f;
      if (mode == Mode::train) {
        bwd = dnnl::lstm_backward::primitive_desc(
            dnnl::lstm_backward::desc(back, direction, srcLayer, state, stateC, weightsLayerAny,
                                      weightsIterAny, bias, dstLayer, state, stateC, srcLayer,
                                      state, stateC, weightsLayerAny, weightsIterAny, bias,
                                      dstLayer, state, stateC),
            attr, engine, f);
      }
    } else {
      const dnnl::lbr_gru_forward::primitive_desc f(
          dnnl::lbr_gru_forward::desc(prop, direction, srcLayer, state, weightsLayerAny,
                                      weightsIterAny, bias, dstLayer, state),
          attr, engine);
      fwd = f;
      if (mode == Mode::train) {
        bwd = dnnl::lbr_gru_backward::primitive_desc(
            dnnl::lbr_gru_backward::desc(back, direction, srcLayer, state, weightsLayerAny,
                                         weightsIterAny, bias, dstLayer, state, srcLayer, state,
                                         weightsLayerAny, weightsIterAny, bias, dstLayer, state),
            attr, engine, f);
      }
    }
    m_impl = fwd.impl_info_str();

    // The user's data (userData()), states zero.
    const memory &x = u.x, &wLayer = u.wLayer, &wIter = u.wIter, &b = u.bias;
    const memory y(dstLayer, engine);
    m_output = y;
    memory h0 = filled(state, engine, rng, 0, 0), h1 = filled(state, engine, rng, 0, 0);
    memory c0, c1;
    if (lstm) {
      c0 = filled(state, engine, rng, 0, 0);
      c1 = filled(state, engine, rng, 0, 0);
    }

    const auto md = [](const dnnl::primitive_desc& pd, int arg) {
      return pd.query_md(dnnl::query::exec_arg_md, arg);
    };
    Args f;
    f[DNNL_ARG_SRC_LAYER] = x;
    f[DNNL_ARG_SRC_ITER] = h0;
    f[DNNL_ARG_WEIGHTS_LAYER] = inLayout(wLayer, md(fwd, DNNL_ARG_WEIGHTS_LAYER), engine, m_stream);
    f[DNNL_ARG_WEIGHTS_ITER] = inLayout(wIter, md(fwd, DNNL_ARG_WEIGHTS_ITER), engine, m_stream);
    f[DNNL_ARG_BIAS] = b;
    f[DNNL_ARG_DST_LAYER] = y;
    f[DNNL_ARG_DST_ITER] = h1;
    if (lstm) {
      f[DNNL_ARG_SRC_ITER_C] = c0;
      f[DNNL_ARG_DST_ITER_C] = c1;
    }
    memory::dim scratch = static_cast<memory::dim>(fwd.scratchpad_desc().get_size());
    if (mode == Mode::train) {
      f[DNNL_ARG_WORKSPACE] = memory(fwd.workspace_desc(), engine);
      m_implBackward = bwd.impl_info_str();
      Args g = f;
      g[DNNL_ARG_WEIGHTS_LAYER] =
          inLayout(wLayer, md(bwd, DNNL_ARG_WEIGHTS_LAYER), engine, m_stream);
      g[DNNL_ARG_WEIGHTS_ITER] = inLayout(wIter, md(bwd, DNNL_ARG_WEIGHTS_ITER), engine, m_stream);
      g[DNNL_ARG_DIFF_DST_LAYER] = filled(dstLayer, engine, rng, 1, 1);  // ones on every output
      g[DNNL_ARG_DIFF_DST_ITER] = filled(state, engine, rng, 0, 0);
      g[DNNL_ARG_DIFF_SRC_LAYER] = memory(srcLayer, engine);
      g[DNNL_ARG_DIFF_SRC_ITER] = memory(state, engine);
      g[DNNL_ARG_DIFF_WEIGHTS_LAYER] =
          filled(md(bwd, DNNL_ARG_DIFF_WEIGHTS_LAYER), engine, rng, 0, 0);
      g[DNNL_ARG_DIFF_WEIGHTS_ITER] =
          filled(md(bwd, DNNL_ARG_DIFF_WEIGHTS_ITER), engine, rng, 0, 0);
      g[DNNL_ARG_DIFF_BIAS] = filled(md(bwd, DNNL_ARG_DIFF_BIAS), engine, rng, 0, 0);
      if (lstm) {
        g[DNNL_ARG_DIFF_DST_ITER_C] = filled(state, engine, rng, 0, 0);
        g[DNNL_ARG_DIFF_SRC_ITER_C] = memory(state, engine);
      }
      scratch = std::max(scratch, static_cast<memory::dim>(bwd.scratchpad_desc().get_size()));
      m_backward = dnnl::primitive(bwd);
      m_backwardArgs = g;
    }
    m_forward = dnnl::primitive(fwd);
    m_forwardArgs = f;

    // One scratchpad for both primitives (they never run at the same time).
    const memory pad(desc({scratch / static_cast<memory::dim>(sizeof(float)) + 1}, Tag::a), engine);
    m_forwardArgs[DNNL_ARG_SCRATCHPAD] = pad;
    if (mode == Mode::train) m_backwardArgs[DNNL_ARG_SCRATCHPAD] = pad;

    // Streaming: the next call reads the state this call wrote.
    if (mode == Mode::step) m_stepArgs = swappedStates(m_forwardArgs, h0, h1, c0, c1, lstm);
  }

  /// One timed call.
  void run() {
    if (m_mode == Mode::step) {
      m_forward.execute(m_stream, m_odd ? m_stepArgs : m_forwardArgs);
      m_odd = !m_odd;
    } else {
      m_forward.execute(m_stream, m_forwardArgs);
      if (m_mode == Mode::train) m_backward.execute(m_stream, m_backwardArgs);
    }
    m_stream.wait();
  }

  const std::string& impl() const { return m_impl; }
  const std::string& implBackward() const { return m_implBackward; }
  /// dst_layer (f32, tnc): after the first run(), the output from zero states.
  const memory& output() const { return m_output; }

 private:
  dnnl::stream m_stream;
  Mode m_mode;
  dnnl::primitive m_forward, m_backward;
  Args m_forwardArgs, m_backwardArgs, m_stepArgs;
  memory m_output;
  bool m_odd = false;
  std::string m_impl, m_implBackward;
};

enum class Precision { f32, int8, bf16 };

Precision precisionOf(const std::string& name) {
  if (name == "f32") return Precision::f32;
  if (name == "int8") return Precision::int8;
  if (name == "bf16") return Precision::bf16;
  throw std::invalid_argument("unknown precision " + name + " (f32, int8, bf16)");
}

const char* precisionName(Precision p) {
  return p == Precision::f32 ? "f32" : p == Precision::int8 ? "int8" : "bf16";
}

/// The primitive-creation failure of an RNN that this oneDNN does not implement in a
/// precision: reported as a row, not as a failure of the program.
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// max |a - b| over two f32 memories of the same size.
float maxAbsDiff(const memory& a, const memory& b) {
  const auto* p = static_cast<const float*>(a.get_data_handle());
  const auto* q = static_cast<const float*>(b.get_data_handle());
  const std::size_t n = a.get_desc().get_size() / sizeof(float);
  float worst = 0;
  for (std::size_t k = 0; k < n; ++k) worst = std::max(worst, std::abs(p[k] - q[k]));
  return worst;
}

/// A reorder of `from` into `to` (with `attr`) and its arguments, to be run later.
struct Conversion {
  dnnl::primitive primitive;
  Args args;
};

Conversion conversion(const memory& from, const memory& to, const dnnl::engine& engine,
                      const dnnl::primitive_attr& attr = dnnl::primitive_attr()) {
  const dnnl::reorder::primitive_desc pd(engine, from.get_desc(), engine, to.get_desc(), attr);
  return {dnnl::reorder(pd), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}}};
}

/// oneDNN's int8 or bf16 forward inference of one problem (infer, or step with the state
/// carried), fed as a caller holding f32 data would feed it.
///
///   int8  u8 src_layer, s8 weights, f32 bias, f32 states (src_iter(_c), dst_iter(_c)) and f32
///         dst_layer. x is quantized by a reorder with the data parameters
///         (set_rnn_data_qparams: u8 = round(scale·x + shift), shift 128, scale 127 / max(1,
///         max|x|), so that x and every h in (-1, 1) fit: oneDNN quantizes h with the same
///         parameters). Weights: s8 with one scale per gate and output channel (mask of the
///         g and o dimensions of ldigo), 127 / max|w| over the inputs of both W_layer and
///         W_iter (oneDNN 2.6 takes one set of scales for both).
///   bf16  bf16 src_layer, src_iter, weights, dst_layer and dst_iter, f32 bias and (LSTM) f32
///         c states. x is rounded to bf16 and y widened back to f32 by reorders.
///
/// The weights are quantized / rounded once, outside the timed call, into the layout the
/// primitive chose (format any). A timed call is the conversion of x, execute() and, for
/// bf16, the conversion of y, then wait(): f32 in and f32 out, as Sequence::infer takes and
/// returns. runPrimitive() times execute() alone, for the rows' "primitive_ms".
class Reduced {
 public:
  Reduced(const dnnl::engine& engine, Cell cell, Mode mode, const Shape& s, Precision precision,
          const UserData& u)
      : m_stream(engine), m_mode(mode) {
    if (mode == Mode::train) {
      throw std::invalid_argument(std::string("--precision ") + precisionName(precision) +
                                  ": inference only (modes infer and step), got train");
    }
    using DT = memory::data_type;
    const bool lstm = cell == Cell::lstm;
    const bool int8 = precision == Precision::int8;
    const memory::dim G = lstm ? 4 : 3;
    const DT data = int8 ? DT::u8 : DT::bf16, weights = int8 ? DT::s8 : DT::bf16;
    const DT out = int8 ? DT::f32 : DT::bf16, iter = int8 ? DT::f32 : DT::bf16;

    const memory::desc srcLayer({s.T, s.B, s.I}, data, Tag::tnc);
    const memory::desc dstLayer({s.T, s.B, s.H}, out, Tag::tnc);
    const memory::desc state({1, 1, s.B, s.H}, iter, Tag::ldnc);
    const memory::desc stateC = lstm ? desc({1, 1, s.B, s.H}, Tag::ldnc) : memory::desc();
    const memory::desc weightsLayerAny({1, 1, s.I, G, s.H}, weights, Tag::any);
    const memory::desc weightsIterAny({1, 1, s.H, G, s.H}, weights, Tag::any);
    const memory::desc bias = u.bias.get_desc();
    const auto direction = dnnl::rnn_direction::unidirectional_left2right;
    const auto prop = dnnl::prop_kind::forward_inference;

    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::primitive_attr quantize;  // the reorders of x and of the weights
    if (int8) {
      const auto* x = static_cast<const float*>(u.x.get_data_handle());
      const std::size_t n = u.x.get_desc().get_size() / sizeof(float);
      float range = 1;
      for (std::size_t k = 0; k < n; ++k) range = std::max(range, std::abs(x[k]));
      m_dataScale = 127 / range;
      m_dataShift = 128;
      const std::vector<float> scales = weightScales(u, static_cast<std::size_t>(G * s.H));
      const int gatesAndOutputs = (1 << 3) | (1 << 4);  // dimensions g and o of ldigo
      for (dnnl::primitive_attr* a : {&attr, &quantize}) {
        a->set_rnn_data_qparams(m_dataScale, m_dataShift);
        a->set_rnn_weights_qparams(gatesAndOutputs, scales);
      }
    }

    dnnl::primitive_desc fwd;
    try {
      if (lstm) {
        fwd = dnnl::lstm_forward::primitive_desc(
            dnnl::lstm_forward::desc(prop, direction, srcLayer, state, stateC, weightsLayerAny,
                                     weightsIterAny, bias, dstLayer, state, stateC),
            attr, engine);
      } else {
        fwd = dnnl::lbr_gru_forward::primitive_desc(
            dnnl::lbr_gru_forward::desc(prop, direction, srcLayer, state, weightsLayerAny,
                                        weightsIterAny, bias, dstLayer, state),
            attr, engine);
      }
    } catch (const dnnl::error& e) {
      throw Unsupported(std::string("oneDNN does not implement ") + precisionName(precision) + " " +
                        algorithmName(cell) + " forward inference here (" + e.what() + ", status " +
                        std::to_string(static_cast<int>(e.status)) + ")");
    }
    m_impl = fwd.impl_info_str();

    const auto md = [&fwd](int arg) { return fwd.query_md(dnnl::query::exec_arg_md, arg); };
    const memory xq(srcLayer, engine), y(dstLayer, engine);
    const memory wLayer(md(DNNL_ARG_WEIGHTS_LAYER), engine);
    const memory wIter(md(DNNL_ARG_WEIGHTS_ITER), engine);
    for (auto [from, to] : {std::pair{u.wLayer, wLayer}, std::pair{u.wIter, wIter}}) {
      Conversion c = conversion(from, to, engine, quantize);
      c.primitive.execute(m_stream, c.args);
    }
    m_stream.wait();
    m_convertX = conversion(u.x, xq, engine, quantize);
    m_output = memory(desc({s.T, s.B, s.H}, Tag::tnc), engine);
    if (!int8) m_convertY = conversion(y, m_output, engine);

    const auto zero = [&](const memory::desc& d) {
      memory m(d, engine);
      std::fill_n(static_cast<unsigned char*>(m.get_data_handle()), d.get_size(), 0);
      return m;
    };
    const memory h0 = zero(state), h1 = zero(state);
    memory c0, c1;
    Args& f = m_forwardArgs;
    f[DNNL_ARG_SRC_LAYER] = xq;
    f[DNNL_ARG_SRC_ITER] = h0;
    f[DNNL_ARG_WEIGHTS_LAYER] = wLayer;
    f[DNNL_ARG_WEIGHTS_ITER] = wIter;
    f[DNNL_ARG_BIAS] = u.bias;
    f[DNNL_ARG_DST_LAYER] = int8 ? m_output : y;
    f[DNNL_ARG_DST_ITER] = h1;
    if (lstm) {
      c0 = zero(stateC);
      c1 = zero(stateC);
      f[DNNL_ARG_SRC_ITER_C] = c0;
      f[DNNL_ARG_DST_ITER_C] = c1;
    }
    const memory::dim scratch = static_cast<memory::dim>(fwd.scratchpad_desc().get_size());
    f[DNNL_ARG_SCRATCHPAD] =
        memory(desc({scratch / static_cast<memory::dim>(sizeof(float)) + 1}, Tag::a), engine);
    m_forward = dnnl::primitive(fwd);
    if (mode == Mode::step) m_stepArgs = swappedStates(f, h0, h1, c0, c1, lstm);
  }

  /// One timed call: f32 x in, f32 y out.
  void run() {
    m_convertX.primitive.execute(m_stream, m_convertX.args);
    runPrimitiveAsync();
    if (m_convertY.primitive) m_convertY.primitive.execute(m_stream, m_convertY.args);
    m_stream.wait();
  }

  /// The primitive alone, on the x converted by the last run().
  void runPrimitive() {
    runPrimitiveAsync();
    m_stream.wait();
  }

  const std::string& impl() const { return m_impl; }
  /// dst_layer in f32: after the first run(), the output from zero states.
  const memory& output() const { return m_output; }
  float dataScale() const { return m_dataScale; }
  float dataShift() const { return m_dataShift; }

 private:
  /// One scale per gate and output channel: 127 / max |w| over the inputs of W_layer and
  /// W_iter (both ldigo), in the order g·H + o of the masked dimensions.
  static std::vector<float> weightScales(const UserData& u, std::size_t columns) {
    std::vector<float> largest(columns, 0.0f);
    for (const memory* w : {&u.wLayer, &u.wIter}) {
      const auto* p = static_cast<const float*>(w->get_data_handle());
      const std::size_t n = w->get_desc().get_size() / sizeof(float);
      for (std::size_t k = 0; k < n; ++k) {
        largest[k % columns] = std::max(largest[k % columns], std::abs(p[k]));
      }
    }
    std::vector<float> scales(columns);
    for (std::size_t k = 0; k < columns; ++k) {
      scales[k] = largest[k] > 0 ? 127 / largest[k] : 1.0f;
    }
    return scales;
  }

  void runPrimitiveAsync() {
    if (m_mode == Mode::step) {
      m_forward.execute(m_stream, m_odd ? m_stepArgs : m_forwardArgs);
      m_odd = !m_odd;
    } else {
      m_forward.execute(m_stream, m_forwardArgs);
    }
  }

  dnnl::stream m_stream;
  Mode m_mode;
  dnnl::primitive m_forward;
  Args m_forwardArgs, m_stepArgs;
  Conversion m_convertX, m_convertY;
  memory m_output;
  bool m_odd = false;
  float m_dataScale = 1, m_dataShift = 0;
  std::string m_impl;
};

std::string environment(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

}  // namespace

/// Takes --precision out of the command line (the other options are peer_timing.hpp's).
Precision takePrecision(std::vector<char*>& args) {
  Precision precision = Precision::f32;
  for (std::size_t k = 1; k < args.size();) {
    if (std::string(args[k]) != "--precision") {
      k += 2;
      continue;
    }
    if (k + 1 >= args.size()) throw std::invalid_argument("--precision: missing its value");
    precision = precisionOf(args[k + 1]);
    args.erase(args.begin() + static_cast<std::ptrdiff_t>(k),
               args.begin() + static_cast<std::ptrdiff_t>(k + 2));
  }
  return precision;
}

void printShape(Cell cell, Mode mode, const Shape& s, int threads, Precision precision) {
  std::printf(
      "{\"impl\": \"onednn\", \"cell\": \"%s\", \"algorithm\": \"%s\", \"mode\": \"%s\", "
      "\"precision\": \"%s\", \"T\": %lld, \"B\": %lld, \"I\": %lld, \"H\": %lld, "
      "\"threads\": %d, \"lengths\": \"full\"",
      cellName(cell), algorithmName(cell), modeName(mode), precisionName(precision), s.T, s.B, s.I,
      s.H, threads);
}

/// One int8 or bf16 row: the timed call and the primitive alone, and the largest difference of
/// its output from the f32 primitive's on the same data (from zero states, not timed).
void measureReduced(const dnnl::engine& engine, Cell cell, Mode mode, const Shape& s,
                    Precision precision, const peer::Options& o) {
  const UserData u = userData(engine, cell, s);
  try {
    Reduced reduced(engine, cell, mode, s, precision, u);
    Problem reference(engine, cell, mode == Mode::step ? Mode::step : Mode::infer, s, u);
    reference.run();
    reduced.run();
    const float diff = maxAbsDiff(reduced.output(), reference.output());
    const peer::Timing t = peer::measure([&] { reduced.run(); }, o);
    const peer::Timing p = peer::measure([&] { reduced.runPrimitive(); }, o);
    printShape(cell, mode, s, o.threads, precision);
    std::printf(
        ", \"median_ms\": %.6g, \"iterations\": %ld, \"repetitions\": %d, "
        "\"primitive\": \"%s\", \"primitive_ms\": %.6g, \"max_abs_diff_vs_f32\": %.3g, "
        "\"timed\": \"%s\"",
        t.medianMs, t.iterations, t.repetitions, reduced.impl().c_str(), p.medianMs,
        static_cast<double>(diff),
        precision == Precision::int8
            ? "reorder x f32->u8 (rnn_data_qparams) + execute (f32 dst); weights s8 beforehand"
            : "reorder x f32->bf16 + execute + reorder y bf16->f32; weights bf16 beforehand");
    if (precision == Precision::int8) {
      std::printf(", \"data_scale\": %.6g, \"data_shift\": %.6g",
                  static_cast<double>(reduced.dataScale()),
                  static_cast<double>(reduced.dataShift()));
    }
    if (mode == Mode::step) std::printf(", \"ns\": %.6g", t.medianMs * 1e6);
    std::printf("}\n");
  } catch (const Unsupported& e) {
    printShape(cell, mode, s, o.threads, precision);
    std::printf(", \"unsupported\": \"%s\"}\n", e.what());
  }
  std::fflush(stdout);
}

int main(int argc, char** argv) {
  try {
    std::vector<char*> args(argv, argv + argc);
    const Precision precision = takePrecision(args);
    const peer::Options o = peer::parse(static_cast<int>(args.size()), args.data());
#ifdef _OPENMP
    omp_set_num_threads(o.threads);
    const int ompThreads = omp_get_max_threads();
#else
    const int ompThreads = 1;
#endif
    const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    const dnnl_version_t* v = dnnl_version();
    std::printf(
        "{\"config\": {\"impl\": \"onednn\", \"version\": \"%d.%d.%d\", \"cpu_runtime\": %d, "
        "\"omp_threads\": %d, \"OMP_WAIT_POLICY\": \"%s\", \"DNNL_MAX_CPU_ISA\": \"%s\"}}\n",
        v->major, v->minor, v->patch, v->cpu_runtime, ompThreads,
        environment("OMP_WAIT_POLICY").c_str(), environment("DNNL_MAX_CPU_ISA").c_str());
    std::fflush(stdout);

    for (const std::string& cellText : o.cells) {
      const Cell cell = cellOf(cellText);
      for (const std::string& modeText : o.modes) {
        const Mode mode = modeOf(modeText);
        const std::vector<Shape>& shapes = mode == Mode::step ? o.stepSizes : o.shapes;
        for (const Shape& s : shapes) {
          if (precision != Precision::f32) {
            measureReduced(engine, cell, mode, s, precision, o);
            continue;
          }
          Problem problem(engine, cell, mode, s, userData(engine, cell, s));
          const peer::Timing t = peer::measure([&] { problem.run(); }, o);
          printShape(cell, mode, s, o.threads, precision);
          std::printf(
              ", \"median_ms\": %.6g, \"iterations\": %ld, \"repetitions\": %d, "
              "\"primitive\": \"%s\"",
              t.medianMs, t.iterations, t.repetitions, problem.impl().c_str());
          if (mode == Mode::train) {
            std::printf(", \"primitive_backward\": \"%s\"", problem.implBackward().c_str());
          }
          if (mode == Mode::step) std::printf(", \"ns\": %.6g", t.medianMs * 1e6);
          std::printf("}\n");
          std::fflush(stdout);
        }
      }
    }
  } catch (const dnnl::error& e) {
    std::printf("{\"error\": \"oneDNN: %s (status %d)\"}\n", e.what(), static_cast<int>(e.status));
    return 2;
  } catch (const std::exception& e) {
    std::printf("{\"error\": \"%s\"}\n", e.what());
    return 1;
  }
  return 0;
}
