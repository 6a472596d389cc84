"""``VisionkitError``: the one base of errors caused by user input, and the one-line handler for them.

Every error that names a bad input (a file, a config value, a model name) derives from
:class:`VisionkitError`; the ``visionkit`` CLI and the scripts catch it with
:func:`exit_on_user_error` and print ``<prog>: error: <message>`` on one line, exit code 2.
Set ``VISIONKIT_DEBUG=1`` to get the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


class VisionkitError(Exception):
    """A bad input, named in a one-line message that says what was expected."""


class ConfigValueError(VisionkitError, ValueError):
    """A configured value that a task, datamodule or callback rejected while being built."""


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (its type's name when it has none)."""
    text = " ".join(str(err).split()) if str(err) else type(err).__name__
    return text


@contextlib.contextmanager
def exit_on_user_error(prog: str, extra: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn a :class:`VisionkitError` (or one of ``extra``) into ``<prog>: error: ...`` and exit 2."""
    try:
        yield
    except (VisionkitError, *extra) as err:
        if os.environ.get("VISIONKIT_DEBUG"):
            raise
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
