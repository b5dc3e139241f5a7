#!/usr/bin/python3
"""PyTorch's nn.LSTM / nn.GRU on the shapes of bench_sequence, for benchmarks/compare.

Prints one JSON line per measurement:

    {"impl": "torch", "cell": "lstm", "mode": "infer", "T": 100, "B": 16, "I": 128, "H": 128,
     "threads": 1, "lengths": "full", "median_ms": 6.9, ...}

and first a line {"config": {...}} with the torch version, the BLAS library the process has
mapped, the thread counts and the OpenBLAS/OpenMP environment it ran with.

Cells: lstm, gru (nn.LSTM, nn.GRU) and lnlstm, PyTorch's reference layer-normalised LSTM
(the LayerNormLSTMCell of its RNN benchmarks) in TorchScript, looped over time by a scripted
layer as those benchmarks do (full lengths, no single step).

Modes:
  infer   forward under torch.no_grad() (or torch.inference_mode(), --grad-mode), entered
          once around the timed calls
  train   forward + backward with a gradient of ones on every output; the input requires a
          gradient too, as the other implementations compute dL/dx
  step    one time step of one sequence per call (B = 1), the state carried from call to call
          (the streaming case), under the same grad mode as infer; nn.LSTM / nn.GRU called
          with T = 1, or nn.LSTMCell / nn.GRUCell (--step-module)

--precision int8 runs PyTorch's dynamically quantized module instead
(torch.ao.quantization.quantize_dynamic, qint8 weights per row, activations quantized per call:
the model of this library's Precision::Int8), in inference and step modes only; the module is
wrapped in a container, since quantize_dynamic replaces child modules only. --quantized-engine
picks the backend (onednn or qnnpack), or "best", the faster of the two on each row.

--lengths spread runs the batch with lengths spread evenly over 1..T (the same lengths as
bench_sequence) through pack_padded_sequence(enforce_sorted=False) and pad_packed_sequence,
inside the timed call, as a user would.

--serve keeps the process (and torch, which takes seconds to import) alive: it reads one
request a line from stdin, a JSON list of the options above, and answers with the rows and
{"done": true}. benchmarks/compare runs one such process per thread configuration.

Timing, as benchmarks/peer_timing.hpp does it: after a warm-up, each repetition runs the call
as many times as fit in --min-time seconds (at least once) and records the mean; the reported
figure is the median over --repetitions repetitions (fewer for a call so slow that they would
exceed --max-time). Run it with Debian's interpreter (/usr/bin/python3), which sees
python3-torch.
"""

import argparse
import json
import os
import statistics
import sys
import time
from typing import List

try:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
except ImportError as error:  # reported by benchmarks/compare as "n/a"
    print(json.dumps({"error": "cannot import torch: %s" % error}))
    sys.exit(3)


def parse_shapes(text):
    """'100:16:128:128,50:32:512:512' -> [(T, B, I, H), ...]"""
    shapes = []
    for item in text.split(","):
        if item:
            T, B, I, H = (int(v) for v in item.split(":"))
            shapes.append((T, B, I, H))
    return shapes


def spread_lengths(T, B):
    """Lengths spread evenly over 1..T, exactly as bench_sequence computes them."""
    if B == 1:
        return [T]
    return [1 + b * (T - 1) // (B - 1) for b in range(B)]


def measure(call, repetitions, min_time, max_time):
    """Median over repetitions of the mean wall time of one call, in milliseconds."""
    call()  # warm-up: first-touch allocations, thread start
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-9)
    samples = []
    if once < min_time:  # warm up a little longer
        warm = time.perf_counter()
        while time.perf_counter() - warm < min(min_time, 0.2):
            call()
    else:  # a slow call: the second one is already a sample
        samples.append(once * 1e3)
    iterations = max(1, int(min_time / once))
    repetitions = max(1, min(repetitions, int(max_time / (once * iterations))))
    while len(samples) < repetitions:
        start = time.perf_counter()
        for _ in range(iterations):
            call()
        samples.append((time.perf_counter() - start) / iterations * 1e3)
    return statistics.median(samples), iterations, len(samples)


