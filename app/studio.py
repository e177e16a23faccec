"""The studio page: four steps (Video, Masks, Edit, Generate) wired to `app.adapters`.

Handlers look up the caller's server-side `Session` by `request.session_hash`; `gr.State` is not used for heavy
objects. A `StudioError` from an adapter becomes a toast and the session stays as it was.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from app import adapters as A
from app.engines import Engines, gpu_function
from app.sessions import SessionStore

logger = logging.getLogger(__name__)

# On a ZeroGPU Space each Generate call holds a GPU for at most this long (a 16 s video on an A100-class GPU).
GPU_SECONDS = int(os.environ.get("MVIDEO_GPU_SECONDS", "600"))

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


def _user_errors(fn: Callable) -> Callable:
    """Turn `StudioError` (and the core's ValueErrors) into a visible gr.Error; the session is unchanged."""

    def shown(err: ValueError) -> gr.Error:
        if not isinstance(err, A.StudioError):  # the core's errors say what to do; show them verbatim
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
            project_md = gr.Markdown(
                "No project yet: upload a video or pick a sample to start one.", elem_id="project-md"
            )
            with gr.Row():
                reopen_id = gr.Textbox(
                    label="Project id to reopen", placeholder="20261125-190312-3fa4c1d2e5b6", elem_id="reopen-id"
                )
                reopen_btn = gr.Button("Reopen project", elem_id="reopen")
        # Outside the accordion so it is mounted (and saved) while the accordion is closed; a secret kept in the
        # projects folder lets the browser's value survive a server restart.
        last_project = gr.BrowserState("", storage_key="mvideo-last-project", secret=browser_secret(s.projects_dir))

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
                            format="jpeg",
                            elem_id="mask-frame",
                        )
                    with gr.Column(scale=2):
                        with gr.Row():
                            text_query = gr.Textbox(
                                label="What to track", placeholder="person . dog", scale=3, elem_id="track-text"
                            )
                            detect_btn = gr.Button("Detect", scale=1, elem_id="detect")
                        candidates = gr.CheckboxGroup(
                            [], label="Candidate boxes: pick which to keep", elem_id="candidates"
                        )
                        keep_btn = gr.Button("Keep picked boxes")
                        with gr.Row():
                            click_kind = gr.Radio(["+ include", "− exclude"], value="+ include", label="Click adds")
                            click_obj = gr.Dropdown(
                                [("new object", "new")], value="new", label="Object", elem_id="click-object"
                            )
                        with gr.Row():  # the keyboard way to place a point (x, y in frame pixels)
                            point_x = gr.Number(label="Point x (px)", value=0, minimum=0, precision=1)
                            point_y = gr.Number(label="Point y (px)", value=0, minimum=0, precision=1)
                            point_btn = gr.Button("Add point", elem_id="add-point")
                        objects = gr.Dataframe(
                            headers=["id", "name", "colour", "frames tracked"],
                            datatype=["number", "str", "str", "number"],
                            interactive=False,
                            label="Objects",
                            elem_id="objects",
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

        # A refused file is cleared so that the user can drop another one straight away.
        upload.upload(on_upload, [upload, trim_start, trim_end], video_outputs).failure(lambda: None, None, [upload])
        apply_trim.click(on_upload, [upload, trim_start, trim_end], video_outputs)
        sample_btn.click(on_sample, [sample], video_outputs)

        @_user_errors
        def on_frame(idx, request: gr.Request):
            return A.preview_frame(engines, sess(request), idx)

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
        def on_point(idx, kind, obj, x, y, request: gr.Request):
            session = sess(request)
            obj_id = None if obj in (None, "", "new") else int(obj)
            img, obj_id = A.click(engines, session, idx, x or 0, y or 0, kind.startswith("+"), obj_id)
            return img, _objects_out(session), gr.Dropdown(A.object_choices(session), value=str(obj_id))

        point_btn.click(
            on_point, [frame_slider, click_kind, click_obj, point_x, point_y], [frame_img, objects, click_obj]
        )

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
            gpu_function()(on_propagate),
            [frame_slider],
            [overlay, frame_img, objects, mask_status],
            concurrency_id="gpu",  # one GPU worker shared by propagation and generation
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

        mask_import.upload(on_import, [mask_import, frame_slider], [overlay, frame_img, objects, mask_status]).failure(
            lambda: None, None, [mask_import]
        )

        @_user_errors
        def on_reopen(project_id, request: gr.Request):
            session = sess(request)
            info = A.reopen_project(engines, session, project_id)
            has_video = session.frames is not None
            n = len(session.frames) if has_video else 2
            return (
                A.project_summary(session),
                info or "This project has no video yet: upload one or pick a sample.",
                session.frames[0] if has_video else None,
                gr.Slider(0, max(1, n - 1), value=0, step=1, label="Frame"),
                A.preview_frame(engines, session, 0) if has_video else None,
                _objects_out(session),
                gr.Dropdown(A.object_choices(session), value="new"),
                A.overlay_video(session) if session.masks is not None else None,
                session.project.project_id,
            )

        reopen_btn.click(
            on_reopen,
            [reopen_id],
            [project_md, video_info, first_frame, frame_slider, frame_img, objects, click_obj, overlay, last_project],
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
    """Layers, keyframed zoom/pan/rotate, terrain, timing, undo/redo, live preview, recipe JSON."""
    ui: dict[str, Any] = {}
    with gr.Row():
        with gr.Column(scale=3):
            ui["status"] = gr.Markdown("Press **Start editing** once your masks are ready.", elem_id="edit-status")
            with gr.Row():
                ui["start"] = gr.Button("Start editing from the masks", variant="primary", elem_id="edit-start")
                ui["undo"] = gr.Button("Undo", elem_id="edit-undo")
                ui["redo"] = gr.Button("Redo", elem_id="edit-redo")
            ui["frame"] = gr.Slider(0, 1, value=0, step=1, label="Preview frame", elem_id="edit-frame")
            ui["preview"] = gr.Image(
                label="Edited motion (live preview)", interactive=False, format="jpeg", elem_id="edit-preview"
            )
            ui["render_video"] = gr.Button("Render preview video")
            ui["video"] = gr.Video(label="Edited motion", interactive=False)
        with gr.Column(scale=2):
            ui["layer"] = gr.Dropdown([], label="Layer", elem_id="edit-layer")
            with gr.Accordion("Camera: keyframed zoom / pan / rotate", open=True):
                with gr.Row():
                    ui["key_t"] = gr.Number(label="At time (s)", value=0.0, minimum=0, elem_id="key-t")
                    ui["key_scale"] = gr.Number(label="Zoom (x)", value=1.0, minimum=0.05, elem_id="key-scale")
                    ui["key_rotate"] = gr.Number(label="Rotate (deg)", value=0.0)
                with gr.Row():
                    ui["key_x"] = gr.Number(label="Pan x (px)", value=0.0)
                    ui["key_y"] = gr.Number(label="Pan y (px)", value=0.0)
                with gr.Row():
                    ui["key_ease"] = gr.Dropdown(["linear", "ease_in_out", "hold"], value="ease_in_out", label="Ease")
                    ui["key_anchor"] = gr.Dropdown(["centroid", "bottom", "center"], value="bottom", label="Anchor")
                with gr.Row():
                    ui["add_key"] = gr.Button("Add keyframe", elem_id="add-keyframe")
                    ui["clear_keys"] = gr.Button("Clear keyframes")
            with gr.Accordion("Terrain", open=True):
                with gr.Row():
                    ui["terrain"] = gr.Dropdown(list(A.TERRAINS), value="uphill", label="Path", elem_id="terrain")
                    ui["rise"] = gr.Slider(-1, 1, value=0.25, step=0.05, label="Slope (rise, fraction of height)")
                    ui["tilt"] = gr.Slider(0, 1, value=0.0, step=0.1, label="Tilt with slope")
                ui["apply_terrain"] = gr.Button("Apply terrain", elem_id="apply-terrain")
            with gr.Accordion("Time", open=False):
                with gr.Row():
                    ui["offset"] = gr.Number(label="Starts at (s)", value=0.0)
                    ui["speed"] = gr.Number(label="Speed (x)", value=1.0, minimum=0.05)
                    ui["retime"] = gr.Number(label="Retime to (s, 0 = off)", value=0.0, minimum=0)
                ui["apply_time"] = gr.Button("Apply timing")
                with gr.Row():
                    ui["length"] = gr.Number(label="Edit length (s)", value=4.0, minimum=0.5)
                    ui["apply_length"] = gr.Button("Set length")
            with gr.Accordion("More layers", open=False):
                ui["layer_file"] = gr.File(
                    label="Add a layer from a mask file", file_types=[".zip", ".npz", ".mp4", ".json"]
                )
                samples = A.list_samples()
                with gr.Row():
                    ui["layer_project"] = gr.Textbox(
                        label="…or the masks of another video: its project id", placeholder="20261125-190312-…"
                    )
                    ui["add_project_layer"] = gr.Button("Add that video's subjects as a layer")
                with gr.Row():
                    ui["layer_sample"] = gr.Dropdown(samples, value=samples[0] if samples else None, label="Sample")
                    ui["add_sample_layer"] = gr.Button("Add sample's subject as a layer")
            with gr.Accordion("Recipe JSON", open=False):
                ui["recipe_json"] = gr.Code(language="json", label="Recipe", interactive=False)
                with gr.Row():
                    ui["recipe_download"] = gr.Button("Download recipe")
                    ui["recipe_file"] = gr.File(label="recipe.json", interactive=False)
                ui["recipe_upload"] = gr.File(label="Load a recipe (.json)", file_types=[".json"])
    return ui


def wire_edit_tab(engines: Engines, sess: Callable, ui: dict[str, Any]) -> None:
    def refresh(session, recipe, frame_idx=0, layer=None):
        masks = A.edited_masks(engines, session)
        idx = min(int(frame_idx or 0), masks.num_frames - 1)
        choices = A.layer_choices(session)
        values = [c[1] for c in choices]
        layer = layer if layer in values else (values[0] if values else None)
        return (
            A.edit_preview_frame(engines, session, idx),
            gr.Slider(0, max(1, masks.num_frames - 1), value=idx, step=1, label="Preview frame"),
            gr.Dropdown(choices, value=layer),
            A.to_json(recipe),
            f"{len(recipe['layers'])} layer(s), {A.recipe_duration(recipe):.2f} s; "
            f"undo: {'yes' if session.undo.can_undo else 'no'}, redo: {'yes' if session.undo.can_redo else 'no'}\n\n"
            + A.recipe_summary(recipe),
        )

    outs = [ui["preview"], ui["frame"], ui["layer"], ui["recipe_json"], ui["status"]]

    def on(event, fn, names: list[str]) -> None:
        """Wire `event` to `fn(session, layer, *values of names)`; the recipe it returns refreshes the tab."""

        @_user_errors
        def run(data: dict, request: gr.Request):
            session = sess(request)
            recipe = fn(session, data[ui["layer"]], *[data[ui[n]] for n in names])
            return refresh(session, recipe, data[ui["frame"]], data[ui["layer"]])

        dep = event(run, {ui[n] for n in [*names, "frame", "layer"]}, outs)
        for n in names:
            if isinstance(ui[n], gr.File):  # a refused file is cleared so another can be dropped
                dep.failure(lambda: None, None, [ui[n]])

    on(ui["start"].click, lambda session, layer: A.start_edit(engines, session, reset=True), [])
    on(ui["undo"].click, lambda session, layer: A.undo(engines, session), [])
    on(ui["redo"].click, lambda session, layer: A.redo(engines, session), [])
    key_inputs = ["key_t", "key_scale", "key_x", "key_y", "key_rotate", "key_ease", "key_anchor"]
    on(ui["add_key"].click, lambda session, layer, *v: A.add_keyframe(engines, session, layer, *v), key_inputs)
    on(ui["clear_keys"].click, lambda session, layer: A.clear_keyframes(engines, session, layer), [])
    on(
        ui["apply_terrain"].click,
        lambda session, layer, *v: A.set_terrain(engines, session, layer, *v),
        ["terrain", "rise", "tilt"],
    )
    on(
        ui["apply_time"].click,
        lambda session, layer, *v: A.set_timing(engines, session, layer, *v),
        ["offset", "speed", "retime"],
    )
    on(ui["apply_length"].click, lambda session, layer, sec: A.set_length(engines, session, sec), ["length"])
    on(ui["layer_file"].upload, lambda session, layer, p: A.add_layer_from_file(engines, session, p), ["layer_file"])
    on(
        ui["add_project_layer"].click,
        lambda session, layer, pid: A.add_layer_from_project(engines, session, pid),
        ["layer_project"],
    )
    on(
        ui["add_sample_layer"].click,
        lambda session, layer, name: A.add_layer_from_sample(engines, session, name),
        ["layer_sample"],
    )
    on(
        ui["recipe_upload"].upload,
        lambda session, layer, p: A.load_recipe_file(engines, session, p),
        ["recipe_upload"],
    )

    @_user_errors
    def on_frame(idx, request: gr.Request):
        return A.edit_preview_frame(engines, sess(request), idx)

    ui["frame"].input(on_frame, [ui["frame"]], [ui["preview"]], show_progress="hidden", trigger_mode="always_last")

    @_user_errors
    def on_video(request: gr.Request):
        return A.edit_preview_video(engines, sess(request))

    ui["render_video"].click(on_video, None, [ui["video"]])

    @_user_errors
    def on_download(request: gr.Request):
        return A.recipe_file(engines, sess(request))

    ui["recipe_download"].click(on_download, None, [ui["recipe_file"]])


# -- step 4 ----------------------------------------------------------------------------------------------------
def build_generate_tab(engines: Engines) -> dict[str, Any]:
    """Prompt and settings, a streaming player fed clip by clip, the gallery of clips, the final files."""
    s = engines.settings
    ui: dict[str, Any] = {}
    ready = engines.generator is not None
    ui["status"] = gr.Markdown(
        f"**Generator:** {engines.generation_status}" if ready else A.generation_explanation(engines),
        elem_id="gen-status",
    )
    with gr.Row():
        with gr.Column(scale=2):
            ui["prompt"] = gr.Textbox(
                label="Prompt", lines=3, placeholder="an astronaut doing a backflip on the moon", elem_id="gen-prompt"
            )
            ui["negative"] = gr.Textbox(label="Negative prompt", lines=1, placeholder="blurry, distorted")
            step = int(s.clip_seconds)
            ui["seconds"] = gr.Slider(step, 8 * step, value=2 * step, step=step, label="Length (s, whole clips)")
            with gr.Row():
                ui["steps"] = gr.Slider(1, 100, value=s.default_steps, step=1, label="Steps")
                ui["guidance"] = gr.Slider(0, 15, value=s.default_guidance, step=0.5, label="Guidance")
                ui["mask_guidance"] = gr.Slider(
                    1, 5, value=1.0, step=0.5, label="Mask guidance (1 = off)", elem_id="gen-mask-guidance"
                )
                ui["seed"] = gr.Number(label="Seed", value=0, precision=0)
            ui["start_image"] = gr.Image(label="Start image (optional)", type="numpy", sources=["upload"])
            with gr.Row():
                ui["go"] = gr.Button("Generate", variant="primary", interactive=ready, elem_id="generate")
                ui["stop"] = gr.Button("Stop", elem_id="stop-generate")
        with gr.Column(scale=3):
            ui["progress"] = gr.Markdown("", elem_id="gen-progress")
            ui["stream"] = gr.Video(
                label="Streaming: each clip plays as soon as it is finished",
                streaming=True,
                autoplay=True,
                interactive=False,
                elem_id="gen-stream",
            )
            ui["gallery"] = gr.Gallery(label="Finished clips", columns=4, height=200, elem_id="gen-gallery")
            ui["files"] = gr.File(
                label="Final video and generation.json", file_count="multiple", interactive=False, elem_id="gen-files"
            )
    return ui


def wire_generate_tab(engines: Engines, sess: Callable, ui: dict[str, Any]) -> None:
    @_user_errors
    def run(prompt, negative, seconds, steps, guidance, seed, start_image, mask_guidance, request: gr.Request, progress=gr.Progress(track_tqdm=True)):  # fmt: skip
        session = sess(request)
        form = A.check_generation(
            engines, prompt, negative, seconds, steps, guidance, seed, start_image, mask_guidance
        )
        for update in A.generate(engines, session, form):
            files = [f for f in (update.final, update.record) if f]
            yield (
                update.status,
                update.clip,
                list(update.clips),
                files or None,
            )

    event = ui["go"].click(
        gpu_function(duration=GPU_SECONDS)(run),
        [
            ui[k]
            for k in ("prompt", "negative", "seconds", "steps", "guidance", "seed", "start_image", "mask_guidance")
        ],
        [ui["progress"], ui["stream"], ui["gallery"], ui["files"]],
        concurrency_id="gpu",
    )

    def stop(request: gr.Request):
        sess(request).cancel.set()
        return "Stopping after the current step; finished clips are kept in the project."

    ui["stop"].click(stop, None, [ui["progress"]], cancels=[event], queue=False)
