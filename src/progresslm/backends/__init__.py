"""Model backends. Import them through `progresslm.backends.registry`, which loads each on demand."""
