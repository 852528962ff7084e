"""The MuJoCo trajectory source: Meta-World v3 tasks, scripted rollouts and key steps from task state.

`tasks` holds the task registry (goals, object names, key steps with their detectors) and imports
nothing heavy; `rollout` runs the scripted experts and imports mujoco and metaworld only when called.
"""
