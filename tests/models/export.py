#!/usr/bin/python3
"""Exports the small real models NormFold's tests use, with reference outputs.

Run with Debian's Python (apt: python3-torch python3-torchvision python3-onnx):
    /usr/bin/python3 tests/models/export.py            (every model)
    /usr/bin/python3 tests/models/export.py affine     (only the affine_stem_* models)
    /usr/bin/python3 tests/models/export.py mobilenet  (only mobilenet_v2_small)
    /usr/bin/python3 tests/models/export.py efficientnet  (only efficientnet_small)

torch 1.13 fuses Conv+BN itself during the default export; TrainingMode.PRESERVE with do_constant_folding=False
keeps BatchNormalization in the graph (in eval mode, since every model is put in eval()), which is what a user's
export looks like when BN must be folded afterwards. Deterministic: fixed seeds, fixed inputs.
"""
import os
import sys
import numpy as np
import onnx
from onnx import numpy_helper, helper, TensorProto
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))


def calibrate_bn(model, x, seed):
    """Running statistics as after training: measured on data (train-mode passes, cumulative average), with one
    near-dead output channel per conv/linear layer (weights scaled by 1e-2, so its variance is ~1e-4 of the others and
    ε matters there), then non-trivial γ and β. Statistics that match the activations keep the values realistic."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                m.weight[0] *= 1e-2
            if isinstance(m, (nn.ConvTranspose2d,)):
                m.weight[:, 0] *= 1e-2
        bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        for _ in range(20):
            model(torch.randn(x.shape, generator=g))
        model.eval()
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and m.affine:
                c = m.num_features
                m.weight.copy_(torch.randn(c, generator=g) * 0.5 + 1)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
            if isinstance(m, nn.GroupNorm) and m.affine:
                m.weight.copy_(torch.randn(m.num_channels, generator=g) * 0.5 + 1)
                m.bias.copy_(torch.randn(m.num_channels, generator=g) * 0.2)
            if isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(torch.randn(m.normalized_shape, generator=g) * 0.5 + 1)
                m.bias.copy_(torch.randn(m.normalized_shape, generator=g) * 0.2)


def export(name, model, x, opset=13, dynamic_batch=True, seed=0):
    torch.manual_seed(seed)
    calibrate_bn(model, x, seed + 1)
    path = os.path.join(HERE, name + ".onnx")
    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(model, x, path, opset_version=opset, input_names=["input"], output_names=["output"],
                      dynamic_axes=axes, training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    with torch.no_grad():
        y = model(x)
    np.save(os.path.join(HERE, name + ".input.npy"), x.numpy())
    np.save(os.path.join(HERE, name + ".output.npy"), y.numpy())
    print(f"{name}: {os.path.getsize(path)} bytes")
    return path


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class TinyResNet(nn.Module):
    """ResNet-18's structure at 1/8 width and one block per stage."""
    def __init__(self, width=8, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(BasicBlock(width, width, 1), BasicBlock(width, 2 * width, 2),
                                    BasicBlock(2 * width, 4 * width, 2), BasicBlock(4 * width, 8 * width, 2))
        self.fc = nn.Linear(8 * width, classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Mlp(nn.Module):
    """Linear → BatchNorm1d, which torch exports as Gemm → BatchNormalization."""
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(),
                                 nn.Linear(64, 48, bias=False), nn.BatchNorm1d(48), nn.ReLU(),
                                 nn.Linear(48, 10))

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """ConvTranspose2d (grouped, with and without bias) → BatchNorm2d, and a Conv1d/Conv3d branch-free pair."""
    def __init__(self):
        super().__init__()
        self.up1 = nn.ConvTranspose2d(8, 12, 4, 2, 1, groups=2, bias=True)
        self.bn1 = nn.BatchNorm2d(12)
        self.up2 = nn.ConvTranspose2d(12, 6, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)

    def forward(self, x):
        return self.bn2(self.up2(torch.relu(self.bn1(self.up1(x)))))


class Conv1d3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(4, 6, 3, padding=1, groups=2)
        self.b1 = nn.BatchNorm1d(6)
        self.c3 = nn.Conv3d(1, 5, 3, padding=1)
        self.b3 = nn.BatchNorm3d(5)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))              # [N, 6, 8]
        z = self.b3(self.c3(y.reshape(y.shape[0], 1, 6, 2, 4)))  # [N, 5, 6, 2, 4]
        return z


