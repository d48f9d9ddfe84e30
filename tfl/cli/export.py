"""`tfl export` (SavedModel for TF Serving, TFLite)."""

from __future__ import annotations

import dataclasses

import click

from tfl.cli._common import echo_json, main, option, quiet_tf
from tfl.serving.tflite import MODES as TFLITE_MODES


@main.command(short_help="Export a run as a SavedModel for TF Serving (and TFLite).")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@option("--out", default="exports", type=click.Path(file_okay=False),
              help="Export base folder: the model goes to OUT/<name>/<version>/ (TF Serving's layout).")
@option("--name", default_text="the run folder's name", help="Model name: the folder under OUT.")
@option("--version", "version", type=int, default_text="one more than the latest under OUT/<name>",
        help="Integer version folder.")
@option("--tflite", multiple=True, type=click.Choice(TFLITE_MODES), default_text="none",
              help="Also write a TFLite model of the tensor signature: float32, float16 or dynamic "
                   "(dynamic-range quantised); repeat for several.")
@option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default_text="each label's own threshold, chosen on validation when the run ended",
        help="Multi-label models: probability from which every label is reported.")
@option("--data", metavar="SOURCE", default_text="the run's own data",
        help="Data source of the validation images the export is verified on.")
@option("--verify-images", type=click.IntRange(1), default=8,
              help="Validation images the reloaded SavedModel is checked on.")
@option("--json", "as_json", is_flag=True, help="Print what was written and verified as JSON.")
def export(run, out, name, version, tflite, threshold, data, verify_images, as_json):
    """Export a run as a SavedModel that takes image file bytes, verified against Keras.

    Signatures: serving_default (image_bytes: encoded JPEG/PNG/GIF/BMP),
    predict_images (float32 RGB 0..255) and predict_images_uint8; outputs
    probabilities, label, label_id (multi-label models also label_mask and
    labels, at each label's threshold). labels.txt and tfl_export.json sit
    beside saved_model.pb.

    \b
    Example:
      tfl export runs/ants --out exports --tflite float16
      tfl predict exports/ants photo.jpg
    """
    quiet_tf()
    from tfl.serving.export import export as export_run

    result = export_run(run, out, name=name, version=version, tflite=tflite, threshold=threshold, data=data,
                        verify_images=verify_images)
    if as_json:
        echo_json(dataclasses.asdict(result))
        return
    v = result.verification
    click.echo(f"exported {result.name} version {result.version}: {result.path}")
    click.echo(f"verified on {v['num_images']} validation images: max |SavedModel - Keras| "
               + ", ".join(f"{k} {d:.1e}" for k, d in v["max_abs_diff"].items()))
    for mode, t in result.tflite.items():
        click.echo(f"tflite {mode}: {t['file']} ({t['bytes'] / 1e6:.1f} MB), val accuracy {t['accuracy']:.4f} "
                   f"(Keras {t['keras_accuracy']:.4f}) on {t['num_images']} images, "
                   f"same top class {t['agreement']:.1%}, max |diff| {t['max_abs_diff']:.1e}")
