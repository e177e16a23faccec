"""MVideo Studio core: video I/O, masks, extraction, the MVideo model, generation and training. No gradio here."""

__version__ = "0.1.0"
