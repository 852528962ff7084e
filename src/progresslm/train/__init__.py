"""Training: chain-of-thought data, SFT, GRPO, rewards, and the small from-scratch model."""
