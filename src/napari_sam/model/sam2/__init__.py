"""SAM 2 (2.1): the Hiera image encoder with its FPN neck, the SAM 2 heads, the memory encoder and memory
attention that carry an object from frame to frame. State-dict keys equal the official checkpoints'."""
