// recurrent — header-only recurrent cells (LSTM, GRU, RNN, layer-normalised LSTM and GRU) on
// Eigen with exact BPTT.
//
// The umbrella header: includes every public part that needs nothing but Eigen. The tree shows
// the layers of the library:
//
//   cells/    the cell contract (cell.hpp) and the cells that meet it: LSTM, GRU, RNN and the
//             layer-normalised LSTM and GRU; their parameters, states, activations and the views
//             a step works on
//   layers/   the drivers that run a cell over time: Sequence (a layer over a packed batch, with
//             BPTT), Stack (layers and directions), Stream (one step at a time); Regularization
//             (dropout across time, zoneout, weight drop); precision.hpp: int8 / bf16 inference
//   train/    Linear, losses, SGD and Adam, gradient clipping, initialisation, dropout, and the
//             ParameterList the optimizers work on
//   io/       StateDict (tensors by PyTorch's names); safetensors.hpp (weight files) and onnx.hpp
//             (ONNX models) are left out here because they need nlohmann/json and the ONNX
//             protobuf classes: include <recurrent/io/safetensors.hpp>, <recurrent/io/onnx.hpp>
//   detail/   kernels, threads and checks: nothing a user includes
#pragma once

#include <recurrent/cells/activations.hpp>
#include <recurrent/cells/cell.hpp>
#include <recurrent/cells/gru.hpp>
#include <recurrent/cells/layer_norm.hpp>
#include <recurrent/cells/layernorm_gru.hpp>
#include <recurrent/cells/layernorm_lstm.hpp>
#include <recurrent/cells/lstm.hpp>
#include <recurrent/cells/parameters.hpp>
#include <recurrent/cells/rnn.hpp>
#include <recurrent/cells/state.hpp>
#include <recurrent/cells/step.hpp>
#include <recurrent/io/state_dict.hpp>
#include <recurrent/layers/sequence.hpp>
#include <recurrent/layers/stack.hpp>
#include <recurrent/layers/stream.hpp>
#include <recurrent/train/adam.hpp>
#include <recurrent/train/clip.hpp>
#include <recurrent/train/dropout.hpp>
#include <recurrent/train/init.hpp>
#include <recurrent/train/linear.hpp>
#include <recurrent/train/loss.hpp>
#include <recurrent/train/parameter_list.hpp>
#include <recurrent/train/sgd.hpp>
#include <recurrent/version.hpp>

#ifdef RECURRENT_EXTERN_TEMPLATES
#include <recurrent/compiled.hpp>
#endif
