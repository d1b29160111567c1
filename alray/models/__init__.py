"""Backbones and MC-dropout heads."""

from alray.models.mc_dropout import MCDropoutClassifier, available, build_model, register

__all__ = ["MCDropoutClassifier", "available", "build_model", "register"]
