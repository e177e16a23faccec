"""MVideo Studio entry point: parse flags, build the engines, launch the studio."""

try:  # on a Hugging Face ZeroGPU Space, `spaces` must be imported before torch
    import spaces  # noqa: F401
except ImportError:
    pass

from app.cli import main

if __name__ == "__main__":
    main()
