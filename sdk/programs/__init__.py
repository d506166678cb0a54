"""Step programs: the per-frame host logic of each model family (torch-free)."""