def blas_libraries():
    """The BLAS / LAPACK shared objects mapped into this process (after a matmul)."""
    a = torch.ones(64, 64)
    torch.mm(a, a)
    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) < 6:
                    continue
                path = fields[5]
                name = os.path.basename(path)
                if any(k in name for k in ("blas", "blis", "mkl_", "lapack")) and path not in found:
                    found.append(path)
    except OSError:
        pass
    return [os.path.realpath(p) for p in found]


def blas_kind(paths):
    joined = " ".join(paths)
    if "openblas" in joined:
        return "openblas"
    if "blis" in joined:
        return "blis"
    if "mkl" in joined:
        return "mkl"
    if "/blas/" in joined or "libblas" in joined:
        return "reference"  # netlib's libblas.so.3: ~10x slower
    return "unknown"


class LayerNormLSTMCell(torch.jit.ScriptModule):
    """PyTorch's reference layer-normalised LSTM cell (the LayerNormLSTMCell of its RNN
    benchmarks, custom_lstms.py), TorchScript: LN over W_ih x and over W_hh h (4H each), no
    bias_ih / bias_hh, LN over the new cell state."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        bound = 1.0 / hidden_size ** 0.5
        self.weight_ih = torch.nn.Parameter(torch.empty(4 * hidden_size, input_size)
                                            .uniform_(-bound, bound))
        self.weight_hh = torch.nn.Parameter(torch.empty(4 * hidden_size, hidden_size)
                                            .uniform_(-bound, bound))
        self.layernorm_i = torch.nn.LayerNorm(4 * hidden_size)
        self.layernorm_h = torch.nn.LayerNorm(4 * hidden_size)
        self.layernorm_c = torch.nn.LayerNorm(hidden_size)

    @torch.jit.script_method
    def forward(self, x, hx, cx):
        igates = self.layernorm_i(torch.mm(x, self.weight_ih.t()))
        hgates = self.layernorm_h(torch.mm(hx, self.weight_hh.t()))
        ingate, forgetgate, cellgate, outgate = (igates + hgates).chunk(4, 1)
        cy = self.layernorm_c(torch.sigmoid(forgetgate) * cx
                              + torch.sigmoid(ingate) * torch.tanh(cellgate))
        hy = torch.sigmoid(outgate) * torch.tanh(cy)
        return hy, cy


class LayerNormLSTM(torch.jit.ScriptModule):
    """The reference cell over a (T, B, I) batch of full-length sequences from a zero state, as
    the benchmarks' scripted LSTMLayer runs it; returns (output, state) like nn.LSTM."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.cell = LayerNormLSTMCell(input_size, hidden_size)

    @torch.jit.script_method
    def forward(self, x):
        h = torch.zeros(x.size(1), self.hidden_size)
        c = torch.zeros(x.size(1), self.hidden_size)
        outputs = torch.jit.annotate(List[torch.Tensor], [])
        for t in range(x.size(0)):
            h, c = self.cell(x[t], h, c)
            outputs += [h]
        return torch.stack(outputs), (h, c)


def make_module(cell, I, H, step_cell, precision="f32", engine=None):
    torch.manual_seed(1)
    if cell == "lnlstm":
        if step_cell:
            raise ValueError("lnlstm: no single-step benchmark")
        return LayerNormLSTM(I, H)
    if step_cell:
        module = torch.nn.LSTMCell(I, H) if cell == "lstm" else torch.nn.GRUCell(I, H)
    else:
        module = torch.nn.LSTM(I, H) if cell == "lstm" else torch.nn.GRU(I, H)
    if precision == "f32":
        return module
    torch.backends.quantized.engine = engine
    container = torch.nn.Sequential(module)  # quantize_dynamic replaces children only
    quantized = torch.ao.quantization.quantize_dynamic(
        container, {torch.nn.LSTM, torch.nn.GRU, torch.nn.LSTMCell, torch.nn.GRUCell},
        dtype=torch.qint8)
    return quantized[0]


