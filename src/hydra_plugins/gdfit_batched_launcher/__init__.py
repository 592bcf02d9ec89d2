"""gdfit's Hydra launcher `batched` (see batched_launcher.py)."""
