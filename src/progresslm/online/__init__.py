"""Online progress: score a stream of observations against a demonstration (`ProgressScorer`)."""

from progresslm.online.scorer import Estimate, ProgressScorer, ScorerError

__all__ = ["Estimate", "ProgressScorer", "ScorerError"]
