#!/usr/bin/python3
"""Minimal pure-Python reader of TFLite flatbuffer files.

No tensorflow and no flatbuffers package: the binary is walked with struct,
so the PyTorch reference does not depend on the thing it is checking. Only the
schema subset that float CNNs such as MobileFaceNet use is decoded; unknown
builtin options are kept as raw tables so a caller can see what it missed.

Usage as a script: tflite_parse.py MODEL.tflite  (prints a graph summary)
"""

import struct
import sys
from collections import Counter

# BuiltinOperator enum (tensorflow/lite/schema/schema.fbs), the codes we name.
BUILTIN_OPS = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D",
    4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE", 9: "FULLY_CONNECTED",
    11: "L2_NORMALIZATION", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL",
    19: "RELU", 20: "RELU_N1_TO_1", 21: "RELU6", 22: "RESHAPE", 25: "SOFTMAX",
    28: "TANH", 32: "CUSTOM", 34: "PAD", 39: "TRANSPOSE", 40: "MEAN", 41: "SUB",
    42: "DIV", 43: "SQUEEZE", 47: "EXP", 54: "PRELU", 55: "MAXIMUM", 57: "MINIMUM",
    59: "NEG", 74: "SUM", 75: "SQRT", 76: "RSQRT", 92: "SQUARE", 98: "LEAKY_RELU",
    82: "REDUCE_MAX", 89: "REDUCE_MIN", 101: "ABS",
}

# TensorType enum -> (name, numpy dtype string)
TENSOR_TYPES = {
    0: ("FLOAT32", "<f4"), 1: ("FLOAT16", "<f2"), 2: ("INT32", "<i4"),
    3: ("UINT8", "u1"), 4: ("INT64", "<i8"), 5: ("STRING", None),
    6: ("BOOL", "u1"), 7: ("INT16", "<i2"), 9: ("INT8", "i1"),
    10: ("FLOAT64", "<f8"),
}

# BuiltinOptions union type codes we decode.
OPT_CONV2D = 1
OPT_DEPTHWISE = 2
OPT_POOL2D = 5
OPT_FULLY_CONNECTED = 8
OPT_SOFTMAX = 9
OPT_ADD = 11
OPT_RESHAPE = 17
OPT_MUL = 21
OPT_REDUCER = 27
OPT_SUB = 28
OPT_DIV = 29

PADDING = {0: "SAME", 1: "VALID"}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6",
               4: "TANH", 5: "SIGN_BIT", 6: "SIGMOID"}


class TFLiteError(Exception):
    pass


class _Table:
    """A flatbuffer table: position of its start plus its vtable."""

    def __init__(self, buf, pos, what):
        self.buf = buf
        self.what = what
        if pos < 0 or pos + 4 > len(buf):
            raise TFLiteError(f"{what}: table offset {pos} outside the file")
        self.pos = pos
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        if vt < 0 or vt + 4 > len(buf):
            raise TFLiteError(f"{what}: vtable offset {vt} outside the file")
        vt_size, _ = struct.unpack_from("<HH", buf, vt)
        if vt_size < 4 or vt + vt_size > len(buf):
            raise TFLiteError(f"{what}: bad vtable size {vt_size}")
        self.nfields = (vt_size - 4) // 2
        self.vt = vt

    def _field_pos(self, idx):
        if idx >= self.nfields:
            return None
        off = struct.unpack_from("<H", self.buf, self.vt + 4 + 2 * idx)[0]
        return None if off == 0 else self.pos + off

    def scalar(self, idx, fmt, default=0):
        p = self._field_pos(idx)
        if p is None:
            return default
        return struct.unpack_from("<" + fmt, self.buf, p)[0]

    def _ref(self, idx):
        p = self._field_pos(idx)
        if p is None:
            return None
        target = p + struct.unpack_from("<I", self.buf, p)[0]
        if target + 4 > len(self.buf):
            raise TFLiteError(f"{self.what}: field {idx} points outside the file")
        return target

    def table(self, idx, what):
        p = self._ref(idx)
        return None if p is None else _Table(self.buf, p, what)

    def _vector(self, idx):
        p = self._ref(idx)
        if p is None:
            return None, 0
        n = struct.unpack_from("<I", self.buf, p)[0]
        return p + 4, n

    def vector_scalars(self, idx, fmt):
        start, n = self._vector(idx)
        if start is None:
            return []
        size = struct.calcsize("<" + fmt)
        if start + n * size > len(self.buf):
            raise TFLiteError(f"{self.what}: vector field {idx} runs past the end")
        return list(struct.unpack_from(f"<{n}{fmt}", self.buf, start))

    def vector_bytes(self, idx):
        start, n = self._vector(idx)
        if start is None:
            return None
        if start + n > len(self.buf):
            raise TFLiteError(f"{self.what}: byte vector field {idx} runs past the end")
        return memoryview(self.buf)[start:start + n]

    def vector_tables(self, idx, what):
        start, n = self._vector(idx)
        if start is None:
            return []
        if start + 4 * n > len(self.buf):
            raise TFLiteError(f"{self.what}: table vector field {idx} runs past the end")
        out = []
        for i in range(n):
            e = start + 4 * i
            out.append(_Table(self.buf, e + struct.unpack_from("<I", self.buf, e)[0],
                              f"{what}[{i}]"))
        return out

    def string(self, idx):
        b = self.vector_bytes(idx)
        return None if b is None else bytes(b).decode("utf-8", "replace")


