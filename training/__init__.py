"""Offline training: data generators and loaders, one module per model, tasks that add the loss, CLIs."""
