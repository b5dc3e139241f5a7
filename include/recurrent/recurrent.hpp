// recurrent — header-only recurrent cells (LSTM, GRU, RNN) on Eigen with exact BPTT.
// The umbrella header: includes every public part except safetensors.hpp (weight files),
// which needs nlohmann/json and is included on its own.
#pragma once

#include <recurrent/activations.hpp>
#include <recurrent/adam.hpp>
#include <recurrent/clip.hpp>
#include <recurrent/dropout.hpp>
#include <recurrent/gru_cell.hpp>
#include <recurrent/init.hpp>
#include <recurrent/linear.hpp>
#include <recurrent/loss.hpp>
#include <recurrent/lstm_cell.hpp>
#include <recurrent/parameter_list.hpp>
#include <recurrent/parameters.hpp>
#include <recurrent/rnn_cell.hpp>
#include <recurrent/sequence.hpp>
#include <recurrent/sgd.hpp>
#include <recurrent/stack.hpp>
#include <recurrent/state.hpp>
#include <recurrent/state_dict.hpp>
#include <recurrent/step.hpp>
#include <recurrent/stream.hpp>
#include <recurrent/version.hpp>
