"""The studio page's parts, one module per tab: each builds its components and wires its own events.

A part is a dataclass of its components. `view(session)` returns the part's updates keyed by component, so an event
that changes several tabs (loading a video, reopening a project) merges the parts' views.
"""
