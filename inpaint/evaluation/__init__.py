"""Evaluation: the one owner of scoring, online (validation and test of ``inpaint.run``) and offline
(``python -m inpaint.evaluate score``, any codebase's outputs), with the same numbers on the same images.

- :mod:`~inpaint.evaluation.metrics`: the per-image metrics (PSNR, SSIM, MAE, L2, MAEM, the "Beyond CNNs" hole
  metrics) averaged overall and per hole-ratio bucket (:class:`~inpaint.evaluation.metrics.InpaintMetrics`);
- :mod:`~inpaint.evaluation.field`: the field's metrics, LPIPS per image and FID / KID / P-IDS / U-IDS over the
  set (:class:`~inpaint.evaluation.field.FeatureSets`), on the networks of :mod:`inpaint.nets.lpips` and
  :mod:`inpaint.nets.inception`; :mod:`~inpaint.evaluation.distances`: their maths (numpy / scipy, float64);
- :mod:`~inpaint.evaluation.evaluator`: :class:`~inpaint.evaluation.evaluator.EvalSpec` (what is scored,
  ``eval.*``), :class:`~inpaint.evaluation.evaluator.Evaluator` (one stage's scoring: main set, compared
  procedures, a model's :class:`~inpaint.evaluation.evaluator.EvalTerms`, fill time) and the per-bucket merge;
- :mod:`~inpaint.evaluation.runs`: one test per hole-ratio bucket (``eval.per_bucket=true``);
- :mod:`~inpaint.evaluation.protocol`: the test-set digests and the protocol fingerprint;
- :mod:`~inpaint.evaluation.card`: the results card (``card.json``, ``card.md``) and ``metrics.md`` rendered
  from it; :mod:`~inpaint.evaluation.tables`: the markdown and logger tables.

A model adds to evaluation only through :meth:`inpaint.models.base.InpaintModule.evaluation_terms` (and
``evaluation_summary`` for numbers over kept samples); ``inpaint.report`` ranks the cards.
"""
