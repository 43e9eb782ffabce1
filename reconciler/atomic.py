"""Writing a local file atomically, with local I/O errors as one line."""

from __future__ import annotations

import contextlib
import os
import tempfile

from reconciler.errors import ReconcilerError


def write_atomic(path: str, text: str, prefix: str = ".reconciler-") -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename:
    a crash never leaves a half-written file. A local I/O error (a parent that is a file,
    a read-only directory, a full disk) is one line naming the path, and the temporary file
    is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        # makedirs meeting a regular file where a directory should be says "File exists"
        why = "Not a directory" if isinstance(exc, FileExistsError) else exc.strerror or exc
        raise ReconcilerError(f"{path}: cannot write it ({why})") from None
