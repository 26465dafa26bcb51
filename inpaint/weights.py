"""Pretrained-weight registry: one place that knows every weight file the framework can use.

A file is looked up in the torch hub cache (``torch.hub.get_dir()/checkpoints``, i.e.
``$TORCH_HOME/hub/checkpoints``, where torchvision keeps the same files, so a copy fetched by torchvision
elsewhere is reused as is). When it is there, its SHA-256 is checked against the registry (a full digest,
or the 8-hex prefix that torchvision writes into its file names). When it is missing and downloads are
allowed (the default, unless ``INPAINT_OFFLINE=1``), it is downloaded once, verified and moved into place.
Otherwise one :class:`WeightsUnavailableError` says which file is missing, the exact path to put it at,
where to get it, and the config switch that runs without it. Nothing is ever silently substituted.

Files are loaded with ``torch.load(map_location="cpu", weights_only=True)``: a weight file can never run
code.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from inpaint.download import download_url, file_digest
from inpaint.errors import WeightsChecksumError, WeightsUnavailableError

log = logging.getLogger(__name__)

__all__ = [
    "OFFLINE_ENV",
    "REGISTRY",
    "WeightSpec",
    "WeightsChecksumError",
    "WeightsUnavailableError",
    "cache_dir",
    "fetch",
    "load_state_dict",
    "sha256sum",
    "weight_path",
]

#: set to 1/true/yes to forbid downloads (then a missing file is an immediate, explanatory error)
OFFLINE_ENV = "INPAINT_OFFLINE"
#: seconds a download may wait for the server (connecting, and between two received blocks)
DOWNLOAD_TIMEOUT = 30.0


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained weight file.

    Attributes:
        name: registry key, e.g. ``"vgg19"``.
        filename: file name in the cache, e.g. ``"vgg19-dcbb9e9d.pth"``.
        url: where it is downloaded from; ``None`` when a person must supply it by hand.
        sha256: the full hex digest, or a prefix of it (at least 8 hex digits; torchvision files carry
            the first 8 in their name); ``None`` when the source publishes no checksum (the file is then
            used unverified, with a warning).
        description: human words, e.g. ``"VGG19 ImageNet weights (torchvision layout, 548 MB)"``.
        source: where a person can get it by hand (a page or URL).
    """

    name: str
    filename: str
    url: str | None
    sha256: str | None
    description: str
    source: str

    def __post_init__(self) -> None:
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{8,64}", self.sha256):
            raise ValueError(
                f"WeightSpec '{self.name}': sha256 must be 8 to 64 lowercase hex digits, got '{self.sha256}'"
            )
        if not self.filename or Path(self.filename).name != self.filename:
            raise ValueError(f"WeightSpec '{self.name}': filename must be a bare file name, got '{self.filename}'")

    def matches(self, digest: str) -> bool:
        """Whether a full hex ``digest`` agrees with this spec (prefix or full; any digest if it has none)."""
        return self.sha256 is None or digest.lower().startswith(self.sha256)


_TV_PAGE = "https://pytorch.org/vision/stable/models.html"

# The official PGGAN-256 LSUN generators (Karras et al. 2018) converted to PyTorch by genforce: a dict with
# 'generator', 'discriminator' and 'generator_smooth' (load with inpaint.models.pggan_weights). URLs from
# genforce/genforce models/model_zoo.py and MODEL_ZOO.md; the mirror publishes no checksums, hence None.
# The datasets are those of the mGANprior-attention thesis (bedroom, cat, dog; church in its figures).
_GF_ZOO = "https://github.com/genforce/genforce/blob/master/MODEL_ZOO.md"
_SP = "https://mycuhk-my.sharepoint.com/:u:/g/personal/1155082926_link_cuhk_edu_hk/"
_PGGAN_PRIORS = {
    f"pggan_{name}256": WeightSpec(
        name=f"pggan_{name}256",
        filename=f"pggan_{name}256.pth",
        url=_SP + share,
        sha256=None,
        description=f"PGGAN 256x256 LSUN {name} generator (official weights, genforce PyTorch conversion)",
        source=f"genforce model zoo 'PGGAN Official', {_GF_ZOO}",
    )
    for name, share in (
        ("bedroom", "EUZQWGz2GT5Bh_GJLalP63IBvCsXDTOxDFIC_ZBsmoEacA?e=VNXiDb&download=1"),
        ("churchoutdoor", "EQ8cKujs2TVGjCL_j6bsnk8BqD9REF2ME2lBnpbTPsqIvA?e=zH55fT&download=1"),
        ("cat", "EQdveyUNOMtAue52n6BxoHoB6Yup5-PTvBDmyfUn7Un4Hw?e=7acGbT&download=1"),
        ("dog", "ESaKyXA5fGlOvXJYDDFbT2kB9c0HlXh9n_wnyhiP05nhow?e=d4aKDV&download=1"),
    )
}

