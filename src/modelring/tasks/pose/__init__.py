"""Pose estimation: MPII-layout data pipeline (``modelring.data.mpii``), metrics, generator and the task."""
