"""Tasks with a known answer in high dimensions: finite pmfs seen through embeddings and images."""
