"""Tests for inpaint.data.masks."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from inpaint.data.masks import (
    BlockMask,
    CenterMask,
    FreeFormMask,
    MaskGenerator,
    MixedMask,
    mask_ratio,
)

SIZES = [(32, 32), (64, 64), (128, 96), (256, 256)]
RANDOM_GENS = {
    "block": lambda ratio=(0.1, 0.5): BlockMask(ratio=ratio),
    "freeform": lambda ratio=(0.1, 0.5): FreeFormMask(ratio=ratio),
}


def _check_mask(mask: np.ndarray, h: int, w: int) -> None:
    assert isinstance(mask, np.ndarray)
    assert mask.dtype == np.float32
    assert mask.shape == (h, w)
    assert np.isin(mask, (0.0, 1.0)).all()


class _Const(MaskGenerator):
    """Test generator returning a constant mask (tags which generator was picked)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, height: int, width: int, rng: np.random.Generator, index: int | None = None) -> np.ndarray:
        return np.full((height, width), self.value, dtype=np.float32)


# ----------------------------------------------------------------------------------------- basics


def test_mask_ratio() -> None:
    m = np.zeros((4, 5), dtype=np.float32)
    m[0, :] = 1
    assert mask_ratio(m) == pytest.approx(0.25)
    assert mask_ratio(np.ones((3, 3), dtype=bool)) == 1.0
    with pytest.raises(ValueError):
        mask_ratio(np.zeros((0, 3)))


@pytest.mark.parametrize("name", sorted(RANDOM_GENS))
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_ratio_in_range(name: str, h: int, w: int) -> None:
    gen = RANDOM_GENS[name]()
    rng = np.random.default_rng(123)
    draws = 40 if h < 256 else 15
    ratios = []
    for _ in range(draws):
        mask = gen(h, w, rng)
        _check_mask(mask, h, w)
        ratios.append(mask_ratio(mask))
    assert min(ratios) >= 0.1
    assert max(ratios) <= 0.5
    assert max(ratios) - min(ratios) > 0.1  # targets really are spread over the range


@pytest.mark.parametrize("name", sorted(RANDOM_GENS))
@pytest.mark.parametrize("ratio", [(0.4, 0.5), (0.25, 0.25), (0.0, 0.0), (0.9, 1.0), (1.0, 1.0)])
def test_narrow_and_extreme_ratio(name: str, ratio: tuple[float, float]) -> None:
    gen = RANDOM_GENS[name](ratio)
    rng = np.random.default_rng(7)
    for _ in range(20):
        mask = gen(32, 32, rng)
        _check_mask(mask, 32, 32)
        assert ratio[0] <= mask_ratio(mask) <= ratio[1]


@pytest.mark.parametrize("gen_cls", [BlockMask, FreeFormMask])
def test_infeasible_ratio_raises(gen_cls: type[MaskGenerator]) -> None:
    gen = gen_cls(ratio=(0.3, 0.3001))  # no whole pixel count of a 4x4 image lies in this range
    with pytest.raises(ValueError, match="ratio"):
        gen(4, 4, np.random.default_rng(0))


@pytest.mark.parametrize("name", sorted(RANDOM_GENS))
def test_tiny_budget_falls_back(name: str) -> None:
    gen = (
        BlockMask(ratio=(0.8, 0.9), max_blocks=1)
        if name == "block"
        else FreeFormMask((0.8, 0.9), max_strokes=1)
    )
    rng = np.random.default_rng(3)
    for _ in range(10):
        assert 0.8 <= mask_ratio(gen(64, 48, rng)) <= 0.9


def test_freeform_is_stroke_like() -> None:
    """Strokes are thin: a free-form mask is not a few big rectangles (many distinct row profiles)."""
    mask = FreeFormMask(ratio=(0.2, 0.3))(128, 128, np.random.default_rng(0))
    assert len({r.tobytes() for r in mask.astype(bool)}) > 30


# ------------------------------------------------------------------------------------ determinism


def _all_gens() -> list[MaskGenerator]:
    return [
        BlockMask(),
        FreeFormMask(),
        MixedMask([BlockMask(), FreeFormMask(), CenterMask(8)], weights=[1, 1, 1]),
    ]


@pytest.mark.parametrize("gen", _all_gens(), ids=repr)
def test_determinism(gen: MaskGenerator) -> None:
    a = gen(64, 64, np.random.default_rng([5, 17]))
    b = gen(64, 64, np.random.default_rng([5, 17]))
    np.testing.assert_array_equal(a, b)
    others = [gen(64, 64, np.random.default_rng([5, i])) for i in range(18, 24)]
    assert any(not np.array_equal(a, o) for o in others)


@pytest.mark.parametrize("gen", _all_gens(), ids=repr)
def test_no_global_rng(gen: MaskGenerator) -> None:
    def run() -> list[np.ndarray]:
        rng = np.random.default_rng(99)
        out = []
        for i in range(5):
            np.random.seed(i)
            torch.manual_seed(1000 + i)
            random.seed(i)
            out.append(gen(48, 40, rng))
        return out

    state = np.random.get_state()
    first = run()
    np.random.seed(12345)
    torch.manual_seed(12345)
    random.seed(12345)
    second = run()
    np.random.set_state(state)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_rng_type_checked() -> None:
    with pytest.raises(TypeError, match="rng"):
        BlockMask()(32, 32, 0)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- center


