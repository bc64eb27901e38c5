"""3D / time: propagation of objects through a stack and linking of labels across slices."""
