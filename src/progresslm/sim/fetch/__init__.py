"""The Fetch family: gymnasium-robotics' `-v4` Fetch tasks (the Fetch robot on MuJoCo) for `progresslm sim`."""
