// ONNX Runtime's LSTM and GRU operators (CPU kernels deep_cpu_lstm, deep_cpu_gru) timed on the
// shapes of benchmarks/compare, through onnxruntime-node (npm install --ignore-scripts
// onnxruntime-node; found through NODE_PATH). Run by compare, one row at a time:
//
//   node ort_rnn.js --cells lstm --modes infer --threads 1 --shapes 100:16:128:128
//                   [--lengths spread] --repetitions 5 --min-time 0.2 --max-time 10
//   node ort_rnn.js --cells gru --modes step --step-sizes 32:32 ...
//
// Prints JSON lines as compare's other peers do: {"config": ...}, then one row per measurement
// {"impl": "onnxruntime", ..., "median_ms", "overhead_ms"}. overhead_ms is the median time of
// session.run on a model of one Identity node on one float, measured right before the row: the
// cost of calling ONNX Runtime from Node.js, which compare subtracts where it compares the
// kernels.
//
// The model of a row is written here (ONNX's protobuf encoding, a few fields of it): one LSTM or
// GRU node (linear_before_reset 1, PyTorch's GRU), opset 14, weights uniform in ±0.1, input x of
// (T, B, I). "spread" lengths (1..T evenly, compare's V) are a sequence_lens input; full-length
// rows have none. A step row (T = B = 1) feeds the state back: initial_h (and initial_c) are
// inputs and the next call gets the last call's Y_h (and Y_c).
//
// The timing is peer_timing.hpp's, with a longer warm-up (calls for 0.1 s) for Node.js: each repetition runs the call as many times
// as fit in min-time seconds (at least once) and records the mean; the result is the median over
// the repetitions; a call slower than min-time is timed call by call, and one so slow that the
// repetitions would exceed max-time gets fewer of them (at least one).
'use strict';

let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.log(JSON.stringify({error: 'onnxruntime-node is not installed (NODE_PATH)'}));
  process.exit(3);
}

// ---- a few fields of ONNX's protobuf encoding --------------------------------------------------

function varint(value) {
  const out = [];
  let v = BigInt(value);
  if (v < 0n) v += 1n << 64n;
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}
const key = (field, wire) => varint((field << 3) | wire);
const int = (field, value) => Buffer.concat([key(field, 0), varint(value)]);
const bytes = (field, data) => {
  const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return Buffer.concat([key(field, 2), varint(b.length), b]);
};
const message = (field, parts) => bytes(field, Buffer.concat(parts));

const FLOAT = 1;
const INT32 = 6;

function tensor(name, dims, values) {  // TensorProto: dims 1, data_type 2, name 8, raw_data 9
  return message(5, [...dims.map((d) => int(1, d)), int(2, FLOAT), bytes(8, name),
                     bytes(9, Buffer.from(new Float32Array(values).buffer))]);
}
function valueInfo(field, name, elemType, dims) {  // ValueInfoProto → TypeProto.Tensor
  const shape = dims.map((d) => message(1, [typeof d === 'string' ? bytes(2, d) : int(1, d)]));
  return message(field, [bytes(1, name),
                         message(2, [message(1, [int(1, elemType), message(2, shape)])])]);
}
function node(op, inputs, outputs, attributes) {  // NodeProto: input 1, output 2, name 3, op 4
  return message(1, [...inputs.map((s) => bytes(1, s)), ...outputs.map((s) => bytes(2, s)),
                     bytes(3, op.toLowerCase()), bytes(4, op), ...attributes]);
}
const intAttribute = (name, value) => message(5, [bytes(1, name), int(3, value), int(20, 2)]);
function model(nodes, initializers, inputs, outputs) {
  const graph = message(7, [...nodes, bytes(2, 'bench'), ...initializers, ...inputs, ...outputs]);
  const opset = message(8, [bytes(1, ''), int(2, 14)]);
  return Buffer.concat([int(1, 7), bytes(2, 'recurrent benchmarks'), graph, opset]);
}

// ---- the models ----------------------------------------------------------------------------------

let seed = 12345;
function uniform(n) {  // a fixed sequence of values in ±0.1
  const v = new Float32Array(n);
  for (let k = 0; k < n; ++k) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    v[k] = (seed / 2147483648 - 0.5) * 0.2;
  }
  return v;
}

function recurrentModel(cell, T, B, I, H, lengths, step) {
  const G = cell === 'lstm' ? 4 : 3;
  const op = cell === 'lstm' ? 'LSTM' : 'GRU';
  const inits = [tensor('W', [1, G * H, I], uniform(G * H * I)),
                 tensor('R', [1, G * H, H], uniform(G * H * H)),
                 tensor('B', [1, 2 * G * H], uniform(2 * G * H))];
  const inputs = [valueInfo(11, 'x', FLOAT, [T, B, I])];
  const nodeInputs = ['x', 'W', 'R', 'B', lengths ? 'sequence_lens' : ''];
  let outputs = ['Y'];
  if (lengths) inputs.push(valueInfo(11, 'sequence_lens', INT32, [B]));
  if (step) {
    inputs.push(valueInfo(11, 'h0', FLOAT, [1, B, H]));
    nodeInputs.push('h0');
    outputs = ['Y', 'Y_h'];
    if (cell === 'lstm') {
      inputs.push(valueInfo(11, 'c0', FLOAT, [1, B, H]));
      nodeInputs.push('c0');
      outputs.push('Y_c');
    }
  }
  const attributes = [intAttribute('hidden_size', H)];
  if (cell === 'gru') attributes.push(intAttribute('linear_before_reset', 1));
  return model([node(op, nodeInputs, outputs, attributes)], inits, inputs,
               outputs.map((o) => valueInfo(12, o, FLOAT, o === 'Y' ? [T, 1, B, H] : [1, B, H])));
}

