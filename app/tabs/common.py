"""What the tabs share: the context every handler needs, and errors shown as messages instead of tracebacks."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.components import Component

from app.engines import Engines
from app.sessions import Session, SessionStore
from app.steps.common import StudioError

logger = logging.getLogger(__name__)

Updates = dict[Component, Any]  # what a handler returns: new values or gr.update(...)s keyed by component


@dataclass
class StudioContext:
    """The engines and the sessions of one page."""

    engines: Engines
    store: SessionStore

    def session(self, request: gr.Request) -> Session:
        return self.store.get(request.session_hash)


def user_errors(fn: Callable | None = None, *, clear: Sequence[Component] = ()) -> Callable:
    """Answer a failed action with a message while every component stays as it was and usable.

    A `StudioError` (or the core's ValueError) says what was wrong and what to do; anything else is logged with its
    traceback and named in the message. No exception reaches Gradio, so no output is left in an error state.
    `clear` names inputs to empty on failure (a refused file, so another can be dropped straight away).
    """
    if fn is None:
        return functools.partial(user_errors, clear=clear)

    def answer(err: Exception) -> Updates | dict:
        if isinstance(err, ValueError):
            if not isinstance(err, StudioError):  # the core's errors say what to do; show them verbatim
                logger.info("user error: %s", err)
            message = str(err)
        else:
            logger.exception("%s failed", fn.__name__)
            message = (
                f"That did not work ({type(err).__name__}: {err}). Your project is kept; the details are in the "
                "server log."
            )
        gr.Warning(message, duration=None)
        return {c: None for c in clear} if clear else gr.skip()

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - see the docstring
                yield answer(err)

        return stream

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - see the docstring
            return answer(err)

    return wrapper
