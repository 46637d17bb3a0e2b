"""``attention_core``: the attention implementations' time and memory as T grows, and our
encoder layer against ``torch.nn.TransformerEncoderLayer`` (a benchmark: stages only)."""
