"""The studio page: a project bar and four tabs (Video, Masks, Edit, Generate), each built and wired by its module.

Handlers look up the caller's server-side `Session` by `request.session_hash`; `gr.State` is not used for heavy
objects. A failed action answers with a message and leaves every component usable. The project folder is the one
source of truth: the page opens the browser's last project by itself, with every tab as it was, and follows its
running generation.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import gradio as gr

from app.engines import Engines, gpu_function
from app.jobs import JobRunner, worker_generators
from app.sessions import Session, SessionStore
from app.steps import project as project_step
from app.steps.common import StudioError
from app.steps.project import engines_banner
from app.tabs.common import StudioContext, Updates, user_errors
from app.tabs.edit import build_edit_tab, wire_edit_tab
from app.tabs.generate import attach, build_generate_tab, wire_generate_tab
from app.tabs.masks import build_masks_tab, wire_masks_tab
from app.tabs.project import build_project_bar, parse_reference
from app.tabs.video import build_video_tab, wire_video_tab

SECRET_FILE = ".browser-secret"  # inside the projects folder, never served (blocked_paths)
CACHE_SWEEP = (3600, 6 * 3600)  # Gradio's upload/output cache: every hour, delete files older than 6 hours

# Gradio's own refusals (an upload over --max-upload-mb, refused in the browser before it is sent) leave that component
# in its error state, a red badge over it that swallows clicks. The toast already says what was wrong, so the badge is
# cleared at once and the component stays usable. (The studio's handlers never raise: they answer with a message.)
CLEAR_ERROR_BADGES = """
() => {
  const clear = () => document.querySelectorAll('[data-testid="status-tracker"] .error').forEach((badge) => {
    badge.closest('[data-testid="status-tracker"]')?.querySelector('.clear-status button')?.click();
  });
  new MutationObserver(clear).observe(document.body, {childList: true, subtree: true});
}
"""

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
        "js": CLEAR_ERROR_BADGES,
        "theme": gr.themes.Soft(),
        "show_error": True,
    }


def browser_secret(projects_dir: Path) -> str:
    """The key that encrypts what the browser keeps (its project's id and key); stable across restarts."""
    path = projects_dir / SECRET_FILE
    if not path.exists():
        projects_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def build_studio(engines: Engines) -> gr.Blocks:
    """The whole page. Sessions are freed when their tab closes or after `settings.session_timeout` idle seconds
    (their projects stay on disk); generation jobs belong to projects and outlive both."""
    settings = engines.settings
    ctx = StudioContext(engines, SessionStore(idle_timeout=settings.session_timeout))
    jobs = JobRunner({c.name: worker_generators(c.generator, settings.concurrency) for c in engines.offered()})
    with gr.Blocks(title="MVideo Studio", delete_cache=CACHE_SWEEP) as demo:
        demo.store, demo.jobs = ctx.store, jobs  # for tests and benchmarks
        gr.Markdown("# MVideo Studio\nDirect the motion of a generated video with the masks of your subjects.")
        if settings.tiny_random:
            gr.Markdown(
                "DEMO MODE (`--tiny-random`): tiny random-weight models on CPU. Every generated video is NOISE; "
                "the flow is real.",
                elem_id="demo-banner",
            )
        gr.Markdown(engines_banner(engines), elem_id="tracker-banner")
        bar = build_project_bar(ctx, browser_secret(settings.projects_dir))
        with gr.Tabs():
            with gr.Tab("1 · Video", id="video"):
                video = build_video_tab(ctx)
            with gr.Tab("2 · Masks", id="masks"):
                masks = build_masks_tab(ctx)
            with gr.Tab("3 · Edit", id="edit"):
                edit = build_edit_tab(ctx)
            with gr.Tab("4 · Generate", id="generate") as generate_tab:
                generate = build_generate_tab(ctx)

        def loaded(session: Session) -> Updates:
            """A new video: the masks tab starts over, the edit tab says whether its recipe fits the new masks, the
            project bar names the (new) project."""
            return {**masks.view(ctx, session), **edit.view(ctx, session), **bar.view(ctx, session)}

        whole_page = [
            *bar.outputs(),
            *video.outputs(),
            *masks.outputs(),
            *edit.outputs(),
            *generate.outputs(),
        ]

        def reopened(session: Session, result: project_step.Reopened) -> Updates:
            """Every tab as the reopened project holds it; what could not be restored is said, not hidden."""
            for note in result.notes:
                gr.Warning(f"Reopened, but {note}", duration=None)
            return {
                **bar.view(ctx, session),
                **video.view(session, result.info),
                **masks.view(ctx, session),
                **edit.view(ctx, session),
                **generate.view(ctx, session, jobs),
            }

        reopen = gpu_function()(project_step.reopen_project)  # restoring objects runs the tracker on their prompts

        @user_errors
        def on_reopen(reference: Any, request: gr.Request) -> Updates:
            session = ctx.session(request)
            project_id, key = parse_reference(reference)
            return reopened(session, reopen(engines, session, project_id, key))

        @user_errors
        def on_load(saved: Any, request: gr.Request) -> Updates:
            """A new page (or a reload): the project of the link, else this browser's last one, opens by itself."""
            session = ctx.session(request)
            params = dict(request.query_params)
            link = {"id": params["project"], "key": params.get("key")} if params.get("project") else None
            project_id, key = parse_reference(link or saved)
            if not project_id:
                return {bar.reopen_id: bar.choices(ctx)}
            try:
                result = reopen(engines, session, project_id, key)
            except StudioError as err:  # the project stays on disk and in this browser's memory
                gr.Warning(f"Your last project did not reopen: {err}", duration=None)
                return {bar.reopen_id: bar.choices(ctx)}
            return reopened(session, result)

        follow = attach(ctx, generate, jobs)
        live = [generate.progress, generate.stream, generate.gallery, generate.files]
        bar.reopen.click(on_reopen, [bar.reopen_id], whole_page).then(follow, None, live, concurrency_limit=None)
        demo.load(on_load, [bar.last_project], whole_page).then(follow, None, live, concurrency_limit=None)

        wire_video_tab(ctx, video, loaded, [*masks.outputs(), *edit.outputs(), *bar.outputs()])
        wire_masks_tab(ctx, masks)
        wire_edit_tab(ctx, edit)
        wire_generate_tab(ctx, generate, jobs, generate_tab.select)

        def cleanup(request: gr.Request) -> None:
            ctx.store.free(request.session_hash)

        demo.unload(cleanup)
    return demo
