"""progresslm: progress reasoning for vision-language models (ProgressLM, arXiv 2601.15224)."""

__version__ = "0.1.0"
