"""Camera and image-space geometry helpers."""
