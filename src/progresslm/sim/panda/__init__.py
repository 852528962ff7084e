"""The panda family: panda-gym 3.0.7's Franka Panda scenes on PyBullet (`sim build --family panda`)."""
