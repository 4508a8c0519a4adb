"""Preflight: what a target store cannot hold faithfully, named before anything is copied."""
