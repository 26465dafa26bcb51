"""Tests for inpaint.data.mask_files (mask folders, fixed masks) and CenterMask's prediction region."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import hydra
import numpy as np
import pytest
from PIL import Image

from inpaint.data import cache
from inpaint.data.io import ImageReadError
from inpaint.data.mask_files import FixedMask, MaskPolarityWarning, NvidiaMask
from inpaint.data.masks import BlockMask, CenterMask, mask_ratio

NO_AUG = {"hflip": False, "vflip": False, "rotate": False}


def _save(path: Path, hole: np.ndarray, *, black: bool = False) -> Path:
    """Write a bool hole array as a mode-L PNG: 255 = hole (0 = hole when ``black``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.where(hole != black, 255, 0).astype(np.uint8)
    Image.fromarray(img, mode="L").save(path)
    return path


def _rows(h: int, w: int, n: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[:n] = True
    return m


def _tall() -> np.ndarray:
    """80x64 (H x W): 8-row hole bands at top and bottom, a 4x4-block checker in the central 64x64."""
    m = np.zeros((80, 64), dtype=bool)
    m[:8] = m[72:] = True
    m[8:72] = np.kron((np.indices((16, 16)).sum(0) % 2).astype(bool), np.ones((4, 4), dtype=bool))
    return m


def _white_masks() -> dict[str, np.ndarray]:
    """Relative path -> hole array; true ratios 0.125, 0.25, 0.5, 0.6 in sorted path order."""
    b = np.zeros((64, 64), dtype=bool)
    b[:32, :32] = True
    return {"a.png": _rows(64, 64, 8), "b.png": b, "c.png": _rows(64, 64, 32), "sub/d.png": _tall()}


RATIOS = [0.125, 0.25, 0.5, 0.6]


@pytest.fixture
def white(tmp_path) -> Path:
    root = tmp_path / "white"
    for rel, m in _white_masks().items():
        _save(root / rel, m)
    return root


@pytest.fixture
def black(tmp_path) -> Path:
    root = tmp_path / "black"
    for rel, m in _white_masks().items():
        _save(root / rel, m, black=True)
    return root


@pytest.fixture
def rows12(tmp_path) -> Path:
    """12 masks of 32x32; file i has rows 0..i as hole (distinct ratios (i + 1) / 32)."""
    root = tmp_path / "rows12"
    for i in range(12):
        _save(root / f"{i:02d}.png", _rows(32, 32, i + 1))
    return root


def _asym() -> np.ndarray:
    m = np.zeros((32, 32), dtype=bool)
    m[:4, :16] = True
    m[:12, :4] = True
    m[20:22, 25:27] = True
    return m


@pytest.fixture
def asym(tmp_path) -> Path:
    root = tmp_path / "asym"
    _save(root / "m.png", _asym())
    return root


def _eval_all(gen: NvidiaMask, h: int, w: int) -> list[np.ndarray]:
    return [gen(h, w, None, index=i) for i in range(len(gen))]


# ------------------------------------------------------------------------------------ index & ratio


def test_ratio_index_is_true_fraction(white) -> None:
    gen = NvidiaMask(white)
    assert [p.relative_to(white).as_posix() for p in gen.files] == sorted(_white_masks())
    assert gen.ratios == pytest.approx(RATIOS, abs=1e-9)
    assert len(gen) == 4 and gen.ratio is None
    assert "n=4" in repr(gen) and "white" in repr(gen)


@pytest.mark.parametrize(
    ("ratio", "kept"),
    [
        ([0.2, 0.5], ["b.png"]),
        ([0.5, 1.0], ["c.png", "sub/d.png"]),
        ([0.125, 0.25], ["a.png"]),
        ([0, 1], None),
    ],
)
def test_ratio_filter_half_open(white, ratio, kept) -> None:
    gen = NvidiaMask(white, ratio=ratio)
    names = [p.relative_to(white).as_posix() for p in gen.files]
    assert names == (kept or sorted(_white_masks()))
    assert gen.ratio == tuple(float(r) for r in ratio)
    assert gen.ratios == pytest.approx([RATIOS[sorted(_white_masks()).index(n)] for n in names])


def test_ratio_one_includes_full_masks(tmp_path) -> None:
    _save(tmp_path / "full" / "all.png", np.ones((8, 8), dtype=bool))
    _save(tmp_path / "full" / "none.png", np.zeros((8, 8), dtype=bool))
    gen = NvidiaMask(tmp_path / "full", ratio=[0.5, 1.0])
    assert [p.name for p in gen.files] == ["all.png"]


def test_empty_ratio_selection_error(white) -> None:
    with pytest.raises(ValueError, match=r"mask\.ratio=\[0\.0, 0\.125\].*4 masks.*0\.1250 to 0\.6000"):
        NvidiaMask(white, ratio=[0.0, 0.125])
    with pytest.raises(ValueError, match=r"mask\.ratio"):
        NvidiaMask(white, ratio=[0.6, 0.2])


# --------------------------------------------------------------------------------- output geometry


@pytest.mark.parametrize(("h", "w"), [(32, 48), (64, 64), (16, 16), (100, 30), (1, 1)])
def test_output_binary_float32(white, h, w) -> None:
    gen = NvidiaMask(white, dilate=2)
    rng = np.random.default_rng(0)
    for m in [*_eval_all(gen, h, w), *(gen(h, w, rng) for _ in range(8))]:
        assert m.dtype == np.float32 and m.shape == (h, w)
        assert np.isin(m, (0.0, 1.0)).all()


def test_nearest_resize_and_centre_crop(tmp_path) -> None:
    pattern = np.random.default_rng(3).random((16, 16)) < 0.4
    big = np.kron(pattern, np.ones((4, 4), dtype=bool))  # 64x64, 4x4 blocks
    _save(tmp_path / "p" / "p.png", big)
    gen = NvidiaMask(tmp_path / "p")
    np.testing.assert_array_equal(gen(16, 16, None, index=0), pattern)
    np.testing.assert_array_equal(gen(128, 128, None, index=0), np.kron(pattern, np.ones((8, 8))))
    np.testing.assert_array_equal(gen(64, 64, None, index=0), big)
    # wide target: the central 32 rows are kept, no resize needed
    np.testing.assert_array_equal(gen(32, 64, None, index=0), big[16:48])
    # tall target: the central 16 columns, downscaled 2x
    np.testing.assert_array_equal(gen(32, 8, None, index=0), pattern[:, 6:10].repeat(2, 0).repeat(2, 1))


def test_upscale_is_nearest(tmp_path) -> None:
    pixels = np.random.default_rng(5).random((8, 12)) < 0.5  # 1-px detail: any smoothing would change it
    _save(tmp_path / "px" / "px.png", pixels)
    gen = NvidiaMask(tmp_path / "px")
    np.testing.assert_array_equal(gen(32, 48, None, index=0), np.kron(pixels, np.ones((4, 4))))


def test_threshold_and_hole_colour(tmp_path) -> None:
    gray = np.array([[0, 127, 128, 255]], dtype=np.uint8).repeat(4, 0)
    (tmp_path / "levels").mkdir()
    Image.fromarray(gray, mode="L").save(tmp_path / "levels" / "g.png")
    root = tmp_path / "levels"
    np.testing.assert_array_equal(NvidiaMask(root)(4, 4, None, index=0)[0], [0, 0, 1, 1])
    np.testing.assert_array_equal(NvidiaMask(root, hole="black")(4, 4, None, index=0)[0], [1, 1, 0, 0])
    np.testing.assert_array_equal(NvidiaMask(root, threshold=200)(4, 4, None, index=0)[0], [0, 0, 0, 1])
    assert NvidiaMask(root, threshold=200).ratios == [0.25]


def test_aspect_crop_of_tall_file(white) -> None:
    gen = NvidiaMask(white, ratio=[0.55, 0.65])  # only sub/d.png (80x64)
    tall = _tall()
    np.testing.assert_array_equal(gen(64, 64, None, index=0), tall[8:72])  # bands cropped away
    np.testing.assert_array_equal(gen(40, 32, None, index=0), tall[::2, ::2])  # same aspect: no crop


# --------------------------------------------------------------------------------------- eval pairing


def test_eval_pairing_deterministic(rows12) -> None:
    a, b = NvidiaMask(rows12), NvidiaMask(rows12, dilate=3, vflip=True)
    for i in (0, 5, 11, 12, 40):
        ma = a(32, 32, np.random.default_rng(i), index=i)
        np.testing.assert_array_equal(ma, a(32, 32, np.random.default_rng(1000 + i), index=i))
        np.testing.assert_array_equal(ma, b(32, 32, None, index=i))  # no augmentation / dilation at eval
        np.testing.assert_array_equal(ma, a(32, 32, None, index=i + 12))  # index wraps modulo n


def test_eval_uses_every_file_once_and_seed_changes_order(rows12) -> None:
    def order(seed: int) -> list[int]:
        gen = NvidiaMask(rows12, seed=seed)
        return [int(m.sum()) // 32 - 1 for m in _eval_all(gen, 32, 32)]  # file i has i + 1 hole rows

    o0, o1 = order(0), order(1)
    assert sorted(o0) == list(range(12)) and sorted(o1) == list(range(12))
    assert o0 == list(np.random.default_rng(0).permutation(12))
    assert o0 != o1
    assert NvidiaMask(rows12).eval_file(3) == NvidiaMask(rows12).files[o0[3]]


# ----------------------------------------------------------------------------------- augmentation


def _distinct(masks: list[np.ndarray]) -> set[bytes]:
    return {m.astype(bool).tobytes() for m in masks}


def test_training_without_augmentation_is_the_file(asym) -> None:
    gen = NvidiaMask(asym, **NO_AUG)
    rng = np.random.default_rng(0)
    assert _distinct([gen(32, 32, rng) for _ in range(10)]) == {_asym().tobytes()}


def test_training_flips_and_rotations(asym) -> None:
    base = _asym()
    rng = np.random.default_rng(0)

    flips = [NvidiaMask(asym, hflip=True, vflip=False, rotate=False)(32, 32, rng) for _ in range(40)]
    assert _distinct(flips) == {base.tobytes(), base[:, ::-1].tobytes()}

    vflips = [NvidiaMask(asym, hflip=False, vflip=True, rotate=False)(32, 32, rng) for _ in range(40)]
    assert _distinct(vflips) == {base.tobytes(), base[::-1].tobytes()}

    rots = [NvidiaMask(asym, hflip=False, rotate=True)(32, 32, rng) for _ in range(64)]
    assert _distinct(rots) == {np.rot90(base, k).tobytes() for k in range(4)}

    gen = NvidiaMask(asym, hflip=True, vflip=True, rotate=True)
    every = [gen(32, 32, rng) for _ in range(64)]
    assert len(_distinct(every)) > 4
    for m in every:
        assert np.isin(m, (0.0, 1.0)).all() and m.sum() == base.sum()


def _chebyshev_grow(mask: np.ndarray, r: int) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    d = np.maximum(np.abs(yy[..., None] - ys), np.abs(xx[..., None] - xs)).min(-1)
    return d <= r


def test_dilation_grows_within_radius(asym) -> None:
    base = _asym()
    gen = NvidiaMask(asym, dilate=3, **NO_AUG)
    rng = np.random.default_rng(1)
    outs = [gen(32, 32, rng).astype(bool) for _ in range(30)]
    limit = _chebyshev_grow(base, 3)
    counts = set()
    for m in outs:
        assert (m >= base).all()  # only grows
        assert not (m & ~limit).any()  # never beyond the radius
        counts.add(int(m.sum()))
    # all four radii 0..3 appear; radius 3 reaches the full 7x7-square dilation
    assert len(counts) == 4 and base.sum() in counts and limit.sum() in counts


# ---------------------------------------------------------------------------------- polarity & formats


def test_polarity_warning_and_black_holes(white, black) -> None:
    with pytest.warns(
        MaskPolarityWarning, match=r"median hole ratio of 0\.625.*mask\.hole=white.*mask\.hole=black"
    ):
        inverted = NvidiaMask(black)
    assert inverted.ratios == pytest.approx([1 - r for r in RATIOS])
    with warnings.catch_warnings():
        warnings.simplefilter("error", MaskPolarityWarning)
        dark = NvidiaMask(black, hole="black")
        light = NvidiaMask(white)
    assert dark.ratios == pytest.approx(light.ratios)
    for d, w in zip(_eval_all(dark, 48, 40), _eval_all(light, 48, 40), strict=True):
        np.testing.assert_array_equal(d, w)
    rd, rw = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(5):
        np.testing.assert_array_equal(dark(32, 32, rd), light(32, 32, rw))


def test_file_formats_are_rebinarised(tmp_path) -> None:
    hole = _rows(64, 64, 13)
    hole[:, :19] = True  # edges off the 8x8 JPEG grid, so the JPEG gets noisy values
    gray = np.where(hole, 255, 0).astype(np.uint8)
    root = tmp_path / "formats"
    root.mkdir()
    Image.fromarray(np.stack([gray] * 3, -1), mode="RGB").save(root / "rgb.png")
    Image.fromarray(np.stack([gray] * 3 + [np.full_like(gray, 255)], -1), mode="RGBA").save(root / "rgba.png")
    Image.fromarray(gray, mode="L").convert("P").save(root / "palette.png")
    Image.fromarray(gray, mode="L").convert("1").save(root / "bits.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(root / "sixteen.png")
    Image.fromarray(gray, mode="L").save(root / "noisy.jpg", quality=60)
    with Image.open(root / "noisy.jpg") as img:
        assert not np.isin(np.asarray(img), (0, 255)).all()  # the JPEG really is noisy
    gen = NvidiaMask(root, **NO_AUG)
    names = ["bits.png", "noisy.jpg", "palette.png", "rgb.png", "rgba.png", "sixteen.png"]
    assert [p.name for p in gen.files] == names
    for name, r in zip([p.name for p in gen.files], gen.ratios, strict=True):
        assert r == pytest.approx(hole.mean(), abs=0.01 if name == "noisy.jpg" else 0), name
    for i in range(len(gen)):
        m = gen(64, 64, None, index=i)
        assert np.isin(m, (0.0, 1.0)).all()
        assert (m.astype(bool) == hole).mean() > 0.99


# ---------------------------------------------------------------------------------------------- cache


def test_cache_written_and_rebuilt(white, monkeypatch) -> None:
    NvidiaMask(white)
    files = list((white / ".inpaint-cache").glob("mask-ratios-*.json"))
    assert [f.name for f in files] == ["mask-ratios-white-128.json"]
    assert json.loads(files[0].read_text())["value"] == pytest.approx(RATIOS)

    # a second instance reads the cache: no file is decoded
    import inpaint.data.mask_files as mf

    def boom(*a, **k):
        raise AssertionError("index rebuilt although the cache is valid")

    monkeypatch.setattr(mf, "_hole_ratio", boom)
    assert NvidiaMask(white).ratios == pytest.approx(RATIOS)
    monkeypatch.undo()

    _save(white / "e.png", _rows(64, 64, 16))  # adding a mask rebuilds the index
    gen = NvidiaMask(white)
    assert len(gen) == 5 and gen.ratios[3] == pytest.approx(0.25)  # e.png sorts before sub/d.png

    _save(white / "e.png", _rows(64, 64, 48))  # rewriting one too
    os.utime(white / "e.png", ns=(1, 1))
    assert NvidiaMask(white).ratios[3] == pytest.approx(0.75)
    assert len(json.loads(files[0].read_text())["value"]) == 5
    # other threshold / polarity settings get their own cache files
    NvidiaMask(white, threshold=200)
    assert (white / ".inpaint-cache" / "mask-ratios-white-200.json").is_file()


def _assert_user_cache(root: Path, xdg: Path) -> None:
    assert NvidiaMask(root).ratios == pytest.approx(RATIOS)
    assert not (root / ".inpaint-cache").exists()
    assert len(list(xdg.glob("inpaint/*/mask-ratios-white-128.json"))) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_root_uses_user_cache(white, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for d in [white, white / "sub"]:
        d.chmod(0o555)
    try:
        _assert_user_cache(white, tmp_path / "xdg")
    finally:
        for d in [white, white / "sub"]:
            d.chmod(0o755)


def test_unwritable_root_uses_user_cache(white, tmp_path, monkeypatch) -> None:
    """Same fallback with the read-only check simulated (works when running as root)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    real = cache._writable
    monkeypatch.setattr(
        cache, "_writable", lambda folder: folder.name != cache.CACHE_DIRNAME and real(folder)
    )
    _assert_user_cache(white, tmp_path / "xdg")


# --------------------------------------------------------------------------------------------- errors


def test_corrupt_file_named(white) -> None:
    (white / "zz_broken.png").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(ImageReadError, match="zz_broken.png"):
        NvidiaMask(white)


def test_file_corrupted_after_indexing_named(white) -> None:
    gen = NvidiaMask(white, **NO_AUG)
    (white / "a.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match=r"a\.png"):
        _eval_all(gen, 16, 16)
    with pytest.raises(ImageReadError, match=r"a\.png"):
        rng = np.random.default_rng(0)
        for _ in range(50):
            gen(16, 16, rng)


def test_missing_root(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"mask\.root=.*nv-adlr.*test_mask\.zip.*255 = hole"):
        NvidiaMask(tmp_path / "nowhere")


def test_empty_and_imageless_folders(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"'.*empty' holds no mask image files"):
        NvidiaMask(tmp_path / "empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"notes.*1 other file.*readme\.txt"):
        NvidiaMask(tmp_path / "notes")
    _save(tmp_path / "nested" / "deep" / "m.png", _rows(8, 8, 2))
    with pytest.raises(ValueError, match="recursive"):
        NvidiaMask(tmp_path / "nested", recursive=False)
    assert len(NvidiaMask(tmp_path / "nested")) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"hole": "red"}, {"hole": 255}, {"threshold": 0}, {"threshold": 256}, {"dilate": -1}, {"seed": 1.5}],
)
def test_bad_options(white, kwargs) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=rf"mask\.{name}"):
        NvidiaMask(white, **kwargs)


def test_bad_hole_lists_allowed_values(white) -> None:
    with pytest.raises(ValueError, match=r"mask\.hole.*white.*black"):
        NvidiaMask(white, hole="White")


# ------------------------------------------------------------------------------------------ FixedMask


def test_fixed_mask_is_one_mask() -> None:
    gen = FixedMask(BlockMask(ratio=(0.2, 0.3)), seed=3)
    first = gen(48, 40, np.random.default_rng(0))
    first[...] = 7  # callers get copies
    again = [gen(48, 40, np.random.default_rng(i), index=i) for i in range(5)] + [gen(48, 40, None)]
    for m in again:
        np.testing.assert_array_equal(m, again[0])
    np.testing.assert_array_equal(again[0], BlockMask(ratio=(0.2, 0.3))(48, 40, np.random.default_rng(3)))
    assert gen(32, 32, None).shape == (32, 32)
    assert gen.ratio == (0.2, 0.3)
    assert FixedMask(CenterMask(4)).ratio is None
    assert not np.array_equal(FixedMask(BlockMask(), seed=4)(48, 40, None), again[0])


@pytest.mark.parametrize(
    ("preset", "lo", "hi"), [("blocks_12", 0.11, 0.13), ("blocks_25", 0.24, 0.26), ("blocks_40", 0.39, 0.41)]
)
def test_block_presets(make_cfg, preset, lo, hi) -> None:
    gen = hydra.utils.instantiate(make_cfg(f"mask={preset}").mask)
    assert isinstance(gen, FixedMask) and gen.ratio == pytest.approx((lo, hi))
    m = gen(256, 256, np.random.default_rng(1), index=None)
    assert lo <= mask_ratio(m) <= hi
    np.testing.assert_array_equal(m, gen(256, 256, np.random.default_rng(2), index=9))


# --------------------------------------------------------------------------------- CenterMask region


def test_center_region_cifar() -> None:
    gen = CenterMask(size=8, overlap=4)
    hole, region = gen(32, 32, np.random.default_rng(0)), gen.region(32, 32)
    assert region.dtype == np.float32 and region.shape == (32, 32)
    ys, xs = np.nonzero(hole)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (12, 19, 12, 19)
    ys, xs = np.nonzero(region)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (8, 23, 8, 23) and region.sum() == 256
    np.testing.assert_array_equal(CenterMask(size=8).region(32, 32), hole)  # overlap 0: the hole itself
    assert CenterMask(size=8, overlap=20).region(32, 32).all()  # clipped to the image
    with pytest.raises(ValueError, match="overlap"):
        CenterMask(size=8, overlap=-1)


# ------------------------------------------------------------------------------------------- configs


def test_cifar_center_config(make_cfg) -> None:
    gen = hydra.utils.instantiate(make_cfg("mask=cifar_center").mask)
    assert isinstance(gen, CenterMask) and gen.size == 8 and gen.overlap == 4
    assert gen.region(32, 32).sum() == 256


def test_nvidia_config(make_cfg, white) -> None:
    cfg = make_cfg("mask=nvidia", f"mask.root={white}", "mask.ratio=[0.2,0.6]")
    gen = hydra.utils.instantiate(cfg.mask)
    assert isinstance(gen, NvidiaMask) and len(gen) == 2 and gen.ratio == (0.2, 0.6)
    options = (gen.hole, gen.threshold, gen.hflip, gen.vflip, gen.rotate, gen.dilate, gen.seed)
    assert options == ("white", 128, True, False, True, 0, 0)
    assert gen(32, 32, np.random.default_rng(0)).shape == (32, 32)


# ------------------------------------------------------------------------------------------ packed cache


def test_packed_cache_gives_the_same_masks_as_the_files(rows12) -> None:
    import pickle

    packed = NvidiaMask(rows12, ratio=[0.1, 0.3])
    plain = NvidiaMask(rows12, ratio=[0.1, 0.3], packed=False)
    bits = list((rows12 / cache.CACHE_DIRNAME).glob("mask-bits-white-128-*.npy"))
    assert len(bits) == 1 and packed._bits_path == bits[0] and plain._bits_path is None
    for a, b in zip(_eval_all(packed, 24, 20), _eval_all(plain, 24, 20), strict=True):
        assert np.array_equal(a, b)
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(10):
        assert np.array_equal(packed(32, 32, r1), plain(32, 32, r2))
    # a loader worker gets the generator pickled: the memory map is reopened there, not copied
    packed(8, 8, None, index=0)
    clone = pickle.loads(pickle.dumps(packed))
    assert len(pickle.dumps(packed)) < 4000 and np.array_equal(clone(8, 8, None, index=3), plain(8, 8, None, index=3))


def test_packed_cache_is_rebuilt_when_a_file_changes(rows12) -> None:
    NvidiaMask(rows12)
    _save(rows12 / "12.png", _rows(32, 32, 30))
    gen = NvidiaMask(rows12)
    bits = list((rows12 / cache.CACHE_DIRNAME).glob("mask-bits-*.npy"))
    assert len(bits) == 1 and np.load(bits[0]).shape == (13, 32, 4)
    assert np.array_equal(gen(32, 32, None, index=int(np.argsort(gen._perm)[12])), _rows(32, 32, 30))