class GroupNormNet(nn.Module):
    def __init__(self, rank=4):
        super().__init__()
        conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[rank]
        self.conv = conv(3, 16, 3, padding=1)
        self.gn = nn.GroupNorm(4, 16)
        self.gn2 = nn.GroupNorm(8, 16, affine=False)

    def forward(self, x):
        return self.gn2(torch.relu(self.gn(self.conv(x))))


class LayerNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(24, 32)
        self.ln = nn.LayerNorm(32)

    def forward(self, x):
        return self.ln(torch.relu(self.fc(x)))


class AffineStem(nn.Module):
    """Affine ops next to linear ops, as exporters leave them: input normalisation (x − mean) / std (buffers) before
    the first Conv; a Conv followed by `* 0.5 + 1`; a Linear followed by `x * γ + β` (nn.Parameter). `padded`: the
    stem Conv pads (ResNet style, 3×3 pad 1: the normalisation cannot fold forward exactly); else it is a patchify
    stem (ConvNeXt style, 4×4 stride 4, no padding: it can), followed by a BN."""

    def __init__(self, padded):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.padded = padded
        self.stem = nn.Conv2d(3, 8, 3, padding=1) if padded else nn.Conv2d(3, 8, 4, stride=4, bias=False)
        self.bn = nn.Identity() if padded else nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)
        g = torch.Generator().manual_seed(11)
        self.gamma = nn.Parameter(torch.randn(10, generator=g) * 0.5 + 1)
        self.beta = nn.Parameter(torch.randn(10, generator=g) * 0.2)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(self.conv(x) * 0.5 + 1)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x) * self.gamma + self.beta


def constants_as_nodes(src, dst):
    """paddle2onnx-style: every initializer becomes a Constant node feeding the graph."""
    m = onnx.load(src)
    g = m.graph
    nodes = [helper.make_node("Constant", [], [t.name], name=t.name + "_const", value=t) for t in g.initializer]
    del g.initializer[:]
    new_nodes = nodes + list(g.node)
    del g.node[:]
    g.node.extend(new_nodes)
    onnx.save(m, dst)
    print(f"{os.path.basename(dst)}: {os.path.getsize(dst)} bytes")


def to_float16(src, dst):
    """The same network stored in float16: weights, inputs and outputs (as onnxconverter's float16 tool does)."""
    m = onnx.load(src)
    g = m.graph
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for v in list(g.input) + list(g.output) + list(g.value_info):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.save(m, dst)
    print(f"{os.path.basename(dst)}: {os.path.getsize(dst)} bytes")


def external(src, dst_dir):
    os.makedirs(dst_dir, exist_ok=True)
    m = onnx.load(src)
    dst = os.path.join(dst_dir, os.path.basename(src))
    data = os.path.join(dst_dir, os.path.basename(src) + ".data")
    if os.path.exists(data):
        os.remove(data)  # onnx appends to an existing data file
    onnx.save_model(m, dst, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=os.path.basename(src) + ".data", size_threshold=256)
    print(f"{os.path.relpath(dst, HERE)}: external data")


def npy_samples():
    """.npy files written by NumPy itself, in every header version and some awkward layouts, for the reader's tests."""
    d = os.path.join(HERE, "npy")
    os.makedirs(d, exist_ok=True)
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    np.save(os.path.join(d, "v1_f4.npy"), a)
    for version in [(2, 0), (3, 0)]:
        with open(os.path.join(d, f"v{version[0]}_f4.npy"), "wb") as f:
            np.lib.format.write_array(f, a, version=version)
    np.save(os.path.join(d, "fortran_f8.npy"), np.asfortranarray(a.astype(np.float64)))
    np.save(os.path.join(d, "bigendian_f4.npy"), a.astype(">f4"))
    np.save(os.path.join(d, "f2.npy"), a.astype(np.float16))
    np.save(os.path.join(d, "i8.npy"), np.arange(-5, 7, dtype=np.int64).reshape(3, 4))
    np.save(os.path.join(d, "u1.npy"), np.arange(6, dtype=np.uint8))
    np.save(os.path.join(d, "b1.npy"), np.array([True, False, True]))
    np.save(os.path.join(d, "scalar_f4.npy"), np.float32(2.5))
    print("npy samples written")


