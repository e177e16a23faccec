"""The studio page. Minimal until the studio issue lands: upload a video and preview it."""

from __future__ import annotations

import argparse

import gradio as gr


def build_studio(args: argparse.Namespace) -> gr.Blocks:
    with gr.Blocks(title="MVideo Studio") as demo:
        gr.Markdown("# MVideo Studio\nUpload a video to preview it.")
        video = gr.Video(label="Source video", sources=["upload"])
        preview = gr.Video(label="Preview", interactive=False)
        video.change(lambda path: path, inputs=video, outputs=preview)
    return demo