# LPIPS v0.1 linear layers (legacy torch pickles, storages tagged cuda:0; loaded on the CPU). The sha256s are of
# the files in richzhang/PerceptualSimilarity, byte-identical in the lpips 0.1.4 wheel.
_LP_RAW = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1"
_LPIPS_LINS = {
    f"lpips_{net}_v0.1": WeightSpec(
        name=f"lpips_{net}_v0.1",
        filename=f"lpips-v0.1-{net}.pth",
        url=f"{_LP_RAW}/{net}.pth",
        sha256=sha,
        description=f"LPIPS v0.1 linear weights for the {backbone} backbone ({size} kB)",
        source=f"richzhang/PerceptualSimilarity lpips/weights/v0.1/{net}.pth (also in the lpips 0.1.4 wheel)",
    )
    for net, backbone, size, sha in (
        ("vgg", "VGG16", 7, "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"),
        ("alex", "AlexNet", 6, "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"),
    )
}

REGISTRY: dict[str, WeightSpec] = {
    "vgg19": WeightSpec(
        name="vgg19",
        filename="vgg19-dcbb9e9d.pth",
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        sha256="dcbb9e9d",
        description="VGG19 ImageNet weights (torchvision layout, 548 MB)",
        source=f"torchvision VGG19_Weights.IMAGENET1K_V1, {_TV_PAGE}",
    ),
    "vgg16": WeightSpec(
        name="vgg16",
        filename="vgg16-397923af.pth",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        description="VGG16 ImageNet weights (torchvision layout, 528 MB)",
        source=f"torchvision VGG16_Weights.IMAGENET1K_V1, {_TV_PAGE}",
    ),
    "alexnet": WeightSpec(
        name="alexnet",
        filename="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        sha256="7be5be79",  # torchvision loads it with check_hash=True, so the name carries the prefix
        description="AlexNet ImageNet weights (torchvision layout, 233 MB; the LPIPS 'alex' backbone)",
        source=f"torchvision AlexNet_Weights.IMAGENET1K_V1, {_TV_PAGE}",
    ),
    # The TF Inception graph of 2015-12-05 converted by pytorch-fid (torchvision Inception3 keys, fc 1008).
    # No checksum: neither pytorch-fid nor torch-fidelity passes check_hash, so '6726825d' in the name is
    # not known to be a sha256 prefix, and checking it as one could reject the genuine file.
    "fid_inception": WeightSpec(
        name="fid_inception",
        filename="pt_inception-2015-12-05-6726825d.pth",
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        sha256=None,
        description="FID InceptionV3 (TF graph 2015-12-05 converted to PyTorch by pytorch-fid, 96 MB)",
        source="pytorch-fid release 'fid_weights', https://github.com/mseitzer/pytorch-fid/releases",
    ),
    **_LPIPS_LINS,
    **_PGGAN_PRIORS,
}


def _spec(name: str) -> WeightSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown pretrained weights '{name}'; known: {', '.join(sorted(REGISTRY))}") from None


