"""Online progress: score a stream of observations against a demonstration (`ProgressScorer`), watch it
with events (`ProgressMonitor`), or turn it into a dense RL reward (`progresslm.online.reward`)."""

from progresslm.online.monitor import Event, MonitorError, MonitorStep, ProgressMonitor
from progresslm.online.scorer import Estimate, ProgressScorer, ScorerError, as_pil

__all__ = ["Estimate", "Event", "MonitorError", "MonitorStep", "ProgressMonitor", "ProgressScorer", "ScorerError", "as_pil"]
