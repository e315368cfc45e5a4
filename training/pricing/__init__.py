"""Dynamic pricing evaluation against the sales generator's known optimum (`python -m training price-eval`)."""
