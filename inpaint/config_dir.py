"""Where the Hydra configs are: :data:`CONF_DIR`, the ``conf/`` folder next to the package.

One definition, read by every entry point (``inpaint.run``, ``inpaint.predict``, ``inpaint.prepare``) and by
:mod:`inpaint.checkpoints` (which names the ``model=`` config of a refused checkpoint). It imports nothing of
``inpaint``; ``inpaint.cli.CONF_DIR`` and ``inpaint.run.CONF_DIR`` re-export it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONF_DIR", "PREDICT_CONF_DIR", "find_conf_dir"]


def find_conf_dir() -> Path:
    """The ``conf/`` folder next to the package (a source checkout or an editable install)."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "conf", here / "conf"):
        if (cand / "train.yaml").is_file():
            return cand
    raise RuntimeError(
        f"cannot find the Hydra configs (conf/train.yaml) next to {here}; install with `pip install -e .`"
    )


CONF_DIR = find_conf_dir()
#: ``inpaint.predict``'s own config root, beside ``conf/`` (inside it, Hydra would list it as a group of ``inpaint.run``)
PREDICT_CONF_DIR = CONF_DIR.parent / "conf_predict"
