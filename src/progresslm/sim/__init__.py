"""Simulated benchmarks from simulator families behind one contract (`family`): Meta-World (`metaworld/`), MuJoCo
scene tools (`mujoco_scene/`), the family-generic unit builder (`samples`), `sim build` (`sim_build`) and
`sim export-videos` (`export_videos`). docs/sim_families.md says how to add a family."""
