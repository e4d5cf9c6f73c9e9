"""An independent float reference for a TFLite graph, as a test oracle: weights dequantized, float64
PyTorch ops, op options (strides, padding, slice masks) read off the tensor shapes.

LiteRT runs int8-weight ("dynamic range") layers with int8 activations too; OpenVINO dequantizes the
weights and computes in float. This reference computes what the stored weights mean in float, so
it can tell which runtime reproduces the network and by how much the other departs from it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def tflite_float_reference(path, x: np.ndarray, output: int = 0) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    details = {d["index"]: d for d in it.get_tensor_details()}
    values: dict[int, torch.Tensor] = {}

    def const(i):
        d = details[i]
        data = it.get_tensor(i)
        q = d["quantization_parameters"]
        if data.dtype == np.int8 and len(q["scales"]):
            shape = [1] * data.ndim
            shape[q["quantized_dimension"]] = -1
            data = (data.astype(np.float64) - q["zero_points"].reshape(shape)) * q["scales"].reshape(shape)
        return torch.from_numpy(np.asarray(data, dtype=np.float64 if data.dtype.kind == "f" else data.dtype))

    def get(i):
        return values[i] if i in values else const(i)

    inp = it.get_input_details()[0]["index"]
    values[inp] = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)  # NCHW internally
    for op in it._get_ops_details():
        name, ins, outs = op["op_name"], [i for i in op["inputs"] if i >= 0], op["outputs"]
        out_shape = tuple(int(v) for v in details[outs[0]]["shape"])  # NHWC, batch 1
        if name == "DELEGATE":
            continue
        if name == "CONV_2D":
            a, w, b = get(ins[0]), const(ins[1]).permute(0, 3, 1, 2), const(ins[2])
            stride = a.shape[2] // out_shape[1]
            k = w.shape[2]
            pad = [max((o - 1) * stride + k - n, 0) for o, n in zip(out_shape[1:3], a.shape[2:])]
            a = F.pad(a, (pad[1] // 2, pad[1] - pad[1] // 2, pad[0] // 2, pad[0] - pad[0] // 2))  # TF SAME
            y = F.conv2d(a, w, b, stride=stride)
        elif name == "TRANSPOSE_CONV":
            w, a = const(ins[1]), get(ins[2])  # w: (out, kh, kw, in)
            stride = out_shape[1] // a.shape[2]
            y = F.conv_transpose2d(a, w.permute(3, 0, 1, 2), stride=stride)
        elif name in ("MUL", "ADD", "MAXIMUM"):
            p, q = (get(i) for i in ins)
            p, q = (t.reshape(1, -1, 1, 1) if t.ndim == 1 else t for t in (p, q))
            y = {"MUL": torch.mul, "ADD": torch.add, "MAXIMUM": torch.maximum}[name](p, q)
        elif name == "CONCATENATION":
            y = torch.cat([get(i) for i in ins], dim=1)
        elif name == "STRIDED_SLICE":
            a = get(ins[0])
            begin, end, step = (const(i).tolist() for i in ins[1:4])
            nhwc = a.permute(0, 2, 3, 1)
            # begin/end masks are op options this reader does not see: a dimension the output keeps
            # whole is taken whole (the batch always: the graph's batch is 1)
            nhwc = nhwc[tuple(slice(None) if j == 0 or out_shape[j] == nhwc.shape[j] else slice(b, e, s)
                              for j, (b, e, s) in enumerate(zip(begin, end, step)))]
            y = nhwc.permute(0, 3, 1, 2)
        elif name == "RESIZE_BILINEAR":  # TF1 default: align_corners=False, half_pixel_centers=False
            a = get(ins[0])
            oh, ow = const(ins[1]).tolist()
            ys = torch.arange(oh, dtype=torch.float64) * (a.shape[2] / oh)
            xs = torch.arange(ow, dtype=torch.float64) * (a.shape[3] / ow)
            y0, x0 = ys.floor().long(), xs.floor().long()
            y1, x1 = (y0 + 1).clamp(max=a.shape[2] - 1), (x0 + 1).clamp(max=a.shape[3] - 1)
            wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
            top = a[:, :, y0][:, :, :, x0] * (1 - wx) + a[:, :, y0][:, :, :, x1] * wx
            bottom = a[:, :, y1][:, :, :, x0] * (1 - wx) + a[:, :, y1][:, :, :, x1] * wx
            y = top * (1 - wy) + bottom * wy
        else:
            raise NotImplementedError(name)
        values[outs[0]] = y
    result = values[it.get_output_details()[output]["index"]]
    return result.permute(0, 2, 3, 1).numpy().astype(np.float32)[..., 0]
