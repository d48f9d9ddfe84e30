"""Quickstart: two-stage fine-tuning end to end, offline, in a few minutes on a CPU.

Data: `tfds:tfl_shapes`, a small dataset of generated photos of shapes that
ships with tfl as a TensorFlow Datasets builder, so it is prepared on the spot
without a download (and the real tfds code path runs).
Backbone: tfl's default, `mobilenet_v2_035` (MobileNetV2, alpha 0.35, 0.4M
parameters; chosen by measurement, see the README): fast on two CPU cores. Its
ImageNet weights come from the Keras cache or its download, and without either
from the copy that ships with tfl (2 MB, Apache-2.0), so the quickstart shows
real transfer learning on a machine without a network.
Schedule: the tfl defaults (stage 1: head on cached backbone features; stage 2:
the top blocks unfrozen at a lower, warmed-up, cosine-decayed rate).

It then evaluates the model and labels a few validation images saved as JPEG
files, as a user would with `tfl predict`.

    python recipes/quickstart.py                 # defaults
    python recipes/quickstart.py --out runs/qs --epochs 5 --fine-tune-epochs 2
"""

import os

import click

import tfl  # noqa: E402 (cheap: TensorFlow is imported on first use)

tfl.quiet_tensorflow()  # before TensorFlow is imported: no C++ start-up lines


@click.command()
@click.option("--data", default="tfds:tfl_shapes", show_default=True, help="folder:PATH or tfds:NAME.")
@click.option("--backbone", default=None, help="A registry name (default: tfl's, mobilenet_v2_035).")
@click.option("--weights", default="imagenet", show_default=True, help="imagenet, none, or a weights file.")
@click.option("--image-size", default=128, show_default=True, type=int)
@click.option("--epochs", default=None, type=int, help="Stage 1 epochs (default: tfl's).")
@click.option("--fine-tune-epochs", default=None, type=int, help="Stage 2 epochs (default: tfl's).")
@click.option("--out", default="runs/quickstart", show_default=True, help="Run folder (replaced).")
def main(data, backbone, weights, image_size, epochs, fine_tune_epochs, out):
    import tfl
    from tfl.errors import use_cli_names

    use_cli_names()  # a script run from the shell: messages name --flags
    try:
        result = tfl.fine_tune(data=data, backbone=backbone, weights=weights, image_size=image_size,
                               epochs=epochs, fine_tune_epochs=fine_tune_epochs, out=out, overwrite=True)
    finally:
        use_cli_names(False)
    click.echo(f"[quickstart] stage 1 val_accuracy {result.stage1.get('val_accuracy', float('nan')):.3f}, "
               f"stage 2 {result.stage2.get('val_accuracy', float('nan')):.3f}, kept stage {result.best_stage}")

    from tfl.serving.evaluation import format_metrics

    click.echo(format_metrics(tfl.evaluate(result.run_dir)))

    samples = _save_samples(tfl.load_data(data), os.path.join(result.run_dir, "samples"))
    click.echo("\n[quickstart] predictions on a few validation images (true label in the file name):")
    for r in tfl.predict(result.run_dir, samples):
        click.echo(f"  {os.path.basename(r['path']):<22} -> {r['label']:<10} {r['probability']:.3f}")
    click.echo(f"[quickstart] done; run folder: {result.run_dir}  (try: tfl info {result.run_dir})")


def _save_samples(data, folder, n=6):
    """Writes the first `n` validation images as JPEG files named after their true label."""
    import tensorflow as tf

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, (image, label) in enumerate(data.val.raw().take(n)):
        path = os.path.join(folder, f"{i}_{data.class_names[int(label)]}.jpg")
        tf.io.write_file(path, tf.io.encode_jpeg(tf.cast(image, tf.uint8)))
        paths.append(path)
    return paths


if __name__ == "__main__":
    main()
