"""The studio page: a project bar and four tabs (Video, Masks, Edit, Generate), each built and wired by its module.

Handlers look up the caller's server-side `Session` by `request.session_hash`; `gr.State` is not used for heavy
objects. A `StudioError` from a step becomes a message and the session stays as it was.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import gradio as gr

from app.engines import Engines
from app.sessions import Session, SessionStore
from app.steps.project import engines_banner
from app.tabs.common import StudioContext, Updates
from app.tabs.edit import build_edit_tab, wire_edit_tab
from app.tabs.generate import build_generate_tab, wire_generate_tab
from app.tabs.masks import build_masks_tab, wire_masks_tab
from app.tabs.project import build_project_bar, wire_project_bar
from app.tabs.video import build_video_tab, wire_video_tab

SECRET_FILE = ".browser-secret"  # inside the projects folder, never served (blocked_paths)

CSS = """
#tracker-banner {font-size: 0.9em; border-left: 4px solid #888; padding-left: 8px}
#demo-banner {background: #fff3cd; color: #5c4400; padding: 6px 10px; border-radius: 6px}
"""


def launch_kwargs(engines: Engines) -> dict[str, Any]:
    """Arguments of `demo.launch`: bind address, upload limit, and only the projects folder served."""
    s = engines.settings
    return {
        "server_name": s.host,
        "server_port": s.port,
        "share": s.share,
        "max_file_size": int(s.max_upload_mb * 2**20),  # Gradio refuses bigger uploads before they land
        "allowed_paths": [str(s.projects_dir.resolve())],
        "blocked_paths": [str((s.projects_dir / SECRET_FILE).resolve())],
        "css": CSS,
        "theme": gr.themes.Soft(),
        "show_error": True,
    }


def browser_secret(projects_dir: Path) -> str:
    """The key that encrypts the project id kept in the browser; stable across restarts of this studio."""
    path = projects_dir / SECRET_FILE
    if not path.exists():
        projects_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def build_studio(engines: Engines) -> gr.Blocks:
    """The whole page. One `SessionStore` per page; sessions are freed when their browser tab closes."""
    ctx = StudioContext(engines, SessionStore())
    with gr.Blocks(title="MVideo Studio") as demo:
        demo.store = ctx.store  # for tests and benchmarks
        gr.Markdown("# MVideo Studio\nDirect the motion of a generated video with the masks of your subjects.")
        if engines.settings.tiny_random:
            gr.Markdown(
                "DEMO MODE (`--tiny-random`): tiny random-weight models on CPU. Every generated video is NOISE; "
                "the flow is real.",
                elem_id="demo-banner",
            )
        gr.Markdown(engines_banner(engines), elem_id="tracker-banner")
        bar = build_project_bar(ctx, browser_secret(engines.settings.projects_dir))
        with gr.Tabs():
            with gr.Tab("1 · Video", id="video"):
                video = build_video_tab(ctx)
            with gr.Tab("2 · Masks", id="masks"):
                masks = build_masks_tab(ctx)
            with gr.Tab("3 · Edit", id="edit"):
                edit = build_edit_tab(ctx)
            with gr.Tab("4 · Generate", id="generate"):
                generate = build_generate_tab(ctx)

        def loaded(session: Session) -> Updates:
            """A new video: the masks tab starts over; the project bar names the (new) project."""
            return {**masks.view(ctx, session), **bar.view(session)}

        def reopened(session: Session, info: str | None) -> Updates:
            has_video = session.frames is not None
            return {
                video.info: info or "This project has no video yet: upload one or pick a sample.",
                video.first_frame: session.frames[0] if session.frames is not None and has_video else None,
                **masks.view(ctx, session),
            }

        wire_video_tab(ctx, video, loaded, [*masks.outputs(), *bar.outputs()])
        wire_project_bar(ctx, bar, demo, reopened, [*video.outputs(), *masks.outputs()])
        wire_masks_tab(ctx, masks)
        wire_edit_tab(ctx, edit)
        wire_generate_tab(ctx, generate)

        def cleanup(request: gr.Request) -> None:
            ctx.store.free(request.session_hash)

        demo.unload(cleanup)
    return demo
