"""EXIF orientation: a phone photo stored sideways with an Orientation tag is seen upright everywhere.

`tfl.data.loading.decode_image` applies the tag with graph ops, so training, `tfl predict` and the exported
SavedModel (called from a process that has only TensorFlow) all see the photo as a viewer shows it: a tagged
photo gets the same prediction as the same photo stored upright.
"""

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import run_tfl
from PIL import Image, ImageOps

# PIL's names for what each orientation asks a viewer to do (ImageOps.exif_transpose's table).
TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}


def exif_segment(orientation, big_endian=False, tag_type=3):
    """An EXIF payload (for PIL's `exif=`) with IFD0 holding Make and Orientation, in either byte order."""
    order, mark = (">", b"MM") if big_endian else ("<", b"II")
    entries = [struct.pack(order + "HHI4s", 0x010F, 2, 4, b"tfl\x00"),
               struct.pack(order + "HHI", 0x0112, tag_type, 1)
               + (struct.pack(order + "HH", orientation, 0) if tag_type == 3
                  else struct.pack(order + "I", orientation))]
    ifd = struct.pack(order + "H", len(entries)) + b"".join(entries) + struct.pack(order + "I", 0)
    return b"Exif\x00\x00" + mark + struct.pack(order + "HI", 42, 8) + ifd


def jpeg(pixels, exif=None, **options):
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95, **({"exif": exif} if exif else {}), **options)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo(hymenoptera):
    """A real photo, not square (so a wrong turn shows in the shape), as uint8 RGB."""
    folder = os.path.join(hymenoptera, "train", "bees")
    for name in sorted(os.listdir(folder)):
        image = np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"))
        if abs(image.shape[0] - image.shape[1]) > 20:
            return image
    raise AssertionError("no oblong photo")


@pytest.mark.parametrize("big_endian", [False, True], ids=["II", "MM"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_image_turns_each_orientation_as_a_viewer_does(photo, orientation, big_endian):
    import tensorflow as tf

    from tfl.data.loading import decode_image
    from tfl.data.orientation import exif_orientation

    tagged = jpeg(photo, exif_segment(orientation, big_endian), icc_profile=b"\0" * 3000)  # APP2 beside APP1
    plain = jpeg(photo)  # the same pixels, no EXIF: the same JPEG data, so the same decoded pixels
    assert int(exif_orientation(tf.constant(tagged))) == orientation
    stored = decode_image(tf.constant(plain)).numpy()
    shown = Image.fromarray(stored)
    if orientation > 1:
        shown = shown.transpose(TRANSPOSE[orientation])
    np.testing.assert_array_equal(decode_image(tf.constant(tagged)).numpy(), np.asarray(shown))
    # And Pillow, decoding on its own, agrees up to its JPEG decoder's rounding.
    viewer = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(tagged))).convert("RGB"), np.float32)
    assert viewer.shape == np.asarray(shown).shape
    assert np.abs(viewer - np.asarray(shown, np.float32)).mean() < 3


def test_orientation_inside_tf_data_and_a_graph_function(photo):
    """The pipeline and the SavedModel run decode_image in graph mode (tf.data map, tf.map_fn)."""
    import tensorflow as tf

    from tfl.serving.saved_model import decode_batch

    files = [jpeg(photo, exif_segment(6)), jpeg(photo)]
    batch = tf.function(lambda b: decode_batch(b, 64))(tf.constant(files)).numpy()
    expected = tf.function(lambda b: decode_batch(b, 64))(tf.constant(
        [jpeg(np.rot90(photo, -1).copy()), jpeg(photo)])).numpy()
    assert np.abs(batch[1] - expected[1]).max() == 0
    assert np.abs(batch[0] - expected[0]).mean() < 3  # re-encoded turned pixels: JPEG rounding only
    assert np.abs(batch[0] - batch[1]).mean() > 20  # and the turn is not a no-op


@pytest.mark.parametrize("case", ["png", "no_exif", "empty", "value_9", "type_long", "cut_in_exif",
                                  "exif_text_in_a_comment", "garbage"])