def grad_context(mode):
    """Entered once around the timing of a measurement, as a user's loop would be."""
    if mode == "inference_mode":
        return torch.inference_mode()
    if mode == "no_grad":
        return torch.no_grad()
    return torch.enable_grad()


def sequence_call(cell, mode, T, B, I, H, lengths_kind, precision="f32", engine=None):
    """A callable that runs one batch the way the mode says."""
    module = make_module(cell, I, H, False, precision, engine)
    x = torch.rand(T, B, I) * 2 - 1
    lengths = torch.tensor(spread_lengths(T, B) if lengths_kind == "spread" else [T] * B)

    def run(inp):
        if lengths_kind == "spread":
            packed = pack_padded_sequence(inp, lengths, enforce_sorted=False)
            out, _ = module(packed)
            out, _ = pad_packed_sequence(out, total_length=T)
            return out
        out, _ = module(inp)
        return out

    if cell == "lnlstm" and lengths_kind == "spread":
        raise ValueError("lnlstm: full lengths only")
    if mode == "infer":  # timed inside grad_context(), see main()
        return lambda: run(x)

    xg = x.clone().requires_grad_(True)
    ones = torch.ones(T, B, H)

    def call():
        out = run(xg)
        out.backward(ones)  # gradients accumulate into .grad, as Sequence::backward adds
    return call


def step_call(cell, I, H, module_kind, precision="f32", engine=None):
    """One step of one sequence per call, the state carried over."""
    step_cell = module_kind == "cell"
    module = make_module(cell, I, H, step_cell, precision, engine)
    x = torch.rand(1, I) * 2 - 1 if step_cell else torch.rand(1, 1, I) * 2 - 1
    shape = (1, H) if step_cell else (1, 1, H)
    state = {"h": torch.zeros(shape), "c": torch.zeros(shape)}

    if step_cell and cell == "lstm":
        def advance():
            state["h"], state["c"] = module(x, (state["h"], state["c"]))
    elif step_cell:
        def advance():
            state["h"] = module(x, state["h"])
    elif cell == "lstm":
        def advance():
            _, (state["h"], state["c"]) = module(x, (state["h"], state["c"]))
    else:
        def advance():
            _, state["h"] = module(x, state["h"])

    return advance  # timed inside grad_context(), see main()


