// recurrent — header-only recurrent cells (LSTM, GRU, RNN) on Eigen with exact BPTT.
// The umbrella header: includes every public part.
#pragma once

#include <recurrent/activations.hpp>
#include <recurrent/gru_cell.hpp>
#include <recurrent/lstm_cell.hpp>
#include <recurrent/parameters.hpp>
#include <recurrent/rnn_cell.hpp>
#include <recurrent/sequence.hpp>
#include <recurrent/state.hpp>
#include <recurrent/step.hpp>
#include <recurrent/stream.hpp>
#include <recurrent/version.hpp>
