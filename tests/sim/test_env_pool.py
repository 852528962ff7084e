"""EnvPool: an env reset to a new variant and a renderer kept across episodes give what new ones give."""

from __future__ import annotations

import numpy as np
import pytest

from progresslm.sim.sim_build import simulator_problem

pytestmark = pytest.mark.skipif(simulator_problem() is not None, reason=f"no simulator: {simulator_problem()}")


def test_reused_env_rolls_out_the_same_episode():
    from progresslm.sim.metaworld.rollout import EnvPool, rollout

    pool = EnvPool()
    try:
        first = rollout("drawer-open-v3", 3, pool=pool)  # leaves a used env in the pool
        again = rollout("drawer-open-v3", 61, pool=pool)  # another variant block, the same env object
        assert pool.made == 1
        fresh = rollout("drawer-open-v3", 61)
        assert np.array_equal(again.states, fresh.states) and again.key_frames == fresh.key_frames
        assert not np.allclose(first.trace.obj[0], again.trace.obj[0])  # the variant did change (the drawer moved)
    finally:
        pool.close()


def test_reused_renderer_undoes_another_episodes_textures():
    from progresslm.sim.metaworld.rollout import EnvPool, make_env, restore, rollout
    from progresslm.sim.mujoco_scene.randomise import Randomizer
    from progresslm.sim.mujoco_scene.render import FrameRenderer

    episode = rollout("button-press-topdown-v3", 5)
    pool = EnvPool()
    try:
        env = pool.acquire(episode.task, 1)[0]
        renderer = pool.renderer(env, 64)
        style = Randomizer("strong").sample(np.random.default_rng(0))
        with Randomizer.apply(env.model, style, renderer=renderer):
            renderer.render(env.data, "corner3")  # new textures go to the GPU
        pool.release(episode.task, env)
        env = pool.acquire(episode.task, episode.seed)[0]
        restore(env, episode.states[10])
        kept = pool.renderer(env, 64).render(env.data, "corner3")
        fresh_env = make_env(episode.task, episode.seed)
        restore(fresh_env, episode.states[10])
        with FrameRenderer(fresh_env.model, 64) as fresh:
            assert np.array_equal(kept, fresh.render(fresh_env.data, "corner3"))
        fresh_env.close()
    finally:
        pool.close()
