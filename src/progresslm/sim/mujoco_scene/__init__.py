"""MuJoCo scene tools that MuJoCo-based families share: fast offscreen frames (`render`), scene randomisation
(`randomise`), object edits and hidden goal markers (`edits`), camera framing (`framing`), and the model helpers they
share (`model`). Every edit is a live change of `MjModel` arrays, undone exactly; physics is never touched."""
