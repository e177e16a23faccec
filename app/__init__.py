"""The Gradio studio: layout, event wiring, per-session state and thin adapters to the core."""
