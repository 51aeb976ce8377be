"""The archive layer (SPEC.md §7, §9, §11): reading a validated file chunk by chunk and writing one by
streaming. Torch-free: it moves bytes and manifests, never tensors."""
