"""The TensorFlow decode check: every image decoded as training will, in a helper process.

libjpeg reports damaged data (a smeared picture that still decodes) only as
log lines on the process's stderr, so the decode runs in a helper process
whose stderr is read per file; `decode_session` keeps one helper for a whole
data load. Used by `tfl.data.images.inspect_files`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import sys
import threading
import typing

# libjpeg's warnings that mean the image data is damaged (the pixels from there on are made up).
# Its other warnings (an unknown JFIF version, a bad ICC profile, a missing end marker after
# complete data) leave the pixels intact.
_DAMAGE = re.compile(r"Corrupt JPEG data: (?!bad ICC marker)|Invalid SOS parameters|Inconsistent progression")
# TensorFlow's own log lines ("E0000 00:00:17... jpeg_mem.cc:331] ...") and absl's first-line notice.
_TF_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl)")
_DECODE_LOCK = threading.RLock()
_helper = None  # the helper process (see _Helper), started on first use


def decode_problems(paths: typing.Sequence[str]) -> typing.Dict[str, str]:
    """Decodes each file with TensorFlow, as training will, and says which it cannot use.

    A file fails when TensorFlow cannot decode it (what Pillow opens,
    TensorFlow does not always: 8-bit BMPs, for one) or when libjpeg, while
    decoding it, reports damaged data ("Corrupt JPEG data: premature end of
    data segment", "... N extraneous bytes before marker", "bad Huffman
    code"): the image decodes, but smeared from the damage on. libjpeg only
    prints these to stderr, so each file is decoded alone with the process's
    stderr sent to a file. JPEGs are decoded at 1/8 scale (the same data is
    read, the inverse transform is 64 times smaller).

    In a process that has not loaded TensorFlow (`tfl check`), the decoding
    runs in a helper process (one per process, started on first use), so
    the check itself stays small.

    Returns:
        path -> reason, for the files that cannot be used.
    """
    if not paths:
        return {}
    if "tensorflow" in sys.modules:
        return _decode_here(paths)
    global _helper
    with _DECODE_LOCK:
        start_helper()
        try:
            return _helper.decode(paths)
        except (OSError, ValueError) as e:
            _helper = None
            from tfl._logging import log

            log.info(f"warning: the decode check did not run ({e}): damaged JPEGs may go unnoticed")
            return {}
        except BaseException:  # Ctrl-C: the helper stops now, not after its files
            _helper.kill()
            _helper = None
            raise


@contextlib.contextmanager
def decode_session():
    """A block whose `decode_problems` calls share one helper process, which ends with the block.

    Loading a dataset checks its splits one after the other; TensorFlow starts
    once for all of them, and no helper (it holds TensorFlow's memory) outlives
    the loading in a long Python session.
    """
    global _helper
    with _DECODE_LOCK:
        outer = _helper is not None
    finished = False
    try:
        yield
        finished = True
    finally:
        if not outer:
            with _DECODE_LOCK:
                helper, _helper = _helper, None
            if helper is not None:
                helper.close() if finished else helper.kill()  # on Ctrl-C or an error: at once


def start_helper() -> None:
    global _helper
    with _DECODE_LOCK:
        if _helper is None and "tensorflow" not in sys.modules:
            _helper = _Helper()


def _decode_here(paths: typing.Sequence[str]) -> typing.Dict[str, str]:
    """`decode_problems` in this process: files decoded in parallel, libjpeg's stderr sent to a file.

    Who said what is known only when one file is decoded at a time, so a chunk
    is decoded in parallel and, in the rare chunk where libjpeg complained,
    decoded again one file at a time.
    """
    import tempfile

    import tensorflow as tf

    def decode(path):
        try:
            with open(path, "rb") as f:
                contents = f.read()
            if contents[:2] == b"\xff\xd8":
                tf.io.decode_jpeg(contents, channels=3, ratio=8)
            else:
                tf.io.decode_image(contents, channels=3, expand_animations=False)
        except tf.errors.OpError as e:
            return _op_error(e.message)
        except OSError as e:
            return e.strerror or str(e)
        return None

    out: typing.Dict[str, str] = {}
    threads = max(1, min(4, os.cpu_count() or 1))
    with _DECODE_LOCK, tempfile.TemporaryFile() as capture, \
            concurrent.futures.ThreadPoolExecutor(threads) as pool:
        fd = capture.fileno()

        def said_since(start: int) -> typing.List[str]:
            text = os.pread(fd, os.fstat(fd).st_size - start, start).decode("utf-8", "replace")
            return [line.strip() for line in text.splitlines() if _DAMAGE.search(line) and not _TF_LOG.match(line)]

        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(fd, 2)
        try:
            for i in range(0, len(paths), 64):
                chunk = paths[i:i + 64]
                start = os.fstat(fd).st_size
                errors = list(pool.map(decode, chunk))
                if said_since(start):  # someone here is damaged: one at a time, to know who
                    errors, damage = [], []
                    for path in chunk:
                        start = os.fstat(fd).st_size
                        errors.append(decode(path))
                        damage.append(said_since(start))
                else:
                    damage = [[]] * len(chunk)
                for path, error, said in zip(chunk, errors, damage):
                    if said:
                        out[path] = (f"damaged JPEG (libjpeg: {said[0]}): it decodes to smeared garbage from the "
                                     "damage on; copy it again from the original or remove it")
                    elif error:
                        out[path] = (f"TensorFlow, which training uses, cannot decode it ({error}): "
                                     "convert it to JPEG or PNG")
        finally:
            # What else reached stderr meanwhile is the decoders' own chatter: nothing else runs now.
            os.dup2(saved, 2)
            os.close(saved)
    return out


def _op_error(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    text = lines[0] if lines else message
    return re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text).split(" [Op:")[0]


class _Helper:
    """A child process that runs `_decode_here` (it imports TensorFlow, so the caller does not)."""

    def __init__(self):
        import subprocess

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tfl.data._decode_check import _helper_main; _helper_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        import atexit

        atexit.register(self.close)

    def decode(self, paths) -> typing.Dict[str, str]:
        import json

        self.proc.stdin.write((json.dumps(list(paths)) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise OSError(f"its helper process ended with status {self.proc.returncode}")
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        import subprocess

        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def _helper_main() -> None:
    """The helper process: a JSON list of paths per line in, a JSON object of problems per line out."""
    import json

    reply = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # whatever TensorFlow prints stays out of the replies
    import tensorflow as tf  # noqa: F401 - loaded once, before the first request

    for line in sys.stdin:
        reply.write(json.dumps(_decode_here(json.loads(line))) + "\n")
        reply.flush()
