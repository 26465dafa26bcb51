# Sourced by the CIFAR-10 real-data checks (ce_cifar_check.sh, density_cifar_check.sh): the data, mask and evaluation
# settings they share, so their tables are scored on the same held-out images. Needs $images, $out and
# $val_batches (validation batches of 64 per validation).
# data=folder splits the image folder by a hash of each path into 80 % train / 10 % val / 10 % test; the test is the
# first 2,048 test images (32 batches of 64) with the 8x8 centre hole and the "Beyond CNNs" hole metrics.
common=(data=folder "data.root=$images" data.image_size=32 data.resize_short=null data.batch_size=32
        +data.eval_batch_size=64 data.num_workers=1 mask=cifar_center eval.hole_metrics=true
        "eval.buckets=[[0.05,0.1]]" "trainer.limit_val_batches=$val_batches" trainer.limit_test_batches=32
        eval.grid_samples=8 "paths.log_dir=$out" logger=csv)
