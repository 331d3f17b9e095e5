"""Attention analysis: extraction, detectors, statistics, summaries, figures and reports."""
