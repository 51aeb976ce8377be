"""Other formats (safetensors, Hugging Face sharded indexes, torch.save files): read with our own strict
code or torch's weights-only unpickler, written atomically, converted through the public API."""