class Tensor:
    def __init__(self, index, shape, type_code, buffer, name):
        self.index = index
        self.shape = shape
        self.type_code = type_code
        self.type = TENSOR_TYPES.get(type_code, (f"TYPE_{type_code}", None))[0]
        self.buffer = buffer
        self.name = name

    def __repr__(self):
        return f"Tensor({self.index}, {self.name!r}, {self.type}, {self.shape})"


class Operator:
    def __init__(self, index, opcode_index, op, inputs, outputs, options_type, options):
        self.index = index
        self.opcode_index = opcode_index
        self.op = op                  # builtin name, e.g. "CONV_2D"
        self.inputs = inputs          # tensor indices; -1 = optional input absent
        self.outputs = outputs
        self.options_type = options_type
        self.options = options        # dict of decoded builtin options

    def __repr__(self):
        return f"Operator({self.index}, {self.op}, in={self.inputs}, out={self.outputs}, {self.options})"


class SubGraph:
    def __init__(self, tensors, inputs, outputs, operators, name):
        self.tensors = tensors
        self.inputs = inputs
        self.outputs = outputs
        self.operators = operators
        self.name = name

    def tensor_by_name(self, name):
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)


class Model:
    def __init__(self, version, operator_codes, subgraphs, buffers, description):
        self.version = version
        self.operator_codes = operator_codes   # list of (builtin code, name, version)
        self.subgraphs = subgraphs
        self.buffers = buffers                 # list of bytes-like (possibly empty)
        self.description = description

    def tensor_data(self, tensor):
        """Constant data of a tensor as a numpy array, or None if it has none."""
        import numpy as np
        data = self.buffers[tensor.buffer] if 0 <= tensor.buffer < len(self.buffers) else None
        if data is None or len(data) == 0:
            return None
        dt = TENSOR_TYPES.get(tensor.type_code, (None, None))[1]
        if dt is None:
            raise TFLiteError(f"tensor {tensor.name!r}: unsupported type {tensor.type}")
        arr = np.frombuffer(bytes(data), dtype=dt)
        n = 1
        for d in tensor.shape:
            n *= d
        if arr.size != n:
            raise TFLiteError(f"tensor {tensor.name!r}: buffer holds {arr.size} values, "
                              f"shape {tensor.shape} needs {n}")
        return arr.reshape(tensor.shape).copy()


def _decode_options(opt_type, t):
    if t is None:
        return {}
    if opt_type == OPT_CONV2D:
        return {"padding": PADDING.get(t.scalar(0, "b"), "?"),
                "stride_w": t.scalar(1, "i"), "stride_h": t.scalar(2, "i"),
                "fused_activation": ACTIVATIONS.get(t.scalar(3, "b"), "?"),
                "dilation_w": t.scalar(4, "i", 1), "dilation_h": t.scalar(5, "i", 1)}
    if opt_type == OPT_DEPTHWISE:
        return {"padding": PADDING.get(t.scalar(0, "b"), "?"),
                "stride_w": t.scalar(1, "i"), "stride_h": t.scalar(2, "i"),
                "depth_multiplier": t.scalar(3, "i"),
                "fused_activation": ACTIVATIONS.get(t.scalar(4, "b"), "?"),
                "dilation_w": t.scalar(5, "i", 1), "dilation_h": t.scalar(6, "i", 1)}
    if opt_type == OPT_POOL2D:
        return {"padding": PADDING.get(t.scalar(0, "b"), "?"),
                "stride_w": t.scalar(1, "i"), "stride_h": t.scalar(2, "i"),
                "filter_w": t.scalar(3, "i"), "filter_h": t.scalar(4, "i"),
                "fused_activation": ACTIVATIONS.get(t.scalar(5, "b"), "?")}
    if opt_type == OPT_FULLY_CONNECTED:
        return {"fused_activation": ACTIVATIONS.get(t.scalar(0, "b"), "?"),
                "weights_format": t.scalar(1, "b"), "keep_num_dims": bool(t.scalar(2, "B"))}
    if opt_type == OPT_SOFTMAX:
        return {"beta": t.scalar(0, "f", 0.0)}
    if opt_type == OPT_REDUCER:
        return {"keep_dims": bool(t.scalar(0, "B"))}
    if opt_type in (OPT_ADD, OPT_MUL, OPT_SUB, OPT_DIV):
        return {"fused_activation": ACTIVATIONS.get(t.scalar(0, "b"), "?")}
    if opt_type == OPT_RESHAPE:
        return {"new_shape": t.vector_scalars(0, "i")}
    return {"_unparsed_type": opt_type}