def test_data_set(model_name):
    """The ONNX test_data_set_N/input_K.pb layout for a model, from its reference input and output."""
    d = os.path.join(HERE, model_name + "_data", "test_data_set_0")
    os.makedirs(d, exist_ok=True)
    x = np.load(os.path.join(HERE, model_name + ".input.npy"))
    y = np.load(os.path.join(HERE, model_name + ".output.npy"))
    with open(os.path.join(d, "input_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(x, "input").SerializeToString())
    with open(os.path.join(d, "output_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(y, "output").SerializeToString())


def affine_models():
    export("affine_stem_padded", AffineStem(padded=True), torch.rand(2, 3, 16, 16), opset=13, seed=12)
    export("affine_stem_patchify", AffineStem(padded=False), torch.rand(2, 3, 16, 16), opset=13, seed=13)


def mobilenet_models():
    """torchvision's MobileNetV2 at width 0.35 with 10 classes (1.8 MB): 52 Conv+BN (17 depthwise), ReLU6 (Clip)."""
    import torchvision
    torch.manual_seed(21)  # the weights' initialisation
    export("mobilenet_v2_small", torchvision.models.mobilenet_v2(width_mult=0.35, num_classes=10),
           torch.randn(2, 3, 64, 64), opset=13, seed=21)


def efficientnet_models():
    """torchvision's EfficientNet-B0 at width 0.25, depth 0.5, 10 classes (0.9 MB): 31 Conv+BN (depthwise, SiLU,
    squeeze-and-excitation). Its random weights amplify a fold's 1-ulp rounding past 1e-4 of a tensor's magnitude end
    to end (seed 0 of the check): the local replay's case."""
    from torchvision.models.efficientnet import _efficientnet_conf, EfficientNet
    torch.manual_seed(31)  # the weights' initialisation
    setting, last = _efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.5)
    export("efficientnet_small", EfficientNet(setting, 0.2, last_channel=last, num_classes=10),
           torch.randn(2, 3, 64, 64), opset=13, seed=31)


def main():
    if sys.argv[1:] == ["affine"]:  # only the affine models (the others stay as they are)
        affine_models()
        return
    if sys.argv[1:] == ["mobilenet"]:  # only mobilenet_v2_small
        mobilenet_models()
        return
    if sys.argv[1:] == ["efficientnet"]:  # only efficientnet_small
        efficientnet_models()
        return
    torch.manual_seed(0)
    resnet = export("resnet_tiny", TinyResNet(), torch.randn(2, 3, 32, 32), opset=13)
    export("resnet_tiny_op15", TinyResNet(), torch.randn(2, 3, 32, 32), opset=15, seed=3)
    mlp = export("mlp_bn1d", Mlp(), torch.randn(4, 32), opset=13, seed=1)
    export("decoder_convtranspose", Decoder(), torch.randn(2, 8, 5, 5), opset=13, seed=2)
    export("conv1d_conv3d", Conv1d3d(), torch.randn(2, 4, 8), opset=13, seed=4)
    export("groupnorm_op13", GroupNormNet(), torch.randn(2, 3, 8, 8), opset=13, seed=5)
    export("groupnorm_op17", GroupNormNet(), torch.randn(2, 3, 8, 8), opset=17, seed=6)
    export("groupnorm_rank3_op13", GroupNormNet(3), torch.randn(2, 3, 10), opset=13, seed=7)
    export("groupnorm_rank5_op13", GroupNormNet(5), torch.randn(1, 3, 4, 4, 4), opset=13, seed=8)
    export("layernorm_op13", LayerNormNet(), torch.randn(3, 5, 24), opset=13, seed=9)
    constants_as_nodes(resnet, os.path.join(HERE, "resnet_tiny_constants.onnx"))
    to_float16(resnet, os.path.join(HERE, "resnet_tiny_fp16.onnx"))
    external(mlp, os.path.join(HERE, "external"))
    npy_samples()
    test_data_set("mlp_bn1d")
    affine_models()
    mobilenet_models()
    efficientnet_models()


if __name__ == "__main__":
    main()
