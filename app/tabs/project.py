"""The project bar above the tabs: which project this browser works in, and reopening one by its id."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from gradio.components import Component

from app.sessions import Session
from app.steps import project as step
from app.tabs.common import StudioContext, Updates, user_errors


@dataclass
class ProjectBar:
    summary: gr.Markdown
    reopen_id: gr.Textbox
    reopen: gr.Button
    last_project: gr.BrowserState  # the id this browser last worked on (encrypted in the browser's storage)

    def outputs(self) -> list[Component]:
        """What `view` sets."""
        return [self.summary, self.last_project]

    def view(self, session: Session) -> Updates:
        project_id = session.project.project_id if session.project is not None else ""
        return {self.summary: step.project_summary(session), self.last_project: project_id}


def build_project_bar(ctx: StudioContext, secret: str) -> ProjectBar:
    with gr.Accordion("Project", open=False):
        summary = gr.Markdown("No project yet: upload a video or pick a sample to start one.", elem_id="project-md")
        with gr.Row():
            reopen_id = gr.Textbox(
                label="Project id to reopen", placeholder="20261125-190312-3fa4c1d2e5b6", elem_id="reopen-id"
            )
            reopen = gr.Button("Reopen project", elem_id="reopen")
    # Outside the accordion so it is mounted (and saved) while the accordion is closed; a secret kept in the
    # projects folder lets the browser's value survive a server restart.
    last_project = gr.BrowserState("", storage_key="mvideo-last-project", secret=secret)
    return ProjectBar(summary, reopen_id, reopen, last_project)


def wire_project_bar(
    ctx: StudioContext,
    bar: ProjectBar,
    demo: gr.Blocks,
    reopened: Callable[[Session, str | None], Updates],
    reopened_outputs: list[Component],
) -> None:
    """Reopen restores the session from the project folder; `reopened(session, info)` refreshes the tabs."""

    @user_errors
    def on_reopen(project_id: str, request: gr.Request) -> Updates:
        session = ctx.session(request)
        info = step.reopen_project(ctx.engines, session, project_id)
        return {**bar.view(session), **reopened(session, info)}

    bar.reopen.click(on_reopen, [bar.reopen_id], [*bar.outputs(), *reopened_outputs])
    demo.load(lambda pid: pid or "", [bar.last_project], [bar.reopen_id])
