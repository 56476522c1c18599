"""Multi-task dense regression (depth, surface normals, semantic segmentation) on the 2D-3D-S layout: procedural
data (synth), metrics and the task (task)."""
