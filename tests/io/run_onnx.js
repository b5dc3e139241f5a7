// Runs an ONNX model in ONNX Runtime (the npm package onnxruntime-node) on the inputs of a
// text file and prints its first output, for tests/io/onnx.test.cpp:
//
//     node run_onnx.js model.onnx inputs.txt
//
// inputs.txt holds, per input, a line "name type d0 d1 ..." (type float32, float64 or int32) and a
// line of its values in row-major order. The output is printed the same way ("name float32 d0
// ..." and the values). Exits with 3 and says so on stderr if onnxruntime-node cannot be loaded
// (NODE_PATH names the directory holding node_modules/onnxruntime-node, or its parent).
'use strict';
const fs = require('fs');

let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  process.stderr.write('onnxruntime-node is not installed: ' + e.message.split('\n')[0] + '\n');
  process.exit(3);
}

const arrays = {float32: Float32Array, float64: Float64Array, int32: Int32Array};

async function main() {
  const [modelPath, inputPath] = process.argv.slice(2);
  const lines = fs.readFileSync(inputPath, 'utf8').split('\n').filter((l) => l.length > 0);
  const feeds = {};
  for (let k = 0; k + 1 < lines.length; k += 2) {
    const [name, type, ...dims] = lines[k].trim().split(/\s+/);
    const values = lines[k + 1].trim().split(/\s+/).map(Number);
    feeds[name] = new ort.Tensor(type, arrays[type].from(values), dims.map(Number));
  }
  const session = await ort.InferenceSession.create(modelPath, {intraOpNumThreads: 1});
  const results = await session.run(feeds);
  const name = session.outputNames[0];
  const y = results[name];
  process.stdout.write(`${name} ${y.type} ${y.dims.join(' ')}\n`);
  process.stdout.write(Array.from(y.data, (v) => v.toPrecision(17)).join(' ') + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e) + '\n');
  process.exit(1);
});
