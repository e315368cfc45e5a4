"""Training tasks: losses, loops, evaluation against baselines, profiles. One file per model."""
