"""The training engine behind train.py: settings and presets (`config`), the loop and its steps
(`engine`), and the log and loss plot written beside each checkpoint (`log`)."""