def test_anything_else_is_left_as_stored(photo, case):
    import tensorflow as tf

    from tfl.data.orientation import exif_orientation

    if case == "png":
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, "PNG")
        data = buf.getvalue()
    elif case == "no_exif":
        data = jpeg(photo)
    elif case == "empty":
        data = b""
    elif case == "value_9":
        data = jpeg(photo, exif_segment(9))
    elif case == "type_long":
        data = jpeg(photo, exif_segment(6, tag_type=4))
    elif case == "cut_in_exif":
        data = jpeg(photo, exif_segment(6))[:40]
    elif case == "exif_text_in_a_comment":
        data = jpeg(photo, comment=b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03")
    else:
        data = bytes(range(256)) * 8
    assert int(exif_orientation(tf.constant(data))) == 1


@pytest.fixture(scope="module")
def run_and_photos(tmp_path_factory, hymenoptera):
    """A small real run (MobileNet 0.25, ImageNet weights, 96 px) and three versions of one val photo."""
    root = tmp_path_factory.mktemp("orient")
    data = root / "data"
    for cls in ("ants", "bees"):
        names = sorted(os.listdir(os.path.join(hymenoptera, "train", cls)))[:24]
        for split, part in (("train", names[:16]), ("val", names[16:])):
            os.makedirs(data / split / cls)
            for n in part:
                shutil.copy(os.path.join(hymenoptera, "train", cls, n), data / split / cls / n)
    run = str(root / "run")
    run_tfl("train", "--data", f"folder:{data}", "--image-size", "96", "--epochs", "3", "--fine-tune-epochs", "0",
            "--batch-size", "8", "--out", run)

    import tensorflow as tf

    from tfl.data.loading import decode_image

    source = os.path.join(hymenoptera, "val", "ants", sorted(os.listdir(os.path.join(hymenoptera, "val", "ants")))[0])
    upright = np.asarray(Image.open(source).convert("RGB"))
    photos = root / "photos"
    os.makedirs(photos)
    # The phone's file: pixels stored turned 90 degrees counter-clockwise, tag 6 ("turn 90 clockwise to view").
    (photos / "tagged.jpg").write_bytes(jpeg(np.rot90(upright, 1).copy(), exif_segment(6)))
    stored = decode_image(tf.constant(jpeg(np.rot90(upright, 1).copy()))).numpy()
    # The same photo stored upright (lossless, the very pixels of the tagged file turned), and as stored.
    Image.fromarray(np.rot90(stored, -1).copy()).save(photos / "upright.png")
    Image.fromarray(stored).save(photos / "sideways.png")
    return run, {n: str(photos / n) for n in ("tagged.jpg", "upright.png", "sideways.png")}


def cli(*args):
    """The real `tfl` command line, in this process (TensorFlow is loaded here already)."""
    from click.testing import CliRunner

    from tfl.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def predicted(run_and_photos):
    """`tfl predict --json` of the three versions: file name -> probabilities (ants, bees)."""
    run, photos = run_and_photos
    return {os.path.basename(r["path"]): np.array([r["probabilities"][c] for c in ("ants", "bees")])
            for r in json.loads(cli("predict", run, *photos.values(), "--json"))}


def test_tfl_predict_gives_a_tagged_photo_the_prediction_of_its_upright_copy(predicted):
    np.testing.assert_allclose(predicted["tagged.jpg"], predicted["upright.png"], atol=1e-5, rtol=0)
    # The test can fail: read sideways (the tag ignored, as tfl did before), the prediction moves.
    assert np.abs(predicted["sideways.png"] - predicted["upright.png"]).max() > 1e-3


def test_saved_model_in_a_tensorflow_only_process_sees_the_photo_upright(run_and_photos, predicted, tmp_path):
    run, photos = run_and_photos
    cli("export", run, "--out", tmp_path / "exports", "--name", "ants")
    script = textwrap.dedent("""
        import json, sys
        import tensorflow as tf
        model = tf.saved_model.load(sys.argv[1])
        data = [open(p, "rb").read() for p in sys.argv[2:]]
        out = model.signatures["serving_default"](image_bytes=tf.constant(data))
        print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                          "tfl_imported": any(m == "tfl" or m.startswith("tfl.") for m in sys.modules)}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "exports" / "ants" / "1"), *photos.values()],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert served["tfl_imported"] is False
    probs = dict(zip(photos, np.array(served["probabilities"])))
    np.testing.assert_allclose(probs["tagged.jpg"], probs["upright.png"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(probs["tagged.jpg"], predicted["tagged.jpg"], atol=1e-4, rtol=0)
    assert np.abs(probs["sideways.png"] - probs["upright.png"]).max() > 1e-3
