"""captioner/: keyframe captions (VLM), dense video captions (LLM), CLIP-based quality stages and
the caption quality report."""
