"""Hydra plugins of `inpaint` (Hydra only instantiates sweepers/launchers defined under ``hydra_plugins``).

Kept light: Hydra imports this package on every start to discover plugins, so the work lives in
``inpaint.sweepers`` and is imported only when a plugin is used."""
