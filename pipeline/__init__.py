"""logitfuse: logit datasets and model fusion (SFT + ULD + GLD) on Ray."""

__version__ = "0.1.0"
