"""Pure edits of mask sequences: keyframed transforms, terrain warps, compositing, timeline ops, recipes."""