def test_center_geometry_cifar() -> None:
    mask = CenterMask(size=8)(32, 32, np.random.default_rng(0))
    _check_mask(mask, 32, 32)
    assert mask.sum() == 64
    expected = np.zeros((32, 32), dtype=np.float32)
    expected[12:20, 12:20] = 1
    np.testing.assert_array_equal(mask, expected)


def test_center_fraction_and_nonsquare() -> None:
    mask = CenterMask(size=0.25)(64, 96, np.random.default_rng(0))
    ys, xs = np.nonzero(mask)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (24, 39, 40, 55)
    assert CenterMask(1.0)(10, 10, np.random.default_rng(0)).all()


def test_center_too_large() -> None:
    with pytest.raises(ValueError, match=r"size=40.*32x32"):
        CenterMask(size=40)(32, 32, np.random.default_rng(0))


# ------------------------------------------------------------------------------------------ mixed


def test_mixed_zero_weight_never_picked() -> None:
    gen = MixedMask([_Const(0.0), _Const(1.0)], weights=[1.0, 0.0])
    rng = np.random.default_rng(0)
    assert all(gen(4, 4, rng).sum() == 0 for _ in range(200))


def test_mixed_respects_weights() -> None:
    gen = MixedMask([_Const(0.0), _Const(1.0)], weights=[1, 3])
    rng = np.random.default_rng(0)
    frac = np.mean([gen(2, 2, rng)[0, 0] for _ in range(4000)])
    assert frac == pytest.approx(0.75, abs=0.03)
    assert gen.weights == pytest.approx([0.25, 0.75])


def test_mixed_accepts_dict() -> None:
    gens = {"center": CenterMask(8), "block": BlockMask(), "ones": _Const(1.0)}
    gen = MixedMask(gens, weights=[1, 1, 0])
    assert gen.names == ["center", "block", "ones"]
    rng = np.random.default_rng(1)
    for _ in range(50):
        mask = gen(32, 32, rng)
        _check_mask(mask, 32, 32)
        assert mask.sum() < 32 * 32
    by_name = MixedMask(gens, weights={"ones": 1, "center": 0, "block": 0})
    assert by_name(8, 8, rng).all()
    uniform = MixedMask({"a": _Const(0.0), "b": _Const(1.0)})
    assert uniform.weights == [0.5, 0.5]


# ------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: CenterMask(0), "size"),
        (lambda: CenterMask(1.5), "size"),
        (lambda: CenterMask(-0.2), "size"),
        (lambda: CenterMask("big"), "size"),
        (lambda: BlockMask(ratio=(0.5, 0.1)), r"ratio.*low <= high"),
        (lambda: BlockMask(ratio=(0.1, 1.5)), r"ratio\[1\].*\[0, 1\].*1\.5"),
        (lambda: BlockMask(ratio=0.3), "ratio"),
        (lambda: BlockMask(ratio=(0.1, 0.2, 0.3)), "ratio"),
        (lambda: BlockMask(min_size=0.0), r"min_size.*\(0, 1\]"),
        (lambda: BlockMask(min_size=0.6, max_size=0.5), "min_size must be <= max_size"),
        (lambda: BlockMask(max_blocks=0), r"max_blocks.*>= 1.*0"),
        (lambda: FreeFormMask(width=(0.0, 0.1)), r"width\[0\].*\(0, 1\]"),
        (lambda: FreeFormMask(width=(0.2, 0.1)), "width"),
        (lambda: FreeFormMask(max_vertices=1), r"max_vertices.*>= 2"),
        (lambda: FreeFormMask(max_strokes=0), "max_strokes"),
        (lambda: FreeFormMask(ratio=(-0.1, 0.2)), r"ratio\[0\]"),
        (lambda: MixedMask([]), "generators"),
        (lambda: MixedMask([BlockMask()], weights=[1, 2]), r"same length.*\(1\)"),
        (lambda: MixedMask([BlockMask(), BlockMask()], weights=[1, -1]), ">= 0"),
        (lambda: MixedMask([BlockMask(), BlockMask()], weights=[0, 0]), "all be zero"),
        (lambda: MixedMask([BlockMask(), 3]), "callable"),
        (lambda: MixedMask({"a": BlockMask()}, weights={"b": 1}), "keys"),
    ],
)
def test_constructor_validation(factory, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


def test_call_validation() -> None:
    with pytest.raises(ValueError, match="height"):
        BlockMask()(0, 32, np.random.default_rng(0))


def test_accepts_omegaconf_containers() -> None:
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({"ratio": [0.2, 0.3], "width": [0.05, 0.1], "weights": [1, 2]})
    block = BlockMask(ratio=cfg.ratio)
    free = FreeFormMask(ratio=cfg.ratio, width=cfg.width)
    mixed = MixedMask([block, free], weights=cfg.weights)
    rng = np.random.default_rng(0)
    for _ in range(10):
        assert 0.2 <= mask_ratio(mixed(32, 32, rng)) <= 0.3