def make_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--modes", default="infer,train", help="infer,train and/or step")
    parser.add_argument("--shapes", default="100:1:32:32,100:16:128:128,100:64:256:256,"
                        "50:32:512:512,1000:8:64:128", help="T:B:I:H,...")
    parser.add_argument("--lengths", default="full", choices=["full", "spread"])
    parser.add_argument("--step-sizes", default="8:8,16:16,32:32,64:64,128:128,"
                        "1:8,1:16,1:32,1:64,1:128", help="I:H,... for mode step")
    parser.add_argument("--step-module", default="best", choices=["rnn", "cell", "best"],
                        help="nn.LSTM/nn.GRU with T = 1, nn.LSTMCell/nn.GRUCell, or the faster")
    parser.add_argument("--grad-mode", default="no_grad", choices=["no_grad", "inference_mode"])
    parser.add_argument("--precision", default="f32", choices=["f32", "int8"],
                        help="int8: the dynamically quantized module (infer and step only)")
    parser.add_argument("--quantized-engine", default="best",
                        choices=["onednn", "qnnpack", "best"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per repetition")
    parser.add_argument("--max-time", type=float, default=10,
                        help="seconds per measurement: fewer repetitions for slower calls")
    parser.add_argument("--label", default="", help="a name for the configuration, echoed")
    parser.add_argument("--serve", action="store_true",
                        help="after the config line, read requests from stdin, one a line: a "
                        "JSON list of these options (those left out keep the values given "
                        "here); answer each with its rows and {\"done\": true}")
    return parser


def run_measurements(args):
    """Measures what the options ask for, printing one JSON line per row."""
    torch.set_num_threads(args.threads)
    common = {"impl": "torch", "threads": args.threads, "label": args.label,
              "precision": args.precision}
    modes = args.modes.split(",")
    reduced = args.precision != "f32"
    if reduced and "train" in modes:
        raise ValueError("--precision %s measures infer and step only" % args.precision)
    available = torch.backends.quantized.supported_engines
    engines = ([None] if not reduced else
               [e for e in ("onednn", "qnnpack") if e in available]
               if args.quantized_engine == "best" else [args.quantized_engine])
    for cell in args.cells.split(","):
        for mode in (m for m in modes if m in ("infer", "train")):
            for (T, B, I, H) in parse_shapes(args.shapes):
                results = {}
                for engine in engines:
                    call = sequence_call(cell, mode, T, B, I, H, args.lengths, args.precision,
                                         engine)
                    with grad_context(args.grad_mode if mode == "infer" else "enabled"):
                        results[engine] = measure(call, args.repetitions, args.min_time,
                                                  args.max_time)
                engine = min(results, key=lambda e: results[e][0])
                ms, iterations, repetitions = results[engine]
                row = dict(common, cell=cell, mode=mode, T=T, B=B, I=I, H=H,
                           lengths=args.lengths, median_ms=ms, iterations=iterations,
                           repetitions=repetitions)
                if mode == "infer":
                    row["grad_mode"] = args.grad_mode
                if reduced:
                    row["engine"] = engine
                    row["engines_ms"] = {e: r[0] for e, r in results.items()}
                print(json.dumps(row), flush=True)
        if "step" in modes:
            for item in args.step_sizes.split(","):
                I, H = (int(v) for v in item.split(":"))
                kinds = ["rnn", "cell"] if args.step_module == "best" else [args.step_module]
                results, engine_of = {}, {}
                for kind in kinds:
                    for engine in engines:
                        call = step_call(cell, I, H, kind, args.precision, engine)
                        with grad_context(args.grad_mode):
                            ms = measure(call, args.repetitions, args.min_time, args.max_time)[0]
                        if kind not in results or ms < results[kind]:
                            results[kind], engine_of[kind] = ms, engine
                kind = min(results, key=results.get)
                row = dict(common, cell=cell, mode="step", T=1, B=1, I=I, H=H, lengths="full",
                           median_ms=results[kind], ns=results[kind] * 1e6,
                           module=("nn.%sCell" if kind == "cell" else "nn.%s")
                           % ("LSTM" if cell == "lstm" else "GRU"),
                           grad_mode=args.grad_mode,
                           modules_ns={k: v * 1e6 for k, v in results.items()},
                           repetitions=args.repetitions)
                if reduced:
                    row["engine"] = engine_of[kind]
                print(json.dumps(row), flush=True)


def main():
    parser = make_parser()
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    blas = blas_libraries()
    env = {k: os.environ[k] for k in sorted(os.environ)
           if k.startswith(("OPENBLAS_", "OMP_", "GOMP_", "MKL_", "KMP_"))}
    print(json.dumps({"config": {
        "impl": "torch", "label": args.label, "version": torch.__version__,
        "blas": blas_kind(blas), "blas_libraries": blas,
        "torch_threads": torch.get_num_threads(), "grad_mode": args.grad_mode,
        "environment": env}}), flush=True)

    if not args.serve:
        run_measurements(args)
        return
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            # Options a request leaves out keep the values the process started with.
            run_measurements(parser.parse_args(json.loads(line), argparse.Namespace(**vars(args))))
        except Exception as error:  # report it and serve the next request
            print(json.dumps({"error": "%s: %s" % (type(error).__name__, error)}), flush=True)
        print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
