"""The project bar above the tabs: which project this browser works in, its share link, and reopening one.

A project opens with its id and its secret key: the browser that made it keeps both (`gr.BrowserState`, encrypted)
and reopens it by itself on the next visit; a share link (`?project=<id>&key=<key>`) opens it in another browser.
On the default 127.0.0.1 (one machine, one user) any project on disk can be picked from a list by its id alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import gradio as gr
from gradio.components import Component

from app.projects import list_projects
from app.sessions import Session
from app.steps import project as step
from app.tabs.common import StudioContext, Updates


@dataclass
class ProjectBar:
    summary: gr.Markdown
    reopen_id: gr.Dropdown  # a project id or share link typed in; on a local studio also a list of projects
    reopen: gr.Button
    last_project: gr.BrowserState  # {"id", "key"} of the project this browser works in

    def outputs(self) -> list[Component]:
        """What `view` sets."""
        return [self.summary, self.last_project, self.reopen_id]

    def view(self, ctx: StudioContext, session: Session) -> Updates:
        project = session.project
        text = step.project_summary(session)
        saved: dict[str, str] | str = ""
        if project is not None:
            saved = {"id": project.project_id}
            if project.key:
                saved["key"] = project.key
                text += (
                    f"\n\n[Share link](?project={project.project_id}&key={project.key}): opens this project in "
                    "another browser (anyone with the link can)."
                )
        return {self.summary: text, self.last_project: saved, self.reopen_id: self.choices(ctx, project)}

    def choices(self, ctx: StudioContext, project: Any = None) -> gr.Dropdown:
        """On a local studio, every project on disk; on a shared one, none (ids alone do not open projects)."""
        settings = ctx.engines.settings
        projects = [] if settings.shared else list_projects(settings.projects_dir)
        value = project.project_id if project is not None else None
        return gr.Dropdown(projects, value=value)


def build_project_bar(ctx: StudioContext, secret: str) -> ProjectBar:
    shared = ctx.engines.settings.shared
    with gr.Accordion("Project", open=False):
        summary = gr.Markdown("No project yet: upload a video or pick a sample to start one.", elem_id="project-md")
        with gr.Row():
            reopen_id = gr.Dropdown(
                [],
                value=None,
                allow_custom_value=True,
                label="Project link to reopen" if shared else "Project to reopen (a link, an id, or pick one)",
                info="Paste a share link" if shared else None,
                elem_id="reopen-id",
                scale=4,
            )
            reopen = gr.Button("Reopen project", elem_id="reopen", scale=1)
    # Outside the accordion so it is mounted (and saved) while the accordion is closed; a secret kept in the
    # projects folder lets the browser's value survive a server restart.
    last_project = gr.BrowserState("", storage_key="mvideo-last-project", secret=secret)
    return ProjectBar(summary, reopen_id, reopen, last_project)


def parse_reference(text: Any) -> tuple[str, str | None]:
    """(project id, key or None) from an id, a share link (`...?project=<id>&key=<key>`), or a saved
    {"id", "key"}."""
    if isinstance(text, dict):
        return str(text.get("id") or ""), text.get("key") or None
    text = str(text or "").strip()
    if "project=" in text:
        query = parse_qs(urlparse(text if "://" in text or text.startswith("?") else "?" + text).query)
        return (query.get("project") or [""])[0], (query.get("key") or [None])[0]
    return text, None
