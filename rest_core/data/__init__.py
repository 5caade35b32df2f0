"""Data for training and evaluation: the procedural corpus (`synth`) and video preparation (`prepare`)."""
