"""Model serving: an Open Inference Protocol (V2) server with payload logging."""
