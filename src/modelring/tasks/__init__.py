"""Task-specific parts (data pipeline, loss, metrics, training loop) beyond classification: pose, multitask."""
