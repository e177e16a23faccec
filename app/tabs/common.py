"""What the tabs share: the context every handler needs, and errors shown as messages instead of tracebacks."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
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


def user_errors(fn: Callable) -> Callable:
    """Turn `StudioError` (and the core's ValueErrors) into a visible gr.Error; the session is unchanged."""

    def shown(err: ValueError) -> gr.Error:
        if not isinstance(err, StudioError):  # the core's errors say what to do; show them verbatim
            logger.info("user error: %s", err)
        return gr.Error(str(err), duration=None)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ValueError as err:
                raise shown(err) from err

        return stream

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as err:
            raise shown(err) from err

    return wrapper