def parse_bytes(buf):
    if len(buf) < 8:
        raise TFLiteError(f"file of {len(buf)} bytes is too short for a flatbuffer")
    ident = bytes(buf[4:8])
    if ident != b"TFL3":
        raise TFLiteError(f"file identifier is {ident!r}, expected b'TFL3'")
    root = _Table(buf, struct.unpack_from("<I", buf, 0)[0], "Model")
    version = root.scalar(0, "I")

    op_codes = []
    for oc in root.vector_tables(1, "operator_codes"):
        # builtin_code (field 3) replaced the byte-wide deprecated one (field 0)
        # once codes passed 127; writers fill both, old ones only the first.
        dep = oc.scalar(0, "b")
        new = oc.scalar(3, "i")
        code = max(dep, new)
        name = BUILTIN_OPS.get(code, f"BUILTIN_{code}")
        if code == 32:
            name = "CUSTOM:" + (oc.string(1) or "")
        op_codes.append((code, name, oc.scalar(2, "i", 1)))

    buffers = []
    for i, b in enumerate(root.vector_tables(4, "buffers")):
        data = b.vector_bytes(0)
        if data is None:
            # Models over 2 GB keep data outside the flatbuffer (offset/size).
            off = b.scalar(1, "Q")
            size = b.scalar(2, "Q")
            if off > 1 and size > 0:
                if off + size > len(buf):
                    raise TFLiteError(f"buffer {i}: external data runs past the end")
                data = memoryview(buf)[off:off + size]
            else:
                data = memoryview(b"")
        buffers.append(data)

    subgraphs = []
    for si, sg in enumerate(root.vector_tables(2, "subgraphs")):
        tensors = []
        for ti, t in enumerate(sg.vector_tables(0, f"subgraph{si}.tensors")):
            tensors.append(Tensor(ti, t.vector_scalars(0, "i"), t.scalar(1, "b"),
                                  t.scalar(2, "I"), t.string(3)))
        ops = []
        for oi, o in enumerate(sg.vector_tables(3, f"subgraph{si}.operators")):
            idx = o.scalar(0, "I")
            if idx >= len(op_codes):
                raise TFLiteError(f"operator {oi}: opcode index {idx} out of range")
            ins = o.vector_scalars(1, "i")
            outs = o.vector_scalars(2, "i")
            for ti in ins + outs:
                if ti >= len(tensors) or ti < -1:
                    raise TFLiteError(f"operator {oi}: tensor index {ti} out of range")
            otype = o.scalar(3, "B")
            opts = _decode_options(otype, o.table(4, f"operator{oi}.options"))
            ops.append(Operator(oi, idx, op_codes[idx][1], ins, outs, otype, opts))
        subgraphs.append(SubGraph(tensors, sg.vector_scalars(1, "i"),
                                  sg.vector_scalars(2, "i"), ops, sg.string(4)))
    for t in (t for sg in subgraphs for t in sg.tensors):
        if t.buffer >= len(buffers):
            raise TFLiteError(f"tensor {t.name!r}: buffer index {t.buffer} out of range")
    return Model(version, op_codes, subgraphs, buffers, root.string(3))


def parse(path):
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        raise TFLiteError(f"{path}: cannot read: {e.strerror}") from e
    try:
        return parse_bytes(buf)
    except (TFLiteError, struct.error) as e:
        raise TFLiteError(f"{path}: {e}") from e


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} MODEL.tflite", file=sys.stderr)
        return 2
    try:
        m = parse(argv[1])
    except TFLiteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"version {m.version}, {len(m.subgraphs)} subgraph(s), {len(m.buffers)} buffers")
    for si, sg in enumerate(m.subgraphs):
        print(f"subgraph {si} {sg.name!r}: {len(sg.tensors)} tensors, {len(sg.operators)} operators")
        for ti in sg.inputs:
            print(f"  input  {sg.tensors[ti]}")
        for ti in sg.outputs:
            print(f"  output {sg.tensors[ti]}")
        for op, n in sorted(Counter(o.op for o in sg.operators).items()):
            print(f"  {op:20s} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
