"""VGG16 / VGG19 feature extractors with torchvision's layer indices, for perceptual and style losses.

``VGG19Features.features`` is an ``nn.Sequential`` laid out exactly like torchvision's ``vgg19().features``
(3x3 convs with padding 1, ``ReLU(inplace=False)``, ``MaxPool2d(2, 2)``), so its state-dict keys are
torchvision's (``features.0.weight``, ``features.0.bias``, ``features.2.weight``, ...) and torchvision's
ImageNet file (``vgg19-dcbb9e9d.pth``) loads into it directly; torchvision itself is never imported.
``VGG16Features`` is the same for ``vgg16().features`` (configuration "D", file ``vgg16-397923af.pth``,
registry entry ``vgg16``); its default output is ``relu3_3`` (``features[15]``, i.e. the slice
``features[:16]``), the perceptual layer of the mGANprior code. Both are :class:`VGGFeatures` with
``depth=16`` or ``19``.

The 37 entries of VGG19 are named in :data:`VGG19_LAYERS` (``conv1_1, relu1_1, conv1_2, relu1_2, pool1,
conv2_1, ..., relu5_4, pool5``), the 31 of VGG16 in :data:`VGG16_LAYERS` (``..., relu3_3, pool3, ...,
pool5``). Only the layers up to the deepest requested output are built (their indices are kept, so the keys
stay torchvision's).

The network is frozen: no parameter requires grad and it stays in eval mode whatever ``train()`` says.

Keeping it out of checkpoints: a fixed ImageNet VGG is ~80 MB of constants that no checkpoint needs. Do not
register it as a submodule of a LightningModule; keep it in a plain attribute that ``nn.Module`` does not
track, e.g. ``self._vgg = [VGG19Features(...)]`` or ``object.__setattr__(self, "_vgg", vgg)``, and move it
to the input's device yourself. The same holds for :class:`inpaint.losses.VGGLoss`, which holds one as a
submodule (it moves itself to the input's device on use).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from inpaint import weights as weights_mod

log = logging.getLogger(__name__)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG16_CHANNELS",
    "VGG16_LAYERS",
    "VGG19_CHANNELS",
    "VGG19_LAYERS",
    "VGG16Features",
    "VGG19Features",
    "VGGFeatures",
    "vgg_layers",
]

#: conv widths per block of VGG19 (configuration "E"), each block followed by a 2x2 max-pool
VGG19_CHANNELS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)
#: conv widths per block of VGG16 (configuration "D"): three convs in blocks 3-5 instead of four
VGG16_CHANNELS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3)
_CHANNELS = {16: VGG16_CHANNELS, 19: VGG19_CHANNELS}


def _layer_names(channels: tuple[tuple[int, ...], ...] = VGG19_CHANNELS) -> tuple[str, ...]:
    names: list[str] = []
    for b, convs in enumerate(channels, start=1):
        for i in range(1, len(convs) + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return tuple(names)


#: names of the 37 entries of torchvision's ``vgg19().features``, in index order
VGG19_LAYERS: tuple[str, ...] = _layer_names(VGG19_CHANNELS)
#: names of the 31 entries of torchvision's ``vgg16().features``, in index order (``relu3_3`` is index 15)
VGG16_LAYERS: tuple[str, ...] = _layer_names(VGG16_CHANNELS)
_LAYERS = {16: VGG16_LAYERS, 19: VGG19_LAYERS}
_INDEX = {name: i for i, name in enumerate(VGG19_LAYERS)}
_INDICES = {depth: {name: i for i, name in enumerate(names)} for depth, names in _LAYERS.items()}


def vgg_layers(depth: int) -> tuple[str, ...]:
    """The layer names of torchvision's ``vgg{depth}().features`` in index order (``depth`` 16 or 19)."""
    return _LAYERS[_check_depth(depth)]


