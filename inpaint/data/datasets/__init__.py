"""Datasets in the on-disk formats their owners distribute, one module each.

==========  =========================================  =====================================================
``data=``   module                                     official splits (val carved from train when absent)
==========  =========================================  =====================================================
cifar10     :mod:`inpaint.data.datasets.cifar10`       train (data_batch_1..5), test (test_batch)
celeba      :mod:`inpaint.data.datasets.celeba`        train / val / test from list_eval_partition.txt
places2     :mod:`inpaint.data.datasets.places2`       train (standard or challenge list), val, test
lsdir       :mod:`inpaint.data.datasets.lsdir`         train folders; the official val1 serves as test
lsun        :mod:`inpaint.data.datasets.lsun`          per-category train LMDB; the val LMDB serves as test
==========  =========================================  =====================================================

:mod:`inpaint.data.datasets.base` holds what they share (layout checks, carving, ``prepare``).
"""
