"""MVideo Studio entry point: parse flags, build the engines, launch the studio."""

from app.cli import main

if __name__ == "__main__":
    main()
