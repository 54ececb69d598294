"""The Gradio web demo: upload an image, chat (streamed, answer phrases coloured like their masks), and
ground any phrase. Built on :class:`flmm.demo.session.DemoBackend`; per-user state lives in ``gr.State``.

    from flmm.demo import launch
    launch(GroundingPipeline.from_pretrained())   # http://127.0.0.1:7860
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

from flmm.demo.session import NO_IMAGE, DemoBackend
from flmm.pipeline.predictor import GroundingPipeline

CSS = """
.flmm-answer { font-size: 1.05rem; line-height: 1.8; padding: 6px 2px; }
.flmm-answer sup { font-size: 0.65em; margin-left: 2px; color: #333; }
"""
SESSION_TTL_S = 2 * 3600  # an idle user's image and history are dropped after this


def _theme():
    import gradio as gr

    # system fonts only: the default theme fetches web fonts, which an offline machine cannot
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )


def build_demo(backend: DemoBackend, title: str = "flmm: grounded chat with a frozen LMM") -> Any:
    """The ``gr.Blocks`` app over ``backend`` (not launched)."""
    import gradio as gr

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        session = gr.State(None, time_to_live=SESSION_TTL_S)
        gr.Markdown(
            f"## {title}\nUpload an image (PNG, JPEG or WebP, at most {backend.max_bytes / 2**20:.0f} MB and "
            f"{backend.max_pixels / 1e6:.0f} MP), ask about it, and see each grounded phrase of the answer "
            "in the colour of its mask. The language model is frozen: its answers are its own."
        )
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Image", file_types=["image"], type="filepath", elem_id="upload")
                status = gr.Markdown(NO_IMAGE, elem_id="status")
                preview = gr.Image(label="Your image", interactive=False, format="png", elem_id="preview")
                overlay = gr.Image(label="Grounding", interactive=False, format="png", elem_id="overlay")
            with gr.Column(scale=1):
                chatbot = gr.Chatbot(label="Chat", height=320, elem_id="chatbot")
                question = gr.Textbox(label="Question", placeholder="Ask about the image", elem_id="question")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    clear = gr.Button("Clear chat", elem_id="clear")
                answer = gr.HTML(label="Grounded answer", elem_id="answer")
                with gr.Row():
                    phrase = gr.Textbox(
                        label="Ground a phrase", placeholder="e.g. the red circle", elem_id="phrase"
                    )
                    ground = gr.Button("Ground", elem_id="ground")
                min_score = gr.Slider(
                    0.0,
                    1.0,
                    value=backend.pipe.min_score,
                    step=0.05,
                    label="Minimum score (masks scoring below are not shown)",
                    elem_id="min-score",
                )

        def on_upload(path, sess):
            return backend.upload(path, sess)

        def on_chat(text, messages, sess, thr):
            first = True
            for upd in backend.chat(text, messages, sess, thr):
                final = upd.overlay is not None or not upd.status.startswith("Generating")
                yield (
                    upd.messages,
                    upd.answer_html if final else gr.skip(),
                    upd.overlay if upd.overlay is not None else gr.skip(),
                    upd.status,
                    "" if first else gr.skip(),
                )
                first = False

        def on_ground(text, sess, thr):
            img, html, msg = backend.ground(text, sess, thr)
            return (img if img is not None else gr.skip()), html, msg

        upload.upload(on_upload, [upload, session], [session, preview, status])
        chat_io = ([question, chatbot, session, min_score], [chatbot, answer, overlay, status, question])
        send.click(on_chat, *chat_io)
        question.submit(on_chat, *chat_io)
        ground_io = ([phrase, session, min_score], [overlay, answer, status])
        ground.click(on_ground, *ground_io)
        phrase.submit(on_ground, *ground_io)
        clear.click(backend.clear, [session], [chatbot, answer, status])
    return demo


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def launch(
    pipe: GroundingPipeline,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    backend_kwargs: dict[str, Any] | None = None,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
) -> Any:
    """Serve the demo on ``host:port`` (default 127.0.0.1, i.e. this machine only; Gradio picks the port
    when None). Uploads over the backend's byte limit are refused by the server itself.

    Returns the ``gr.Blocks`` (call ``.close()`` to stop it when ``prevent_thread_lock``)."""
    backend = DemoBackend(pipe, **(backend_kwargs or {}))
    if not _is_loopback(host):
        print(
            f"flmm serve: listening on {host}: anyone who can reach this address can use the model",
            file=sys.stderr,
        )
    demo = build_demo(backend)
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        max_file_size=backend.max_bytes,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        theme=_theme(),
        css=CSS,
        footer_links=[],
        inbrowser=False,
    )
    return demo
