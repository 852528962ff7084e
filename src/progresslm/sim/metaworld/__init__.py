"""The Meta-World family (MuJoCo, Sawyer arm): v3 tasks with key-step detectors (`tasks`, imports nothing heavy),
scripted rollouts over an env pool (`rollout`), the family object behind `sim.family`'s contract (`family`), and
experts for online use (`experts`). Scenes are drawn with the MuJoCo scene tools of `sim.mujoco_scene`."""
