"""``VisionkitError``: the one base of errors caused by user input, and the one-line handler for them.

Every error that names a bad input (a file, a config value, a model name) derives from
:class:`VisionkitError`; the ``visionkit`` CLI and the scripts catch it with
:func:`exit_on_user_error` and print ``<prog>: error: <message>`` on one line, exit code 2.
Set ``VISIONKIT_DEBUG=1`` to get the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any


class VisionkitError(Exception):
    """A bad input, named in a one-line message that says what was expected."""


class ConfigValueError(VisionkitError, ValueError):
    """A configured value that a task, datamodule or callback rejected while being built."""


def check_choice(name: str, value: Any, choices: Sequence[Any], error: type[Exception] = ValueError) -> None:
    """Raise ``error("<name> must be 'a', 'b' or 'c', got 'x'")`` unless ``value`` is one of ``choices``."""
    if value in choices:
        return
    quoted = [f"'{c}'" for c in choices]
    options = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    raise error(f"{name} must be {options}, got '{value}'")


def worker_message(text: str) -> str:
    """The original message in a DataLoader's re-raise text ("Caught X in DataLoader worker process 0.
    Original Traceback ...", whose last line is ``module.X: message``): that message, on one line."""
    last = text.strip().splitlines()[-1] if text.strip() else text
    return re.sub(r"^[\w.]+: ", "", last, count=1)


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