def cache_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints`` (honours ``TORCH_HOME`` and ``torch.hub.set_dir``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weight_path(name: str) -> Path:
    """Where registry entry ``name`` lives in the cache (whether or not it is there)."""
    return cache_dir() / _spec(name).filename


def sha256sum(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    return file_digest(path, "sha256", chunk)


# (path, size, mtime_ns) -> digest: a file is hashed once per process, not at every model construction
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _digest(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256sum(path)
    return _DIGESTS[key]


def _downloads_allowed(download: bool | None) -> bool:
    if download is not None:
        return bool(download)
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def _unavailable(spec: WeightSpec, dest: Path, reason: str, offline_hint: str) -> WeightsUnavailableError:
    where = f"download it from {spec.url}" if spec.url else "it cannot be downloaded automatically"
    where += f" (source: {spec.source})" if spec.source and spec.source != spec.url else ""
    without = f" To run without it, set {offline_hint}." if offline_hint else ""
    return WeightsUnavailableError(
        f"pretrained weights '{spec.name}' are not available ({reason}): {spec.description}, file "
        f"'{spec.filename}'. Put the file at {dest} ($TORCH_HOME/hub/checkpoints) -- {where}."
        f"{without}"
    )


def _verify(spec: WeightSpec, path: Path, *, downloaded: bool) -> None:
    if spec.sha256 is None:
        log.warning("'%s' has no published checksum: %s is used unverified", spec.name, path)
        return
    digest = _digest(path)
    if spec.matches(digest):
        return
    what = "the downloaded copy" if downloaded else "the cached file"
    action = (
        f"the download was corrupted or the file changed upstream; try again{' later' if spec.url else ''}"
        if downloaded
        else "it is damaged, truncated or a different version: delete it and retry"
        + (" (it is then downloaded again)" if spec.url else f" with a good copy ({spec.source})")
    )
    raise WeightsChecksumError(
        f"checksum mismatch for {what} of '{spec.name}' ({spec.description}) at {path}: sha256 expected "
        f"{spec.sha256}{'...' if len(spec.sha256) < 64 else ''}, got {digest}; {action}"
    )


def fetch(name: str, *, download: bool | None = None, offline_hint: str = "") -> Path:
    """The verified local file of registry entry ``name``.

    Args:
        name: a :data:`REGISTRY` key.
        download: allow a download when the file is missing; ``None`` (default) allows it unless the
            environment sets ``INPAINT_OFFLINE=1``.
        offline_hint: the config switch that runs without these weights (e.g. ``"model.loss.vgg=random"``),
            quoted in the error when the file is unavailable.

    Raises:
        WeightsUnavailableError: the file is missing and cannot be downloaded now.
        WeightsChecksumError: the cached or downloaded file has the wrong SHA-256.
    """
    spec = _spec(name)
    dest = weight_path(name)
    if dest.is_file():
        _verify(spec, dest, downloaded=False)
        return dest
    if spec.url is None:
        raise _unavailable(spec, dest, "not in the cache, and it has no download URL", offline_hint)
    if not _downloads_allowed(download):
        reason = (
            f"not in the cache, and downloads are off ({OFFLINE_ENV}=1)" if download is None else
            "not in the cache, and downloading was not allowed"
        )
        raise _unavailable(spec, dest, reason, offline_hint)
    # a per-process temporary name: DDP ranks that download at once do not clobber each other, and the
    # final rename is atomic
    tmp = dest.with_name(f"{spec.filename}.{os.getpid()}.download")
    log.info("downloading %s (%s) into %s", spec.name, spec.description, dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        download_url(spec.url, tmp, timeout=DOWNLOAD_TIMEOUT)
        _verify(spec, tmp, downloaded=True)
        os.replace(tmp, dest)
    except (OSError, http.client.HTTPException) as e:
        tmp.unlink(missing_ok=True)
        raise _unavailable(spec, dest, f"not in the cache, and the download failed: {e}", offline_hint) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def load_state_dict(
    name_or_path: str | os.PathLike[str], *, download: bool | None = None, offline_hint: str = ""
) -> dict[str, Tensor]:
    """Load a state dict from a registry name (via :func:`fetch`) or from a file path.

    A path is read as is (no checksum), except when it is a registry entry's cache file, which is verified.
    Loading uses ``torch.load(map_location="cpu", weights_only=True)``.

    Raises:
        WeightsUnavailableError: a registry file that cannot be had (see :func:`fetch`), or a path that
            does not exist.
        WeightsChecksumError: a registry file with the wrong checksum.
        ValueError: the file cannot be read as a tensor dict.
    """
    key = os.fspath(name_or_path)
    if key in REGISTRY:
        path = fetch(key, download=download, offline_hint=offline_hint)
    else:
        path = Path(key).expanduser()
        if not path.is_file():
            without = f", or set {offline_hint} to run without it" if offline_hint else ""
            raise WeightsUnavailableError(
                f"weights '{key}' are neither a known name ({', '.join(sorted(REGISTRY))}) nor an existing "
                f"file (looked for {path.resolve()}): give the path of a .pth state dict{without}"
            )
        for spec in REGISTRY.values():
            if path.name == spec.filename and path.resolve() == (cache_dir() / spec.filename).resolve():
                _verify(spec, path, downloaded=False)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # torch's own text is a page of advice about weights_only: the kind of failure is what helps
        raise ValueError(f"cannot read weights from '{path}' as a PyTorch state dict (torch.load: {type(e).__name__}); "
                         "give a .pth file of tensors (the registry names: python -c 'import inpaint.weights as w; "
                         "print(sorted(w.REGISTRY))')") from None
    if not isinstance(obj, dict):
        raise ValueError(f"'{path}' holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    return obj
