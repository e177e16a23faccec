"""The studio's service layer, one module per step: plain values in, plain values out, no gradio.

Every function takes the `Engines`, the caller's server-side `Session` and widget values, and returns images
(uint8 [H, W, 3]), file paths inside the session's project folder, recipes or short markdown. User mistakes raise
`StudioError` with a message that says what was wrong and what to do; the page turns it into a message.
"""