function emptyModel() {
  return model([node('Identity', ['x'], ['y'], [])], [], [valueInfo(11, 'x', FLOAT, [1])],
               [valueInfo(12, 'y', FLOAT, [1])]);
}

// ---- timing ----------------------------------------------------------------------------------------

const now = () => Number(process.hrtime.bigint()) / 1e6;  // ms

async function measure(call, options) {
  const minMs = options.minTime * 1000;
  const maxMs = options.maxTime * 1000;
  // Warm-up: one call, and more for up to 0.1 s, so that Node.js has compiled its side of the
  // call before anything is timed.
  let start = now();
  await call();
  const once = now() - start;
  while (now() - start < 100) await call();
  let repetitions = options.repetitions;
  if (once * repetitions > maxMs) repetitions = Math.max(1, Math.floor(maxMs / once));
  const means = [];
  for (let r = 0; r < repetitions; ++r) {
    let calls = 0;
    start = now();
    do {
      await call();
      ++calls;
    } while (now() - start < minMs);
    means.push((now() - start) / calls);
  }
  means.sort((a, b) => a - b);
  const m = means.length;
  return m % 2 ? means[(m - 1) / 2] : (means[m / 2 - 1] + means[m / 2]) / 2;
}

function parse(argv) {
  const o = {cells: ['lstm'], modes: ['infer'], threads: 1, shapes: [], stepSizes: [],
             lengths: 'full', repetitions: 5, minTime: 0.2, maxTime: 10};
  for (let k = 0; k + 1 < argv.length; k += 2) {
    const [name, value] = [argv[k], argv[k + 1]];
    const list = (s) => s.split(',').filter((x) => x.length > 0);
    const numbers = (s) => list(s).map((item) => item.split(':').map(Number));
    if (name === '--cells') o.cells = list(value);
    else if (name === '--modes') o.modes = list(value);
    else if (name === '--threads') o.threads = Number(value);
    else if (name === '--shapes') o.shapes = numbers(value);
    else if (name === '--step-sizes') o.stepSizes = numbers(value);
    else if (name === '--lengths') o.lengths = value;
    else if (name === '--repetitions') o.repetitions = Number(value);
    else if (name === '--min-time') o.minTime = Number(value);
    else if (name === '--max-time') o.maxTime = Number(value);
    else throw new Error('unknown option ' + name);
  }
  return o;
}

async function session(bytes, threads) {
  return ort.InferenceSession.create(bytes, {intraOpNumThreads: threads, interOpNumThreads: 1,
                                             executionMode: 'sequential',
                                             graphOptimizationLevel: 'all'});
}

async function main() {
  const o = parse(process.argv.slice(2));
  const version = require('onnxruntime-node/package.json').version;
  console.log(JSON.stringify({config: {version, node: process.version, threads: o.threads}}));
  const empty = await session(emptyModel(), o.threads);
  const one = {x: new ort.Tensor('float32', new Float32Array([1]), [1])};
  // Measured right before each row, in the same conditions.
  let overhead = 0;
  const measureRow = async (call) => {
    overhead = await measure(() => empty.run(one), o);
    return measure(call, o);
  };
  const row = (cell, mode, T, B, I, H, ms) => ({
    impl: 'onnxruntime', cell, mode, T, B, I, H, threads: o.threads,
    lengths: mode === 'step' ? 'full' : o.lengths, median_ms: ms, overhead_ms: overhead,
    ...(mode === 'step' ? {ns: ms * 1e6} : {})});
  for (const cell of o.cells) {
    for (const mode of o.modes) {
      if (mode === 'infer') {
        for (const [T, B, I, H] of o.shapes) {
          const lengths = o.lengths === 'spread' && B > 1
                              ? Int32Array.from({length: B}, (_, b) =>
                                                    1 + Math.floor((b * (T - 1)) / (B - 1)))
                              : null;
          const s = await session(recurrentModel(cell, T, B, I, H, lengths, false), o.threads);
          const feeds = {x: new ort.Tensor('float32', uniform(T * B * I), [T, B, I])};
          if (lengths) feeds.sequence_lens = new ort.Tensor('int32', lengths, [B]);
          console.log(JSON.stringify(row(cell, mode, T, B, I, H,
                                         await measureRow(() => s.run(feeds)))));
        }
      } else if (mode === 'step') {
        for (const [I, H] of o.stepSizes) {
          const s = await session(recurrentModel(cell, 1, 1, I, H, null, true), o.threads);
          const feeds = {x: new ort.Tensor('float32', uniform(I), [1, 1, I]),
                         h0: new ort.Tensor('float32', new Float32Array(H), [1, 1, H])};
          if (cell === 'lstm') feeds.c0 = new ort.Tensor('float32', new Float32Array(H), [1, 1, H]);
          const call = async () => {
            const out = await s.run(feeds);
            feeds.h0 = out.Y_h;
            if (cell === 'lstm') feeds.c0 = out.Y_c;
          };
          console.log(JSON.stringify(row(cell, mode, 1, 1, I, H, await measureRow(call))));
        }
      }  // train: ONNX Runtime has no training here; no row
    }
  }
}

main().catch((e) => {
  console.log(JSON.stringify({error: String(e).split('\n')[0]}));
  process.exit(1);
});
