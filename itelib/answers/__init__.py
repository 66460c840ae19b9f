"""Answers from effect posteriors: checks that need no truth (:func:`validate`: BLP, GATES,
RATE on cross-fitted estimates) and decisions (:func:`recommend`)."""

from itelib.answers.checks import HeterogeneityCheck, validate
from itelib.answers.decisions import Recommendation, recommend

__all__ = ["HeterogeneityCheck", "Recommendation", "recommend", "validate"]
