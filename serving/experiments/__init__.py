"""Experiments on /v1/recommend: A/B arms by a stable hash of the user, a ledger of what each answer showed and
what was clicked on it, and a shadow arm scoring in the background (GET /v1/experiments reports them)."""
