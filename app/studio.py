"""The studio page: four steps (Video, Masks, Edit, Generate) wired to `app.adapters`.

Handlers look up the caller's server-side `Session` by `request.session_hash`; `gr.State` is not used for heavy
objects. A `StudioError` from an adapter becomes a toast and the session stays as it was.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from app import adapters as A
from app.engines import Engines, gpu_function
from app.sessions import SessionStore

logger = logging.getLogger(__name__)

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
        "max_file_size": int(s.max_upload_mb * 1e6),
        "allowed_paths": [str(s.projects_dir.resolve())],
        "css": CSS,
        "theme": gr.themes.Soft(),
        "show_error": True,
    }


def _user_errors(fn: Callable) -> Callable:
    """Turn `StudioError` (and the core's ValueErrors) into a visible gr.Error; the session is unchanged."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except A.StudioError as err:
            raise gr.Error(str(err), duration=None) from err
        except ValueError as err:  # the core's errors say what to do; show them verbatim
            logger.info("user error: %s", err)
            raise gr.Error(str(err), duration=None) from err

    return wrapper


def build_studio(engines: Engines) -> gr.Blocks:
    """The whole page. One `SessionStore` per page; sessions are freed when their browser tab closes."""
    store = SessionStore()
    s = engines.settings

    def sess(request: gr.Request):
        return store.get(request.session_hash)

    with gr.Blocks(title="MVideo Studio") as demo:
        demo.store = store  # for tests and benchmarks
        gr.Markdown("# MVideo Studio\nDirect the motion of a generated video with the masks of your subjects.")
        if s.tiny_random:
            gr.Markdown(
                "DEMO MODE (`--tiny-random`): tiny random-weight models on CPU. Every generated video is NOISE; "
                "the flow is real.",
                elem_id="demo-banner",
            )
        banner = gr.Markdown(A.tracker_banner(engines), elem_id="tracker-banner")
        with gr.Accordion("Project", open=False):
            project_md = gr.Markdown("No project yet: upload a video or pick a sample to start one.")
            with gr.Row():
                reopen_id = gr.Textbox(label="Project id to reopen", placeholder="20261125-190312-3fa4c1d2e5b6")
                reopen_btn = gr.Button("Reopen project")
            last_project = gr.BrowserState("", storage_key="mvideo-last-project")

        with gr.Tabs() as tabs:
            # -- 1. Video -------------------------------------------------------------------------------------
            with gr.Tab("1 · Video", id="video"):
                with gr.Row():
                    with gr.Column():
                        upload = gr.File(
                            label=f"Upload a video (mp4, mov, webm, gif; up to {s.max_upload_mb:g} MB, "
                            f"{s.max_seconds:g} s)",
                            file_types=list(A.VIDEO_SUFFIXES),
                            type="filepath",
                            elem_id="upload",
                        )
                        with gr.Row():
                            trim_start = gr.Number(label="Trim start (s)", value=0, minimum=0)
                            trim_end = gr.Number(label="Trim end (s, 0 = to the end)", value=0, minimum=0)
                        apply_trim = gr.Button("Apply trim")
                        samples = A.list_samples()
                        with gr.Row():
                            sample = gr.Dropdown(
                                samples, value=samples[0] if samples else None, label="…or try a sample"
                            )
                            sample_btn = gr.Button("Use sample", elem_id="use-sample")
                    with gr.Column():
                        video_info = gr.Markdown("Upload a video or pick a sample.", elem_id="video-info")
                        first_frame = gr.Image(label="First frame (as the model sees it)", interactive=False)

            # -- 2. Masks -------------------------------------------------------------------------------------
            with gr.Tab("2 · Masks", id="masks"):
                with gr.Row():
                    with gr.Column(scale=3):
                        frame_slider = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="frame-slider")
                        frame_img = gr.Image(
                            label="Click to add points to the chosen object",
                            interactive=False,
                            elem_id="mask-frame",
                        )
                    with gr.Column(scale=2):
                        with gr.Row():
                            text_query = gr.Textbox(label="What to track", placeholder="person . dog", scale=3)
                            detect_btn = gr.Button("Detect", scale=1, elem_id="detect")
                        candidates = gr.CheckboxGroup([], label="Candidate boxes: pick which to keep")
                        keep_btn = gr.Button("Keep picked boxes")
                        with gr.Row():
                            click_kind = gr.Radio(["+ include", "− exclude"], value="+ include", label="Click adds")
                            click_obj = gr.Dropdown(
                                [("new object", "new")], value="new", label="Object", elem_id="click-object"
                            )
                        objects = gr.Dataframe(
                            headers=["id", "name", "colour", "frames"],
                            datatype=["number", "str", "str", "number"],
                            interactive=False,
                            label="Objects",
                        )
                        with gr.Row():
                            new_name = gr.Textbox(label="Rename chosen object", scale=3)
                            rename_btn = gr.Button("Rename", scale=1)
                            delete_btn = gr.Button("Delete", scale=1, variant="stop")
                        with gr.Row():
                            propagate_btn = gr.Button("Propagate", variant="primary", elem_id="propagate")
                            stop_prop_btn = gr.Button("Stop", elem_id="stop-propagate")
                        mask_status = gr.Markdown("", elem_id="mask-status")
                with gr.Row():
                    overlay = gr.Video(label="Overlay preview", interactive=False, elem_id="overlay-video")
                    with gr.Column():
                        mask_import = gr.File(
                            label="Import masks (.zip, .npz, .mp4, .json)",
                            file_types=[".zip", ".npz", ".mp4", ".json"],
                        )
                        export_fmt = gr.Dropdown(list(A.MASK_FORMATS), value="NumPy npz", label="Export format")
                        export_btn = gr.Button("Export masks")
                        export_file = gr.File(label="Exported masks", interactive=False)

            # -- 3. Edit --------------------------------------------------------------------------------------
            with gr.Tab("3 · Edit", id="edit"):
                edit_ui = build_edit_tab(engines)

            # -- 4. Generate ----------------------------------------------------------------------------------
            with gr.Tab("4 · Generate", id="generate"):
                gen_ui = build_generate_tab(engines)

        # ---------------------------------------------------------------------------------------------------
        # Wiring
        def _after_video(summary: A.VideoSummary, request: gr.Request):
            session = sess(request)
            return (
                summary.info,
                summary.first_frame,
                gr.Slider(0, max(1, summary.num_frames - 1), value=0, step=1, label="Frame"),
                summary.first_frame,
                [],
                None,
                gr.CheckboxGroup([], value=[]),
                gr.Dropdown(A.object_choices(session), value="new"),
                A.project_summary(session),
                session.project.project_id,
                "",
            )

        video_outputs = [
            video_info,
            first_frame,
            frame_slider,
            frame_img,
            objects,
            overlay,
            candidates,
            click_obj,
            project_md,
            last_project,
            mask_status,
        ]

        @_user_errors
        def on_upload(path, start, end, request: gr.Request):
            summary = A.load_video(engines, sess(request), path, start or 0, end or None)
            return _after_video(summary, request)

        @_user_errors
        def on_sample(name, request: gr.Request):
            summary = A.load_sample(engines, sess(request), name)
            return _after_video(summary, request)

        upload.upload(on_upload, [upload, trim_start, trim_end], video_outputs)
        apply_trim.click(on_upload, [upload, trim_start, trim_end], video_outputs)
        sample_btn.click(on_sample, [sample], video_outputs)

        @_user_errors
        def on_frame(idx, request: gr.Request):
            return A.preview_frame(engines, sess(request), idx)

        frame_slider.release(on_frame, [frame_slider], [frame_img], show_progress="hidden")
        frame_slider.input(on_frame, [frame_slider], [frame_img], show_progress="hidden", trigger_mode="always_last")

        def _objects_out(session):
            return A.objects_table(session)

        @_user_errors
        def on_click(idx, kind, obj, evt: gr.SelectData, request: gr.Request):
            session = sess(request)
            x, y = evt.index
            obj_id = None if obj in (None, "", "new") else int(obj)
            img, obj_id = A.click(engines, session, idx, x, y, kind.startswith("+"), obj_id)
            return img, _objects_out(session), gr.Dropdown(A.object_choices(session), value=str(obj_id))

        frame_img.select(on_click, [frame_slider, click_kind, click_obj], [frame_img, objects, click_obj])

        @_user_errors
        def on_detect(text, idx, request: gr.Request):
            img, choices = A.detect(engines, sess(request), text, idx)
            return img, gr.CheckboxGroup(choices, value=choices[:1])

        detect_btn.click(on_detect, [text_query, frame_slider], [frame_img, candidates])
        text_query.submit(on_detect, [text_query, frame_slider], [frame_img, candidates])

        @_user_errors
        def on_keep(chosen, request: gr.Request):
            session = sess(request)
            img = A.add_candidates(engines, session, chosen)
            return img, _objects_out(session), gr.Dropdown(A.object_choices(session)), gr.CheckboxGroup([], value=[])

        keep_btn.click(on_keep, [candidates], [frame_img, objects, click_obj, candidates])

        @_user_errors
        def on_propagate(idx, request: gr.Request, progress=gr.Progress()):
            session = sess(request)

            def report(done: int, total: int, desc: str) -> None:
                progress((done, total), desc=desc, unit="frames")

            path = A.propagate(engines, session, report)
            return (
                path,
                A.preview_frame(engines, session, idx),
                _objects_out(session),
                f"Propagated {session.masks.num_objects} object(s) over {session.masks.num_frames} frames "
                f"with {engines.tracker_status.split(':')[0]}; masks autosaved.",
            )

        prop_event = propagate_btn.click(
            gpu_function()(on_propagate), [frame_slider], [overlay, frame_img, objects, mask_status]
        )

        def on_stop(request: gr.Request):
            sess(request).cancel.set()
            return "Stopping…"

        stop_prop_btn.click(on_stop, None, [mask_status], cancels=[prop_event], queue=False)

        @_user_errors
        def on_delete(obj, idx, request: gr.Request):
            session = sess(request)
            A.delete_object(engines, session, obj)
            return (
                A.preview_frame(engines, session, idx),
                _objects_out(session),
                gr.Dropdown(A.object_choices(session), value="new"),
            )

        delete_btn.click(on_delete, [click_obj, frame_slider], [frame_img, objects, click_obj])

        @_user_errors
        def on_rename(obj, name, idx, request: gr.Request):
            session = sess(request)
            A.rename_object(session, obj, name)
            return (
                A.preview_frame(engines, session, idx),
                _objects_out(session),
                gr.Dropdown(A.object_choices(session), value=obj),
            )

        rename_btn.click(on_rename, [click_obj, new_name, frame_slider], [frame_img, objects, click_obj])

        @_user_errors
        def on_export(fmt, request: gr.Request):
            return A.export_masks(sess(request), fmt)

        export_btn.click(on_export, [export_fmt], [export_file])

        @_user_errors
        def on_import(path, idx, request: gr.Request):
            session = sess(request)
            video = A.import_masks(engines, session, path)
            return video, A.preview_frame(engines, session, idx), _objects_out(session), "Masks imported."

        mask_import.upload(on_import, [mask_import, frame_slider], [overlay, frame_img, objects, mask_status])

        @_user_errors
        def on_reopen(project_id, request: gr.Request):
            session = sess(request)
            summary = A.reopen_project(engines, session, project_id)
            frame = session.frames[0] if session.frames is not None else None
            n = len(session.frames) if session.frames is not None else 2
            return (
                summary,
                frame,
                gr.Slider(0, max(1, n - 1), value=0, step=1, label="Frame"),
                A.preview_frame(engines, session, 0) if frame is not None else None,
                _objects_out(session),
                session.project.project_id,
            )

        reopen_btn.click(
            on_reopen, [reopen_id], [project_md, first_frame, frame_slider, frame_img, objects, last_project]
        )
        demo.load(lambda pid: pid or "", [last_project], [reopen_id])

        wire_edit_tab(engines, sess, edit_ui)
        wire_generate_tab(engines, sess, gen_ui)

        def cleanup(request: gr.Request):
            store.free(request.session_hash)

        demo.unload(cleanup)
        del banner, tabs
    return demo


# -- step 3 ----------------------------------------------------------------------------------------------------
def build_edit_tab(engines: Engines) -> dict[str, Any]:
    ui: dict[str, Any] = {}
    ui["status"] = gr.Markdown("Editing arrives with the editing library.", elem_id="edit-status")
    return ui


def wire_edit_tab(engines: Engines, sess: Callable, ui: dict[str, Any]) -> None:
    return None


# -- step 4 ----------------------------------------------------------------------------------------------------
def build_generate_tab(engines: Engines) -> dict[str, Any]:
    ui: dict[str, Any] = {}
    ui["status"] = gr.Markdown(
        engines.generation_status if engines.generator is not None else A.generation_explanation(engines),
        elem_id="gen-status",
    )
    return ui


def wire_generate_tab(engines: Engines, sess: Callable, ui: dict[str, Any]) -> None:
    return None
