#!/usr/bin/env python3
"""Writes the seed corpus of the safetensors fuzz target (tests/fuzz/corpus/): files for its
model (LSTM 2 -> 3 as rnn.*, Linear 3 -> 1 as fc.*), good ones in F32, F64, F16 and BF16, and
a few broken ones. Needs only the standard library:  python3 tests/fuzz/make_corpus.py"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
SHAPES = [("rnn.weight_ih_l0", [12, 2]), ("rnn.weight_hh_l0", [12, 3]), ("rnn.bias_ih_l0", [12]),
          ("rnn.bias_hh_l0", [12]), ("fc.weight", [1, 3]), ("fc.bias", [1])]
FORMATS = {"F32": ("<f", 4), "F64": ("<d", 8), "F16": ("<e", 2)}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def build(dtype="F32", metadata=True, tweak=None):
    header, data, offset = {}, b"", 0
    if metadata:
        header["__metadata__"] = {"format": "pt"}
    for k, (name, shape) in enumerate(SHAPES):
        values = [0.01 * (k + 1) * (i - 5) for i in range(numel(shape))]
        if dtype == "BF16":
            blob = b"".join(struct.pack("<f", v)[2:] for v in values)
        else:
            fmt, _ = FORMATS[dtype]
            blob = b"".join(struct.pack(fmt, v) for v in values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        data += blob
        offset += len(blob)
    if tweak:
        tweak(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {
        "good_f32": build("F32"),
        "good_f64": build("F64", metadata=False),
        "good_f16": build("F16"),
        "good_bf16": build("BF16"),
        "truncated": build("F32")[:-7],
        "overlap": build("F32", tweak=lambda h: h["fc.bias"].update(data_offsets=[0, 4])),
        "wrong_shape": build("F32", tweak=lambda h: h["fc.weight"].update(shape=[3, 1])),
        "extra_tensor": build("F32", tweak=lambda h: h.update(extra={"dtype": "I64", "shape": [0], "data_offsets": [0, 0]})),
        "empty_header": struct.pack("<Q", 2) + b"{}",
        "header_too_long": struct.pack("<Q", 1 << 40) + b"{}",
    }
    for name, data in files.items():
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
