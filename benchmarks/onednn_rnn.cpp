// oneDNN's RNN primitives on the shapes of bench_sequence, for benchmarks/compare.
//
//   onednn_rnn [--cells lstm,lbr_gru] [--modes infer,train,step] [--shapes T:B:I:H,...]
//              [--step-sizes I:H,...] [--threads N] [--repetitions R] [--min-time S]
//              [--max-time S]
//
// Prints one JSON line per measurement (impl "onednn"; cell "lstm" or "gru", the GRU being
// oneDNN's lbr_gru, PyTorch's linear-before-reset variant), after a line {"config": {...}}.
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
#include <vector>

namespace {

using dnnl::memory;
using Dims = memory::dims;
using Tag = memory::format_tag;
using Args = std::unordered_map<int, memory>;

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

/// The primitives and buffers of one problem, ready to run.
class Problem {
 public:
  Problem(const dnnl::engine& engine, Cell cell, Mode mode, const Shape& s)
      : m_stream(engine), m_mode(mode) {
    const memory::dim G = cell == Cell::lstm ? 4 : 3;
    const bool lstm = cell == Cell::lstm;
    const memory::dim biasGates = lstm ? G : G + 1;  // lbr_gru keeps b_hn apart: G + 1 rows
    std::mt19937 rng(1);
    const float bound = 1.0f / std::sqrt(static_cast<float>(s.H));

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

    // The user's data: input U(-1, 1), weights and biases U(-1/√H, 1/√H) (PyTorch's
    // initialisation), states zero.
    const memory x = filled(srcLayer, engine, rng, -1, 1);
    const memory wLayer = filled(desc({1, 1, s.I, G, s.H}, Tag::ldigo), engine, rng, -bound, bound);
    const memory wIter = filled(desc({1, 1, s.H, G, s.H}, Tag::ldigo), engine, rng, -bound, bound);
    const memory b = filled(bias, engine, rng, -bound, bound);
    const memory y(dstLayer, engine);
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
    if (mode == Mode::step) {
      m_stepArgs = m_forwardArgs;
      m_stepArgs[DNNL_ARG_SRC_ITER] = h1;
      m_stepArgs[DNNL_ARG_DST_ITER] = h0;
      if (lstm) {
        m_stepArgs[DNNL_ARG_SRC_ITER_C] = c1;
        m_stepArgs[DNNL_ARG_DST_ITER_C] = c0;
      }
    }
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

 private:
  dnnl::stream m_stream;
  Mode m_mode;
  dnnl::primitive m_forward, m_backward;
  Args m_forwardArgs, m_backwardArgs, m_stepArgs;
  bool m_odd = false;
  std::string m_impl, m_implBackward;
};

std::string environment(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const peer::Options o = peer::parse(argc, argv);
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
          Problem problem(engine, cell, mode, s);
          const peer::Timing t = peer::measure([&] { problem.run(); }, o);
          std::printf(
              "{\"impl\": \"onednn\", \"cell\": \"%s\", \"algorithm\": \"%s\", \"mode\": \"%s\", "
              "\"T\": %lld, \"B\": %lld, \"I\": %lld, \"H\": %lld, \"threads\": %d, "
              "\"lengths\": \"full\", \"median_ms\": %.6g, \"iterations\": %ld, "
              "\"repetitions\": %d, \"primitive\": \"%s\"",
              cellName(cell), algorithmName(cell), modeName(mode), s.T, s.B, s.I, s.H, o.threads,
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
