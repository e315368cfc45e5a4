"""Training tasks: losses, loops, evaluation against baselines, profiles. One file per model."""

# model name -> module under training.tasks with `run(args: TrainArgs) -> dict` (the report).
TASKS: dict[str, str] = {
    "two_tower": "training.tasks.two_tower",
    "din": "training.tasks.din",
    "tcn": "training.tasks.tcn",
    "intent": "training.tasks.intent",
}
