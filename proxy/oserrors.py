"""OS errors said in words, for messages a user reads.

``str(OSError)`` is ``[Errno 13] Permission denied: '/x/.tmp-3f2a'``: an
errno number and, often, the path of a temporary file the user never named.
``reason`` gives the why in plain words; the caller says which file or
directory it was and what to do.
"""

from __future__ import annotations

import errno
import os

__all__ = ["reason"]

_WORDS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.ENOENT: "it or a parent directory does not exist",
    errno.ENOTDIR: "a parent in the path is a file, not a directory",
    errno.EISDIR: "it is a directory, not a file",
    errno.EEXIST: "something else is already there",
    errno.ELOOP: "too many symbolic links",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EFBIG: "the file is too large",
    errno.EIO: "an input/output error on the device",
}


def reason(e: OSError) -> str:
    """Why ``e`` happened, in lower-case words and without paths or errno numbers."""
    if e.errno in _WORDS:
        return _WORDS[e.errno]
    if e.errno is not None:
        return os.strerror(e.errno).lower()
    return str(e) or type(e).__name__