def _check_depth(depth: int) -> int:
    if depth not in _CHANNELS:
        raise ValueError(f"VGG depth must be 16 or 19, got {depth!r}")
    return int(depth)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: the layers ISNet/EdgeConnect read: perceptual relu{1..5}_1 and style relu2_2, relu3_4, relu4_4, relu5_2
DEFAULT_OUTPUTS = ("relu1_1", "relu2_1", "relu2_2", "relu3_1", "relu3_4", "relu4_1", "relu4_4", "relu5_1", "relu5_2")


#: the mGANprior perceptual layer (VGG16 ``features[:16]``, spec mganprior-pggan section 1.5)
VGG16_DEFAULT_OUTPUTS = ("relu3_3",)


def _build(n_layers: int, depth: int = 19) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for convs in _CHANNELS[depth]:
        for c_out in convs:
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            c_in = c_out
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    assert len(layers) == len(_LAYERS[depth])
    return nn.Sequential(*layers[:n_layers])


class VGGFeatures(nn.Module):
    """Frozen VGG16 or VGG19 ``features`` returning named activations.

    Args:
        depth: 16 (torchvision ``vgg16``, configuration "D") or 19 (``vgg19``, configuration "E").
        weights: ``"imagenet"``: torchvision's ImageNet file through :mod:`inpaint.weights` (registry entry
            ``vgg16`` or ``vgg19``; downloaded once into the torch hub cache, or an error naming the file,
            where to put it and ``offline_hint``); ``"random"``: PyTorch's default init, with a warning
            (losses on an untrained VGG are not comparable with published numbers); anything else: the path
            of a ``.pth`` state dict with torchvision keys (``features.N.weight``; ``classifier.*`` entries
            are ignored) or the same keys without the ``features.`` prefix. A file whose conv indices belong
            to the other depth is refused (VGG16 and VGG19 agree up to ``conv3_3``, so a shallow extractor
            would otherwise load the wrong network silently).
        outputs: names from :func:`vgg_layers` of that depth to return (``conv*`` are pre-activation,
            ``relu*`` after the ReLU, ``pool*`` after the pool); ``None``: ``DEFAULT_OUTPUTS`` for VGG19,
            ``("relu3_3",)`` for VGG16.
        normalize_input: subtract the ImageNet mean and divide by its std first. Off by default: ISNet and
            EdgeConnect feed [0, 1] RGB un-normalised to the ImageNet VGG, and faithful losses do the same
            (the mGANprior loss normalises: set it there).
        offline_hint: the config switch quoted when ImageNet weights are unavailable.
    """

    def __init__(
        self,
        depth: int = 19,
        weights: str = "imagenet",
        outputs: Sequence[str] | None = None,
        normalize_input: bool = False,
        offline_hint: str = "model.loss.vgg=random",
    ) -> None:
        super().__init__()
        self.depth = _check_depth(depth)
        net = f"VGG{self.depth}"
        if outputs is None:
            outputs = DEFAULT_OUTPUTS if self.depth == 19 else VGG16_DEFAULT_OUTPUTS
        if isinstance(outputs, str):
            outputs = (outputs,)
        outputs = tuple(dict.fromkeys(outputs))  # unique, order kept
        if not outputs:
            raise ValueError(f"{type(self).__name__} needs at least one output layer")
        index = _INDICES[self.depth]
        unknown = [o for o in outputs if o not in index]
        if unknown:
            raise ValueError(f"unknown {net} layer(s) {unknown}; choose from {', '.join(_LAYERS[self.depth])}")
        self.outputs: tuple[str, ...] = outputs
        self.normalize_input = bool(normalize_input)
        self.weights = str(weights)
        self._out_index = {index[o]: o for o in outputs}
        self.features = _build(max(self._out_index) + 1, self.depth)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        if self.weights == "random":
            log.warning(
                f"{type(self).__name__}(weights='random'): perceptual/style losses use an UNTRAINED {net}; "
                "their values are not comparable with the papers' (set ImageNet weights for faithful runs)"
            )
        else:
            source = f"vgg{self.depth}" if self.weights == "imagenet" else self.weights
            state = weights_mod.load_state_dict(source, offline_hint=offline_hint)
            self._load_features(state, source)
        self.requires_grad_(False)
        super().train(False)

    def _load_features(self, state: dict[str, Tensor], source: str) -> None:
        net, other = f"VGG{self.depth}", f"VGG{35 - self.depth}"
        if not any(k.startswith("features.") for k in state):
            state = {f"features.{k}": v for k, v in state.items()}
        n = len(self.features)
        own = {}
        file_convs: set[int] = set()
        for k, v in state.items():
            parts = k.split(".")
            if len(parts) == 3 and parts[0] == "features" and parts[1].isdigit():
                if parts[2] == "weight":
                    file_convs.add(int(parts[1]))
                if int(parts[1]) < n:
                    own[k] = v
        expected = self.state_dict()
        missing = sorted(set(expected) - set(own), key=_key_order)
        if missing:
            raise ValueError(
                f"weights '{source}' do not hold a torchvision {net} 'features' state dict: missing "
                f"{missing[:6]}{' ...' if len(missing) > 6 else ''} (a {other} or non-torchvision file?)"
            )
        convs = {i for i, name in enumerate(_LAYERS[self.depth]) if name.startswith("conv")}
        foreign = sorted(file_convs - convs)
        if foreign:
            raise ValueError(
                f"weights '{source}' are not a torchvision {net} 'features' state dict: they hold conv weights "
                f"at features index(es) {foreign[:6]}, where {net} has none (a {other} file?)"
            )
        bad = [
            f"{k}: {tuple(own[k].shape)} != {tuple(v.shape)}"
            for k, v in expected.items()
            if own[k].shape != v.shape
        ]
        if bad:
            raise ValueError(f"weights '{source}' have {net}-incompatible shapes: {'; '.join(bad[:4])}")
        self.load_state_dict(own, strict=True)

    def train(self, mode: bool = True) -> VGGFeatures:
        """Always eval: the extractor is a fixed function (``mode`` is ignored)."""
        return super().train(False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``x`` ``[B,3,H,W]`` (RGB in [0, 1] unless ``normalize_input``) -> ``{name: activation}`` for the
        requested outputs."""
        if self.normalize_input:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out: dict[str, Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            name = self._out_index.get(i)
            if name is not None:
                out[name] = x
        return {name: out[name] for name in self.outputs}

    def extra_repr(self) -> str:
        return (
            f"depth={self.depth}, weights={self.weights!r}, outputs={list(self.outputs)}, "
            f"normalize_input={self.normalize_input}"
        )


class VGG19Features(VGGFeatures):
    """Frozen VGG19 ``features`` (:class:`VGGFeatures` with ``depth=19``); ``outputs`` default to
    :data:`DEFAULT_OUTPUTS`, the layers ISNet/EdgeConnect read."""

    def __init__(
        self,
        weights: str = "imagenet",
        outputs: Sequence[str] = DEFAULT_OUTPUTS,
        normalize_input: bool = False,
        offline_hint: str = "model.loss.vgg=random",
    ) -> None:
        super().__init__(19, weights, outputs, normalize_input, offline_hint)


class VGG16Features(VGGFeatures):
    """Frozen VGG16 ``features`` (:class:`VGGFeatures` with ``depth=16``); ``outputs`` default to
    ``("relu3_3",)``, the mGANprior perceptual layer (the thesis/paper's ``conv4_3`` is ``features[21]``)."""

    def __init__(
        self,
        weights: str = "imagenet",
        outputs: Sequence[str] = VGG16_DEFAULT_OUTPUTS,
        normalize_input: bool = False,
        offline_hint: str = "model.loss.vgg=random",
    ) -> None:
        super().__init__(16, weights, outputs, normalize_input, offline_hint)


def _key_order(key: str) -> tuple[int, str]:
    parts = key.split(".")
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1, key)
